"""`/payflow changes [service]` and `/payflow cancel <change-id>`."""

from __future__ import annotations

from bot.base.roles import Role
from bot.domain.gate.engine import Gate
from bot.domain.gate.record import BEFORE_APPLY, BOT
from bot.domain.views import ChangeList, Notice, Reply
from handlers.base import Context, Refused
from handlers.commands import Cancel, Changes

RECENT = 5


async def list_changes(cmd: Changes, ctx: Context) -> Reply:
    everything = [c for c in await Gate(ctx.deps).records.all() if cmd.service in (None, c.service)]
    in_flight = [c for c in everything if c.in_flight]
    finished = [c for c in everything if not c.in_flight][-RECENT:]
    return Reply(ChangeList(tuple(in_flight + finished[::-1]), cmd.service))


async def cancel(cmd: Cancel, ctx: Context) -> Reply:
    """The requester or an admin may cancel; a change the bot proposed itself, any approver."""
    gate = Gate(ctx.deps)
    change = await gate.get(cmd.change_id)
    role = ctx.role or 0
    if change.requester == BOT:
        if ctx.actor != change.requester and role < Role.APPROVER:
            raise Refused(f"{change.id} was proposed by the bot: only an approver may cancel it.")
    elif ctx.actor != change.requester and role < Role.ADMIN:
        raise Refused(f"Only the requester (<@{change.requester}>) or an admin may cancel {change.id}.")
    if change.state not in BEFORE_APPLY:
        raise Refused(
            f"{change.id} is {change.state.replace('_', ' ')}: "
            "only a change not yet switched can be cancelled."
        )
    answer = await gate.cancel(change, ctx.actor)
    return Reply(Notice(answer.text, answer.tone), detail=change.id, target=change.service, audited=False)
