"""A command is one unit: its name, role, usage, examples, parser and handler are declared together
in one module of `handlers/`, with `@command`; buttons with `@action`, long-running services with
`@service`. The dispatcher finds them here, and `/payflow help` is generated from the same table,
so help can never list a command that does not exist.

Parsing is pure and cheap, so it runs before the ack: a typo is answered in the ack itself and
never reaches the cluster, the store or the Slack API.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from bot.base.mrkdwn import escape
from bot.base.redact import redact
from bot.base.roles import Role
from bot.config.catalog import Catalog
from bot.domain.views import Reply
from handlers.base import Context, Deps

MAX_TEXT = 500
MAX_REASON = 200

C = TypeVar("C")
Handler = Callable[[Any, Context], Awaitable[Reply]]
Parser = Callable[[list[str], Catalog], Any]
Click = Callable[[str, Context], Awaitable[Reply]]


class Usage(Exception):
    """Input we will not act on; `message` is shown to the user as is, with the command's usage."""

    def __init__(self, message: str, command: str | None = None):
        super().__init__(message)
        self.message = message
        self.command = command


@dataclass(frozen=True)
class CommandSpec:
    name: str  # one word, or a family and its subcommand ("db slow")
    synopsis: str
    summary: str
    examples: tuple[str, ...]
    role: Role | None  # None: anyone (help)
    parse: Parser
    run: Handler
    working: Callable[[Any], str | None] | None = None  # said once the policy allows a write

    @property
    def usage(self) -> str:
        return f"/payflow {self.synopsis}"


@dataclass(frozen=True)
class ActionSpec:
    """A button: who may press it, and what pressing it does (`value` is the button's value)."""

    name: str
    role: Role
    run: Click


@dataclass(frozen=True)
class Parsed:
    """A command as typed, ready to run: plain data, so it can cross into the worker process."""

    name: str
    command: Any

    @property
    def spec(self) -> CommandSpec:
        return COMMANDS[self.name]


COMMANDS: dict[str, CommandSpec] = {}
ACTIONS: dict[str, ActionSpec] = {}  # rendered as action_id "payflow:<name>"
Service = Callable[[Deps], Coroutine[Any, Any, None]]
SERVICES: list[Service] = []  # started where jobs run


_NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*(?: [a-z][a-z0-9]*(?:-[a-z0-9]+)*)*")


def _name_of(synopsis: str) -> str:
    """The words before the first `<arg>` or `[option]`: lowercase ASCII words, one space apart,
    since `parse` compares them with what it has folded to that (anything else could never match)."""
    words = []
    for word in synopsis.split(" "):
        if word.startswith(("<", "[")):
            break
        words.append(word)
    name = " ".join(words)
    if not _NAME.fullmatch(name):
        raise ValueError(f"command name {name!r}: lowercase ASCII words one space apart")
    return name


def command(
    synopsis: str,
    *,
    summary: str,
    role: Role | None,
    examples: tuple[str, ...],
    parse: Callable[[list[str], Catalog], C],
    working: Callable[[C], str | None] | None = None,
) -> Callable[[Callable[[C, Context], Awaitable[Reply]]], Callable[[C, Context], Awaitable[Reply]]]:
    """Declare a command; its name is the synopsis up to the first `<arg>` or `[option]`."""

    name = _name_of(synopsis)

    def register(run: Callable[[C, Context], Awaitable[Reply]]) -> Callable[[C, Context], Awaitable[Reply]]:
        if name in COMMANDS:
            raise ValueError(f"command {name!r} is declared twice")
        COMMANDS[name] = CommandSpec(name, synopsis, summary, examples, role, parse, run, working)
        return run

    return register


def action(name: str, role: Role) -> Callable[[Click], Click]:
    def register(
        run: Callable[[str, Context], Awaitable[Reply]],
    ) -> Callable[[str, Context], Awaitable[Reply]]:
        if name in ACTIONS:
            raise ValueError(f"action {name!r} is declared twice")
        ACTIONS[name] = ActionSpec(name, role, run)
        return run

    return register


def background(run: Service) -> Service:
    """A long-running service of the process that runs jobs (resuming changes, schedules)."""
    SERVICES.append(run)
    return run


class ParserFailed(Exception):
    """A parser raised something other than `Usage`: our bug, not the user's input."""

    def __init__(self, name: str):
        super().__init__(f"the parser of {name!r} failed")
        self.name = name


_OPTION_DASH = re.compile(r"(?<!\S)[\u2013\u2014](?=\w)")


def _as_typed(text: str) -> str:
    """What the user meant to type: fullwidth letters and no-break spaces folded (NFKC), invisible
    characters (zero-width spaces, joiners, BOMs, direction marks) dropped, and an en or em dash
    opening a word read as `--`, which smart punctuation turned it into (`—lines` is `--lines`)."""
    text = "".join(c for c in unicodedata.normalize("NFKC", text) if unicodedata.category(c) != "Cf")
    return _OPTION_DASH.sub("--", text)


def parse(text: str, catalog: Catalog) -> Parsed:
    """The longest declared name that starts the text wins (`db slow` before `db`)."""
    text = _as_typed(text)
    if len(text) > MAX_TEXT:
        raise Usage(f"That is {len(text)} characters; a command is at most {MAX_TEXT}. Nothing was done.")
    words = text.split()
    if not words:
        return Parsed("help", COMMANDS["help"].parse([], catalog))
    lowered = [w.lower() for w in words]
    longest = max(name.count(" ") + 1 for name in COMMANDS)
    for n in range(min(longest, len(words)), 0, -1):
        name = " ".join(lowered[:n])
        if name in COMMANDS:
            spec = COMMANDS[name]
            try:
                return Parsed(name, spec.parse(words[n:], catalog))
            except Usage as exc:
                raise _with_subcommands(exc, name, words[n:]) from None
            except Exception as exc:
                raise ParserFailed(name) from exc
    family = subcommands(lowered[0])
    if family:
        listed = ", ".join(f"`{s}`" for s in family)
        raise Usage(f"`{shown(words[0])}` needs a subcommand: {listed}.")
    raise Usage(f"Unknown command `{shown(words[0])}`.{suggest(lowered[0], families())}")


def subcommands(family: str) -> list[str]:
    return [name for name in COMMANDS if name.startswith(family + " ")]


def families() -> list[str]:
    return sorted({name.split()[0] for name in COMMANDS})


def _with_subcommands(exc: Usage, name: str, args: list[str]) -> Usage:
    """`/payflow db slwo`: say which subcommands exist rather than only "too many arguments"."""
    family = subcommands(name)
    if not family or not args or " " in name:
        return exc
    hint = suggest(f"{name} {args[0].lower()}", family)
    listed = ", ".join(f"`{s}`" for s in family)
    return Usage(f"No subcommand `{name} {shown(args[0])}`.{hint} Subcommands: {listed}.", exc.command)


# --- argument helpers shared by every parser ----------------------------------------------------


def shown(word: str, limit: int = 40) -> str:
    """User input as we echo it back: short, on one line, unable to ping or link anyone, and
    redacted before it is cut (a card cut to 12 digits would no longer be recognised)."""
    word = redact(" ".join(word.split()).replace("`", "'"))
    return escape(word if len(word) <= limit else word[: limit - 1] + "…")


def suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word.lower(), choices, n=1, cutoff=0.6)
    return f" Did you mean `{close[0]}`?" if close else ""


def service_arg(word: str, catalog: Catalog, command: str) -> str:
    if word in catalog.services:
        return word
    known = list(catalog.services)
    hint = suggest(word, known)
    if len(known) > 20:  # a 1,000-service catalog is not a hint
        raise Usage(f"Unknown service `{shown(word)}`.{hint} `/payflow status` lists them.", command)
    raise Usage(f"Unknown service `{shown(word)}`.{hint} Services: {', '.join(known)}.", command)


def at_most(args: list[str], n: int, command: str) -> None:
    if len(args) > n:
        extra = " ".join(args[n:])
        raise Usage(f"Too many arguments: `{shown(extra)}` is not understood here.", command)


def whole_number(word: str, what: str, command: str) -> int:
    if not (word.isascii() and word.isdigit()) or len(word) > 6:
        raise Usage(f"{what} must be a whole number, got `{shown(word)}`.", command)
    return int(word)


def count_arg(args: list[str], command: str, *, default: int, most: int) -> int:
    """An optional `[N]` as the only argument: 1 ≤ N ≤ most."""
    at_most(args, 1, command)
    if not args:
        return default
    n = whole_number(args[0], "N", command)
    if not 1 <= n <= most:
        raise Usage(f"N must be between 1 and {most}, got {n}.", command)
    return n


def reason_text(words: list[str], command: str) -> str:
    reason = " ".join(words)
    if len(reason) > MAX_REASON:
        raise Usage(f"The reason is {len(reason)} characters; keep it under {MAX_REASON}.", command)
    return reason


def takes_nothing(command: str, value: C) -> Callable[[list[str], Catalog], C]:
    """The parser of a command without arguments: `value`, or a Usage naming any word given."""

    def parse(args: list[str], catalog: Catalog) -> C:
        at_most(args, 0, command)
        return value

    return parse
