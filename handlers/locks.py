"""`/payflow lock|unlock <service>`: freeze a service. A lock refuses deploys, rollbacks,
approvals, scaling and restarts until whoever set it, or an admin, lifts it."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

from bot.base.roles import Role
from bot.chat.blocks import slack_date
from bot.domain.views import Notice, Reply, Tone
from bot.gateways.store import Store
from handlers.base import Context, Refused, lock_key
from handlers.commands import Lock, Unlock


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
