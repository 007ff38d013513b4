"""The daily digest's *Security* line: the size of PayFlow's token blacklist (`/payflow tokens`'s
count, within the same SCAN budget), and whether sampled entries never expire (a revocation leak).
Registered through handlers/digest_lines.py; locked users join this line when the users command
lands."""

from __future__ import annotations

from bot.domain.views import Figure
from bot.gateways.payflow_redis import PayflowRedisError
from handlers.base import Deps
from handlers.digest_lines import digest_lines


@digest_lines("Security", "daily")
async def security(deps: Deps) -> tuple[Figure, ...]:
    conf = deps.catalog.data.redis
    redis = deps.payflow_redis
    if redis is None:
        return (Figure("Security", f"token blacklist not read: {conf.url_setting} is not set", "", "info"),)
    try:
        found = await redis.count(
            conf.blacklist_pattern, scan_count=conf.scan_count, budget_seconds=conf.scan_budget_seconds
        )
    except PayflowRedisError as exc:
        return (Figure("Security", f"token blacklist unknown: {exc}", "", "unknown"),)
    size = f"{found.count:,}" if found.complete else f"at least {found.count:,} (SCAN stopped at its budget)"
    text = f"token blacklist {size} entries"
    leaks = found.spread.no_expiry
    if leaks:
        text += f"; {leaks:,} of {found.spread.sampled:,} sampled never expire (a revocation leak)"
    return (Figure("Security", text, "", "bad" if leaks else "info"),)
