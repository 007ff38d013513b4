"""`/payflow lock|unlock <service>`: freeze a service. A lock refuses deploys, rollbacks,
approvals, scaling and restarts until whoever set it, or an admin, lifts it."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.base.mrkdwn import slack_date
from bot.base.roles import Role
from bot.config.catalog import Catalog
from bot.domain.views import Notice, Reply, Tone
from bot.gateways.store import Store
from handlers.base import Context, Refused, lock_key
from handlers.registry import Usage, at_most, command, reason_text, service_arg


@dataclass(frozen=True)
class Lock:
    service: str
    reason: str


@dataclass(frozen=True)
class Unlock:
    service: str


def _parse_lock(args: list[str], catalog: Catalog) -> Lock:
    if len(args) < 2:
        example = "`/payflow lock wallet-service INC-42 ledger drift`"
        raise Usage(f"Say which service and why, e.g. {example}.", "lock")
    reason = reason_text(args[1:], "lock")
    return Lock(service_arg(args[0], catalog, "lock"), reason)


def _parse_unlock(args: list[str], catalog: Catalog) -> Unlock:
    if not args:
        raise Usage("Say which service to unlock.", "unlock")
    at_most(args, 1, "unlock")
    return Unlock(service_arg(args[0], catalog, "unlock"))


def describe(service: str, lock: dict) -> str:
    since = lock.get("since", "?")
    with contextlib.suppress(TypeError, ValueError):
        since = slack_date(datetime.fromisoformat(since))
    reason = lock.get("reason", "no reason given")
    return f"{service} is locked by <@{lock.get('by', '?')}> since {since}: {reason}"


async def refuse_if_locked(ctx: Context | Store, service: str) -> None:
    store = ctx if isinstance(ctx, Store) else ctx.store
    lock = await store.get(lock_key(service))
    if lock:
        raise Refused(f"{describe(service, lock)}. Nothing was changed.")


@command(
    "lock <service> <reason…>",
    summary="Freeze a service: no deploy, rollback, scale or restart until it is unlocked.",
    role=Role.OPERATOR,
    examples=("/payflow lock wallet-service INC-42 ledger reconciliation",),
    parse=_parse_lock,
)
async def lock(cmd: Lock, ctx: Context) -> Reply:
    record = {"by": ctx.actor, "reason": cmd.reason, "since": datetime.now(UTC).isoformat(timespec="seconds")}
    if not await ctx.store.create(lock_key(cmd.service), record):
        current = await ctx.store.get(lock_key(cmd.service)) or {}
        raise Refused(f"{describe(cmd.service, current)}. It stays as it is.")
    text = (
        f"🔒 <@{ctx.actor}> locked *{cmd.service}*: {cmd.reason}. "
        "No deploys, rollbacks, scaling or restarts until it is unlocked."
    )
    return Reply(Notice(text, Tone.WARNING), public=True, detail=cmd.reason)


@command(
    "unlock <service>",
    summary="Lift a freeze (whoever locked it, or an admin).",
    role=Role.OPERATOR,
    examples=("/payflow unlock wallet-service",),
    parse=_parse_unlock,
)
async def unlock(cmd: Unlock, ctx: Context) -> Reply:
    key = lock_key(cmd.service)
    current = await ctx.store.get(key)
    if not current:
        return Reply(Notice(f"{cmd.service} is not locked; nothing to do."), detail="not locked")
    if current.get("by") != ctx.actor and (ctx.role or 0) < Role.ADMIN:
        raise Refused(f"Only <@{current.get('by')}>, who locked {cmd.service}, or an admin may unlock it.")
    if not await ctx.store.delete(key, if_field="by", equals=current.get("by")):
        raise Refused(f"The lock on {cmd.service} changed meanwhile; check `/payflow changes {cmd.service}`.")
    by, why = current.get("by"), current.get("reason")
    text = f"🔓 <@{ctx.actor}> unlocked *{cmd.service}* (locked by <@{by}>: {why})."
    return Reply(Notice(text, Tone.SUCCESS), public=True)
