"""`/payflow …` text → a typed command, or a `Usage` error that says what was expected.

Parsing is pure and cheap, so it runs before the ack: a typo is answered in the ack itself and
never reaches the cluster, the store or the Slack API.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from bot.blocks import escape
from bot.config import Catalog
from bot.roles import Role

MAX_TEXT = 500
MAX_AUDIT = 50
DEFAULT_AUDIT = 10


@dataclass(frozen=True)
class Help:
    topic: str | None = None


@dataclass(frozen=True)
class Status:
    service: str | None = None


@dataclass(frozen=True)
class Scale:
    service: str
    replicas: int


@dataclass(frozen=True)
class Audit:
    service: str | None = None
    limit: int = DEFAULT_AUDIT


Command = Help | Status | Scale | Audit


class Usage(Exception):
    """Input we will not act on; `message` is shown to the user as is, with the command's usage."""

    def __init__(self, message: str, command: str | None = None):
        super().__init__(message)
        self.message = message
        self.command = command


@dataclass(frozen=True)
class CommandSpec:
    name: str
    synopsis: str
    summary: str
    examples: tuple[str, ...]
    role: Role | None
    parse: Callable[[list[str], Catalog], Command]

    @property
    def usage(self) -> str:
        return f"/payflow {self.synopsis}"


def shown(word: str, limit: int = 40) -> str:
    """User input as we echo it back: short, on one line, unable to ping or link anyone."""
    word = " ".join(word.split()).replace("`", "'")
    return escape(word if len(word) <= limit else word[: limit - 1] + "…")


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word.lower(), choices, n=1, cutoff=0.6)
    return f" Did you mean `{close[0]}`?" if close else ""


def _service(word: str, catalog: Catalog, command: str) -> str:
    if word in catalog.services:
        return word
    known = list(catalog.services)
    raise Usage(
        f"Unknown service `{shown(word)}`.{_suggest(word, known)} Services: {', '.join(known)}.", command
    )


def _at_most(args: list[str], n: int, command: str) -> None:
    if len(args) > n:
        extra = " ".join(args[n:])
        raise Usage(f"Too many arguments: `{shown(extra)}` is not understood here.", command)


def _whole_number(word: str, what: str, command: str) -> int:
    if not (word.isascii() and word.isdigit()) or len(word) > 6:
        raise Usage(f"{what} must be a whole number, got `{shown(word)}`.", command)
    return int(word)


def _parse_help(args: list[str], catalog: Catalog) -> Command:
    _at_most(args, 1, "help")
    if args and args[0].lower() not in SPECS:
        raise Usage(f"No command `{shown(args[0])}`.{_suggest(args[0], list(SPECS))}", "help")
    return Help(args[0].lower() if args else None)


def _parse_status(args: list[str], catalog: Catalog) -> Command:
    _at_most(args, 1, "status")
    return Status(_service(args[0], catalog, "status") if args else None)


def _parse_scale(args: list[str], catalog: Catalog) -> Command:
    if len(args) < 2:
        raise Usage("Say which service and how many replicas.", "scale")
    _at_most(args, 2, "scale")
    service = _service(args[0], catalog, "scale")
    spec = catalog.service(service)
    bounds = f"{spec.min_replicas}–{spec.max_replicas}"
    word = args[1]
    if word.startswith("-") and word[1:].isdigit():
        raise Usage(f"Replicas cannot be negative; {service} takes {bounds}.", "scale")
    replicas = _whole_number(word, "Replicas", "scale")
    if not spec.min_replicas <= replicas <= spec.max_replicas:
        raise Usage(f"{replicas} replicas is out of bounds: {service} takes {bounds}.", "scale")
    return Scale(service, replicas)


def _parse_audit(args: list[str], catalog: Catalog) -> Command:
    _at_most(args, 2, "audit")
    service, limit = None, DEFAULT_AUDIT
    rest = list(args)
    if rest and not rest[0].isdigit():
        service = _service(rest.pop(0), catalog, "audit")
    if rest:
        limit = _whole_number(rest.pop(0), "N", "audit")
        if not 1 <= limit <= MAX_AUDIT:
            raise Usage(f"N must be between 1 and {MAX_AUDIT}, got {limit}.", "audit")
    if rest:
        _at_most(args, len(args) - len(rest), "audit")
    return Audit(service, limit)


SPECS: dict[str, CommandSpec] = {
    spec.name: spec
    for spec in (
        CommandSpec(
            "help",
            "help [command]",
            "How to use each command.",
            ("/payflow help scale",),
            None,
            _parse_help,
        ),
        CommandSpec(
            "status",
            "status [service]",
            "Live color, versions, ready pods, restarts and rollout state of every service (or one).",
            ("/payflow status", "/payflow status wallet-service"),
            Role.VIEWER,
            _parse_status,
        ),
        CommandSpec(
            "scale",
            "scale <service> <replicas>",
            "Scale the live color of a service, within its replica bounds.",
            ("/payflow scale api-gateway 5",),
            Role.OPERATOR,
            _parse_scale,
        ),
        CommandSpec(
            "audit",
            "audit [service] [N]",
            f"The last N audit entries (default {DEFAULT_AUDIT}, at most {MAX_AUDIT}): "
            "who, what, when, result.",
            ("/payflow audit", "/payflow audit api-gateway 20"),
            Role.VIEWER,
            _parse_audit,
        ),
    )
}


def spec_for(command: Command) -> CommandSpec:
    return SPECS[type(command).__name__.lower()]


def parse(text: str, catalog: Catalog) -> Command:
    if len(text) > MAX_TEXT:
        raise Usage(f"That is {len(text)} characters; a command is at most {MAX_TEXT}. Nothing was done.")
    words = text.split()
    if not words:
        return Help()
    name, args = words[0].lower(), words[1:]
    spec = SPECS.get(name)
    if spec is None:
        raise Usage(f"Unknown command `{shown(words[0])}`.{_suggest(name, list(SPECS))}")
    return spec.parse(args, catalog)
