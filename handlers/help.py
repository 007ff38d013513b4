"""`/payflow help [command]`: generated from the command table, so it lists only what exists."""

from __future__ import annotations

from bot.domain.views import HelpEntry, HelpPage, Reply
from handlers.base import Context
from handlers.commands import SPECS, Help


async def show_help(cmd: Help, ctx: Context) -> Reply:
    specs = [SPECS[cmd.topic]] if cmd.topic else list(SPECS.values())
    entries = tuple(
        HelpEntry(s.usage, s.summary, s.examples, s.role.label if s.role else None) for s in specs
    )
    return Reply(HelpPage(entries, detailed=cmd.topic is not None))
