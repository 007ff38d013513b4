"""`/payflow …` text → a typed command, or a `Usage` error that says what was expected.

Parsing is pure and cheap, so it runs before the ack: a typo is answered in the ack itself and
never reaches the cluster, the store or the Slack API.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.base.redact import redact
from bot.base.roles import Role
from bot.chat.blocks import escape
from bot.config.catalog import Catalog

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


# One of the command dataclasses whose spec is registered in SPECS.
Command = Any


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
    """User input as we echo it back: short, on one line, unable to ping or link anyone, and
    redacted before it is cut (a card cut to 12 digits would no longer be recognised)."""
    word = redact(" ".join(word.split()).replace("`", "'"))
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


def register(*specs: CommandSpec, kinds: tuple[type, ...]) -> None:
    """Add command families; `kinds` are their dataclasses, in the same order as `specs`."""
    for spec, kind in zip(specs, kinds, strict=True):
        SPECS[spec.name] = spec
        _KIND_TO_SPEC[kind] = spec.name


_KIND_TO_SPEC: dict[type, str] = {Help: "help", Status: "status", Scale: "scale", Audit: "audit"}


def spec_for(command: Command) -> CommandSpec:
    return SPECS[_KIND_TO_SPEC.get(type(command), type(command).__name__.lower())]


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


# --- blue-green changes -------------------------------------------------------------------

_VERSION = re.compile(r"^v\d{1,4}\.\d{1,4}\.\d{1,6}(?:-[0-9A-Za-z][0-9A-Za-z.-]{0,40})?$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_CHANGE_ID = re.compile(r"^chg-[0-9a-f]{8}$")
MAX_REASON = 200
BREAK_GLASS = "--break-glass"


@dataclass(frozen=True)
class Deploy:
    service: str
    version: str
    reason: str = ""
    break_glass: str | None = None


@dataclass(frozen=True)
class Rollback:
    service: str
    reason: str = ""
    break_glass: str | None = None


@dataclass(frozen=True)
class Cancel:
    change_id: str


@dataclass(frozen=True)
class Changes:
    service: str | None = None


@dataclass(frozen=True)
class Lock:
    service: str
    reason: str


@dataclass(frozen=True)
class Unlock:
    service: str


@dataclass(frozen=True)
class Restart:
    service: str


def _reason_and_break_glass(words: list[str], command: str) -> tuple[str, str | None]:
    """Free text after the arguments; `--break-glass <why>` (admins, in a freeze) takes the rest."""
    flags = [w for w in words if w.startswith("--") and w != BREAK_GLASS]
    if flags:
        only = f"the only option is `{BREAK_GLASS} <reason>`"
        raise Usage(f"Unknown option `{shown(flags[0])}`; {only}.", command)
    break_glass = None
    if BREAK_GLASS in words:
        at = words.index(BREAK_GLASS)
        words, glass = words[:at], words[at + 1 :]
        if not glass:
            example = f"`{BREAK_GLASS} INC-123 payments down`"
            raise Usage(f"`{BREAK_GLASS}` needs a reason, e.g. {example}.", command)
        break_glass = " ".join(glass)[:MAX_REASON]
    reason = " ".join(words)
    if len(reason) > MAX_REASON:
        raise Usage(f"The reason is {len(reason)} characters; keep it under {MAX_REASON}.", command)
    return reason, break_glass


def _parse_deploy(args: list[str], catalog: Catalog) -> Command:
    if len(args) < 2:
        raise Usage("Say which service and which version.", "deploy")
    service = _service(args[0], catalog, "deploy")
    version = args[1]
    if not (_VERSION.match(version) or _DIGEST.match(version)):
        raise Usage(
            f"`{shown(version)}` is not a version. Use a tag like `v1.2.3` or `v1.2.3-rc.1`, "
            "or an image digest `sha256:<64 hex digits>`.",
            "deploy",
        )
    reason, glass = _reason_and_break_glass(args[2:], "deploy")
    return Deploy(service, version, reason, glass)


def _parse_rollback(args: list[str], catalog: Catalog) -> Command:
    if not args:
        raise Usage("Say which service to roll back.", "rollback")
    reason, glass = _reason_and_break_glass(args[1:], "rollback")
    return Rollback(_service(args[0], catalog, "rollback"), reason, glass)


def _parse_cancel(args: list[str], catalog: Catalog) -> Command:
    if not args:
        raise Usage("Say which change, e.g. `chg-1a2b3c4d` (see `/payflow changes`).", "cancel")
    _at_most(args, 1, "cancel")
    if not _CHANGE_ID.match(args[0]):
        raise Usage(f"`{shown(args[0])}` is not a change ID (like `chg-1a2b3c4d`).", "cancel")
    return Cancel(args[0])


def _parse_changes(args: list[str], catalog: Catalog) -> Command:
    _at_most(args, 1, "changes")
    return Changes(_service(args[0], catalog, "changes") if args else None)


def _parse_lock(args: list[str], catalog: Catalog) -> Command:
    if len(args) < 2:
        example = "`/payflow lock wallet-service INC-42 ledger drift`"
        raise Usage(f"Say which service and why, e.g. {example}.", "lock")
    reason = " ".join(args[1:])
    if len(reason) > MAX_REASON:
        raise Usage(f"The reason is {len(reason)} characters; keep it under {MAX_REASON}.", "lock")
    return Lock(_service(args[0], catalog, "lock"), reason)


def _parse_unlock(args: list[str], catalog: Catalog) -> Command:
    if not args:
        raise Usage("Say which service to unlock.", "unlock")
    _at_most(args, 1, "unlock")
    return Unlock(_service(args[0], catalog, "unlock"))


def _parse_restart(args: list[str], catalog: Catalog) -> Command:
    if not args:
        raise Usage("Say which service to restart.", "restart")
    _at_most(args, 1, "restart")
    return Restart(_service(args[0], catalog, "restart"))


register(
    CommandSpec(
        "deploy",
        "deploy <service> <version> [reason…]",
        "Deploy a version to the idle color, smoke-test it, then ask an approver to switch traffic.",
        ("/payflow deploy api-gateway v1.2.3 fixes PAY-981", "/payflow deploy auth-service sha256:<digest>"),
        Role.OPERATOR,
        _parse_deploy,
    ),
    CommandSpec(
        "rollback",
        "rollback <service> [reason…]",
        "Switch traffic back to the previous color, after an approver approves.",
        ("/payflow rollback api-gateway p95 doubled",),
        Role.OPERATOR,
        _parse_rollback,
    ),
    CommandSpec(
        "cancel",
        "cancel <change-id>",
        "Cancel a change that has not switched traffic yet (its requester or an admin).",
        ("/payflow cancel chg-1a2b3c4d",),
        Role.OPERATOR,
        _parse_cancel,
    ),
    CommandSpec(
        "changes",
        "changes [service]",
        "Changes in flight and the last finished ones, with their state.",
        ("/payflow changes", "/payflow changes api-gateway"),
        Role.VIEWER,
        _parse_changes,
    ),
    CommandSpec(
        "lock",
        "lock <service> <reason…>",
        "Freeze a service: no deploy, rollback, scale or restart until it is unlocked.",
        ("/payflow lock wallet-service INC-42 ledger reconciliation",),
        Role.OPERATOR,
        _parse_lock,
    ),
    CommandSpec(
        "unlock",
        "unlock <service>",
        "Lift a freeze (whoever locked it, or an admin).",
        ("/payflow unlock wallet-service",),
        Role.OPERATOR,
        _parse_unlock,
    ),
    CommandSpec(
        "restart",
        "restart <service>",
        "Rolling restart of the live color (kubectl rollout restart), after you confirm.",
        ("/payflow restart auth-service",),
        Role.OPERATOR,
        _parse_restart,
    ),
    kinds=(Deploy, Rollback, Cancel, Changes, Lock, Unlock, Restart),
)


# --- logs ---------------------------------------------------------------------------------

DEFAULT_LOG_LINES = 100
MAX_LOG_LINES = 1000
MAX_LOG_SINCE = 86_400  # the pods keep little more; older lines belong to the log archive
_DURATION = re.compile(r"^(\d{1,6})([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_LOG_OPTIONS = ("--errors", "--lines", "--since")


@dataclass(frozen=True)
class Logs:
    service: str
    errors_only: bool = False
    lines: int = DEFAULT_LOG_LINES
    since_seconds: int | None = None


def _log_lines_value(word: str) -> int:
    if not (word.isascii() and word.isdigit()):
        raise Usage(f"`--lines` must be a whole number, got `{shown(word)}`.", "logs")
    n = int(word)
    if not 1 <= n <= MAX_LOG_LINES:
        raise Usage(f"`--lines` must be between 1 and {MAX_LOG_LINES}, got {shown(word)}.", "logs")
    return n


def _since_value(word: str) -> int:
    match = _DURATION.match(word.lower())
    if not match:
        raise Usage(f"`--since` takes a duration like `30s`, `10m` or `2h`, got `{shown(word)}`.", "logs")
    seconds = int(match[1]) * _UNIT_SECONDS[match[2]]
    if not 0 < seconds <= MAX_LOG_SINCE:
        raise Usage(f"`--since` must be more than 0 and at most 24h, got `{shown(word)}`.", "logs")
    return seconds


def _parse_logs(args: list[str], catalog: Catalog) -> Command:
    """`logs <service> [--errors] [--lines N] [--since 10m]`, options in any order, `--opt=value` too."""
    seen: dict[str, str | None] = {}
    positional: list[str] = []
    words = list(args)
    while words:
        word = words.pop(0)
        if word[:1] in ("—", "–"):  # Slack's smart punctuation turns `--` into a dash
            word = "--" + word[1:]
        if not word.startswith("--"):
            positional.append(word)
            continue
        name, eq, value = word.partition("=")
        name = name.lower()
        if name not in _LOG_OPTIONS:
            known = ", ".join(f"`{o}`" for o in _LOG_OPTIONS)
            hint = _suggest(name, list(_LOG_OPTIONS))
            raise Usage(f"Unknown option `{shown(word)}`.{hint} Options: {known}.", "logs")
        if name in seen:
            raise Usage(f"`{name}` is given twice.", "logs")
        if name == "--errors":
            if eq:
                raise Usage("`--errors` takes no value.", "logs")
            seen[name] = None
            continue
        if not eq:
            if not words:
                example = "--lines 50" if name == "--lines" else "--since 10m"
                raise Usage(f"`{name}` needs a value, e.g. `{example}`.", "logs")
            value = words.pop(0)
        seen[name] = value
    if not positional:
        raise Usage("Say which service, e.g. `/payflow logs api-gateway --errors`.", "logs")
    _at_most(positional, 1, "logs")
    service = _service(positional[0], catalog, "logs")
    lines = seen.get("--lines")
    since = seen.get("--since")
    return Logs(
        service,
        errors_only="--errors" in seen,
        lines=_log_lines_value(lines) if lines is not None else DEFAULT_LOG_LINES,
        since_seconds=_since_value(since) if since is not None else None,
    )


register(
    CommandSpec(
        "logs",
        "logs <service> [--errors] [--lines N] [--since 10m]",
        f"Recent log lines of the live color's pods (default {DEFAULT_LOG_LINES}, at most "
        f"{MAX_LOG_LINES}); `--errors` keeps lines with ERROR. Card numbers, tokens and passwords "
        "are redacted, long output comes as a file. Operators only: logs can hold customer data.",
        ("/payflow logs api-gateway --errors", "/payflow logs wallet-service --lines 300 --since 15m"),
        Role.OPERATOR,
        _parse_logs,
    ),
    kinds=(Logs,),
)


# --- metrics, query, health, digest ---------------------------------------------------------

DEFAULT_METRICS_WINDOW = "1h"
MIN_WINDOW, MAX_WINDOW = 60, 7 * 86_400
MAX_PROMQL = 300
WINDOW_OPTION = "--window"
_SLACK_ESCAPES = (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))
_SMART_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'"})


@dataclass(frozen=True)
class Metrics:
    service: str
    window: str = DEFAULT_METRICS_WINDOW


@dataclass(frozen=True)
class Query:
    promql: str
    window: str | None = None  # None: an instant query (a table); a window: a chart


@dataclass(frozen=True)
class Health:
    service: str | None = None


@dataclass(frozen=True)
class Digest:
    now: bool = False


def _window(word: str, command: str) -> str:
    from bot.base import durations

    try:
        seconds = durations.bounded(word, MIN_WINDOW, MAX_WINDOW)
    except durations.BadDuration:
        raise Usage(
            f"`{shown(word)}` is not a window I can use: say 1m to 7d, like `15m`, `1h` or `24h`.", command
        ) from None
    return durations.label(seconds)


def _parse_metrics(args: list[str], catalog: Catalog) -> Command:
    if not args:
        raise Usage("Say which service, e.g. `/payflow metrics api-gateway 1h`.", "metrics")
    _at_most(args, 2, "metrics")
    service = _service(args[0], catalog, "metrics")
    return Metrics(service, _window(args[1], "metrics") if len(args) > 1 else DEFAULT_METRICS_WINDOW)


def _parse_query(args: list[str], catalog: Catalog) -> Command:
    """Everything up to an optional trailing `--window <duration>` is PromQL (a trailing bare
    duration would be ambiguous: `x offset 5m` is valid PromQL)."""
    words = ["--" + w[1:] if w[:1] in ("—", "–") else w for w in args]  # Slack's smart dashes
    window = None
    if len(words) >= 2 and words[-2].lower() == WINDOW_OPTION:
        window = _window(words[-1], "query")
        words = words[:-2]
    elif words and words[-1].lower().startswith(WINDOW_OPTION + "="):
        window = _window(words[-1].partition("=")[2], "query")
        words = words[:-1]
    elif words and words[-1].lower() == WINDOW_OPTION:
        raise Usage("`--window` needs a duration, e.g. `--window 1h`.", "query")
    promql = " ".join(words)
    for escaped, plain in _SLACK_ESCAPES:  # Slack escapes these three in command text
        promql = promql.replace(escaped, plain)
    promql = promql.translate(_SMART_QUOTES)
    if not promql:
        raise Usage("Say which PromQL to run, e.g. `/payflow query up`.", "query")
    if len(promql) > MAX_PROMQL:
        raise Usage(
            f"That PromQL is {len(promql)} characters; at most {MAX_PROMQL}. Nothing was run.", "query"
        )
    return Query(promql, window)


def _parse_health(args: list[str], catalog: Catalog) -> Command:
    _at_most(args, 1, "health")
    return Health(_service(args[0], catalog, "health") if args else None)


def _parse_digest(args: list[str], catalog: Catalog) -> Command:
    _at_most(args, 1, "digest")
    if args and args[0].lower() != "now":
        raise Usage(
            f"`{shown(args[0])}` is not understood here: `/payflow digest now` posts one now.", "digest"
        )
    return Digest(now=bool(args))


register(
    CommandSpec(
        "metrics",
        "metrics <service> [window]",
        f"Error rate, p95, p99, requests/s and availability against the SLOs over a window "
        f"(1m–7d, default {DEFAULT_METRICS_WINDOW}), with a chart.",
        ("/payflow metrics api-gateway", "/payflow metrics wallet-service 24h"),
        Role.VIEWER,
        _parse_metrics,
    ),
    CommandSpec(
        "query",
        "query <promql> [--window <duration>]",
        f"Run PromQL (at most {MAX_PROMQL} characters): the current value(s) as a table, or with "
        "`--window` a chart over that window (1m–7d).",
        (
            '/payflow query sum by (service) (rate(http_requests_total{status=~"5.."}[5m]))',
            "/payflow query sum(rate(http_requests_total[5m])) --window 6h",
        ),
        Role.OPERATOR,
        _parse_query,
    ),
    CommandSpec(
        "health",
        "health [service]",
        "Ready pods per color, restarts, the live color's /health, and PostgreSQL, Redis and "
        "RabbitMQ; worst first.",
        ("/payflow health", "/payflow health wallet-service"),
        Role.VIEWER,
        _parse_health,
    ),
    CommandSpec(
        "digest",
        "digest [now]",
        "The digest schedules and when each posts next; `now` posts the health digest here.",
        ("/payflow digest", "/payflow digest now"),
        Role.VIEWER,
        _parse_digest,
    ),
    kinds=(Metrics, Query, Health, Digest),
)
