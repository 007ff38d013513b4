"""`/payflow help [command]`: generated from the command registry, so it lists only what exists."""

from __future__ import annotations

from dataclasses import dataclass

from bot.config.catalog import Catalog
from bot.domain.views import HelpEntry, HelpPage, Reply
from handlers.base import Context
from handlers.registry import COMMANDS, Usage, at_most, command, families, shown, subcommands, suggest


@dataclass(frozen=True)
class Help:
    topic: str | None = None  # a command ("scale") or a family ("db": all its subcommands)


def _parse(args: list[str], catalog: Catalog) -> Help:
    at_most(args, 2, "help")
    topic = " ".join(args).lower()
    if not topic:
        return Help()
    if topic not in COMMANDS and not subcommands(topic):
        raise Usage(f"No command `{shown(topic)}`.{suggest(topic, [*COMMANDS, *families()])}", "help")
    return Help(topic)


def ordered() -> list[str]:
    """Help first, then what everyone may run, then what needs more, each by name."""
    return sorted(COMMANDS, key=lambda n: (COMMANDS[n].role is not None, COMMANDS[n].role or 0, n))


@command(
    "help [command]",
    summary="How to use each command.",
    role=None,
    examples=("/payflow help scale", "/payflow help db"),
    parse=_parse,
)
async def show_help(cmd: Help, ctx: Context) -> Reply:
    if cmd.topic is None:
        names = ordered()
    else:
        names = [n for n in ordered() if n == cmd.topic or n.startswith(cmd.topic + " ")]
    specs = [COMMANDS[n] for n in names]
    entries = tuple(
        HelpEntry(s.usage, s.summary, s.examples, s.role.label if s.role else None) for s in specs
    )
    return Reply(HelpPage(entries, detailed=cmd.topic is not None))
