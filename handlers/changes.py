"""`/payflow changes [service]` and `/payflow cancel <change-id>`."""

from __future__ import annotations

from bot.changes import BEFORE_SWITCH, CANCELLED, Transition, now_iso
from bot.commands import Cancel, Changes
from bot.roles import Role
from bot.views import ChangeList, Notice, Reply, Tone
from handlers.base import Context, Refused
from handlers.change_messages import approval_card, audit, progress_card, show
from handlers.deploy import changes_of

RECENT = 5


async def list_changes(cmd: Changes, ctx: Context) -> Reply:
    everything = [c for c in await changes_of(ctx.deps).all() if cmd.service in (None, c.service)]
    in_flight = [c for c in everything if c.in_flight]
    finished = [c for c in everything if not c.in_flight][-RECENT:]
    return Reply(ChangeList(tuple(in_flight + finished[::-1]), cmd.service))


async def cancel(cmd: Cancel, ctx: Context) -> Reply:
    changes = changes_of(ctx.deps)
    change = await changes.get(cmd.change_id)
    if change is None:
        raise Refused(f"No change `{cmd.change_id}`; `/payflow changes` lists them.")
    if ctx.actor != change.requester and (ctx.role or 0) < Role.ADMIN:
        raise Refused(f"Only the requester (<@{change.requester}>) or an admin may cancel {change.id}.")
    if change.state not in BEFORE_SWITCH:
        raise Refused(
            f"{change.id} is {change.state.replace('_', ' ')}: "
            "only a change not yet switched can be cancelled."
        )
    try:
        change = await changes.move(change, CANCELLED, decided_by=ctx.actor, decided_at=now_iso())
    except Transition as moved:
        state = moved.current.state if moved.current else "gone"
        raise Refused(f"{cmd.change_id} became {state.replace('_', ' ')} just now; not cancelled.") from None
    await audit(ctx.deps, change, ctx.actor, "cancel", "cancelled")
    await show(ctx.deps, change.approval, approval_card(change, f"🗑️ cancelled by <@{ctx.actor}>"))
    await show(ctx.deps, change.progress, progress_card(change, f"cancelled by <@{ctx.actor}>", "No switch."))
    text = f"Cancelled {change.id}. {change.to_color} keeps `{change.version}` but takes no traffic."
    return Reply(Notice(text, Tone.SUCCESS), detail=change.id, target=change.service, audited=False)
