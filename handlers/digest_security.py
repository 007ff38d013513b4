"""The daily digest's *Security* line: the size of PayFlow's token blacklist (`/payflow tokens`'s
count, within the same SCAN budget), and whether sampled entries never expire (a revocation leak).
And how many users are locked out now (`/payflow users locked`'s count). Registered through
handlers/digest_lines.py."""

from __future__ import annotations

from bot.domain.views import Figure
from bot.gateways.payflow_redis import PayflowRedisError
from bot.gateways.postgres import PostgresError
from handlers.base import Deps
from handlers.digest_lines import digest_lines


@digest_lines("Security", "daily", "weekly")
async def security(deps: Deps) -> tuple[Figure, ...]:
    return (await _blacklist(deps), await _locked(deps))


async def _locked(deps: Deps) -> Figure:
    pg = deps.postgres
    if pg is None:
        setting = deps.catalog.data.postgres.url_setting
        return Figure("Locked users", f"not read: {setting} is not set", "", "info")
    try:
        locked = await pg.locked_users(1, table=deps.catalog.data.postgres.users_table)
    except PostgresError as exc:
        return Figure("Locked users", f"unknown: {exc}", "", "unknown")
    return Figure("Locked users", f"{locked.total:,} locked out now (`/payflow users locked`)", "", "info")


async def _blacklist(deps: Deps) -> Figure:
    conf = deps.catalog.data.redis
    redis = deps.payflow_redis
    if redis is None:
        return Figure("Security", f"token blacklist not read: {conf.url_setting} is not set", "", "info")
    try:
        found = await redis.count(
            conf.blacklist_pattern, scan_count=conf.scan_count, budget_seconds=conf.scan_budget_seconds
        )
    except PayflowRedisError as exc:
        return Figure("Security", f"token blacklist unknown: {exc}", "", "unknown")
    size = f"{found.count:,}" if found.complete else f"at least {found.count:,} (SCAN stopped at its budget)"
    text = f"token blacklist {size} entries"
    leaks = found.spread.no_expiry
    if leaks:
        text += f"; {leaks:,} of {found.spread.sampled:,} sampled never expire (a revocation leak)"
    return Figure("Security", text, "", "bad" if leaks else "info")
