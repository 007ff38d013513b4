"""`/payflow changes [service]` and `/payflow cancel <change-id>`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.base.roles import Role
from bot.config.catalog import Catalog
from bot.domain.gate.engine import Gate
from bot.domain.gate.record import BEFORE_APPLY, BOT
from bot.domain.views import ChangeList, Notice, Reply
from handlers.base import Context, Refused
from handlers.registry import Usage, at_most, command, service_arg, shown

_CHANGE_ID = re.compile(r"^chg-[0-9a-f]{8}$")


@dataclass(frozen=True)
class Cancel:
    change_id: str


@dataclass(frozen=True)
class Changes:
    service: str | None = None


def _parse_cancel(args: list[str], catalog: Catalog) -> Cancel:
    if not args:
        raise Usage("Say which change, e.g. `chg-1a2b3c4d` (see `/payflow changes`).", "cancel")
    at_most(args, 1, "cancel")
    if not _CHANGE_ID.match(args[0]):
        raise Usage(f"`{shown(args[0])}` is not a change ID (like `chg-1a2b3c4d`).", "cancel")
    return Cancel(args[0])


def _parse_changes(args: list[str], catalog: Catalog) -> Changes:
    at_most(args, 1, "changes")
    return Changes(service_arg(args[0], catalog, "changes") if args else None)


RECENT = 5


@command(
    "changes [service]",
    summary="Changes in flight and the last finished ones, with their state.",
    role=Role.VIEWER,
    examples=("/payflow changes", "/payflow changes api-gateway"),
    parse=_parse_changes,
)
async def list_changes(cmd: Changes, ctx: Context) -> Reply:
    """From the indexes (bot/domain/gate/records.py): the changes in flight, oldest first, then
    the newest finished ones — never a read of every record kept."""
    records = Gate(ctx.deps).records
    in_flight = [c for c in await records.in_flight() if cmd.service in (None, c.service)]
    finished = await records.recent(cmd.service, RECENT)
    return Reply(ChangeList(tuple(in_flight + finished), cmd.service))


@command(
    "cancel <change-id>",
    summary="Cancel a change that has not switched traffic yet (its requester or an admin).",
    role=Role.OPERATOR,
    examples=("/payflow cancel chg-1a2b3c4d",),
    parse=_parse_cancel,
)
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
