"""`/payflow logs <service> [--errors] [--lines N] [--since 10m]`: the guide's
`kubectl logs deployment/<service>-<live color> | grep ERROR`, for every pod of the live color.

Lines are merged across pods in the kubelet's time order, bounded, and redacted here before they
reach a view or a file (the Slack gateway redacts again: two independent nets for card data).
A short answer is a message; anything longer goes up as a file instead of a wall of text.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from bot.base.redact import redact_lines
from bot.base.roles import Role
from bot.config.catalog import Catalog
from bot.domain.views import LogExcerpt, Notice, Reply
from bot.gateways.kube_objects import KubeError, Unreachable
from bot.gateways.slack import SlackError
from handlers.base import Context, Refused, live_color
from handlers.registry import Usage, at_most, command, service_arg, shown, suggest

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


def _parse_logs(args: list[str], catalog: Catalog) -> Logs:
    """`logs <service> [--errors] [--lines N] [--since 10m]`, options in any order, `--opt=value` too."""
    seen: dict[str, str | None] = {}
    positional: list[str] = []
    words = list(args)
    while words:
        word = words.pop(0)
        if not word.startswith("--"):
            positional.append(word)
            continue
        name, eq, value = word.partition("=")
        name = name.lower()
        if name not in _LOG_OPTIONS:
            known = ", ".join(f"`{o}`" for o in _LOG_OPTIONS)
            hint = suggest(name, list(_LOG_OPTIONS))
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
    at_most(positional, 1, "logs")
    service = service_arg(positional[0], catalog, "logs")
    lines = seen.get("--lines")
    since = seen.get("--since")
    return Logs(
        service,
        errors_only="--errors" in seen,
        lines=_log_lines_value(lines) if lines is not None else DEFAULT_LOG_LINES,
        since_seconds=_since_value(since) if since is not None else None,
    )


MAX_PODS = 10  # a service at 200 replicas must not cost 200 log reads
ERROR_SCAN_LINES = 2000  # per pod: how far back `--errors` looks for ERROR lines
INLINE_LINES = 20
INLINE_CHARS = 2500
_KUBE_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.(\d{1,9}))?Z$")


def _ts_key(stamp: str) -> str | None:
    """A sort key for the kubelet's RFC 3339 stamp: it drops trailing zeros of the fraction, so
    the strings do not sort as they are."""
    match = _KUBE_TS.match(stamp)
    if not match:
        return None
    return stamp[:19] + (match[1] or "").ljust(9, "0")


def _parse(text: str, label: str) -> list[tuple[str, str]]:
    """(sort key, "label line") for each line; a line without a stamp keeps the previous key."""
    out: list[tuple[str, str]] = []
    key = ""
    for raw in text.splitlines():
        stamp, _, rest = raw.partition(" ")
        parsed = _ts_key(stamp)
        if parsed is None:
            rest = raw
        else:
            key = parsed
        out.append((key, f"{label} {rest}"))
    return out


async def _read(ctx: Context, cmd: Logs, pod: str, container: str) -> str | KubeError:
    tail = ERROR_SCAN_LINES if cmd.errors_only else cmd.lines
    try:
        return await ctx.kube.pod_log(
            pod, container=container, tail_lines=tail, since_seconds=cmd.since_seconds, timestamps=True
        )
    except KubeError as exc:
        return exc


@command(
    "logs <service> [--errors] [--lines N] [--since 10m]",
    summary=f"Recent log lines of the live color's pods (default {DEFAULT_LOG_LINES}, at most "
    f"{MAX_LOG_LINES}); `--errors` keeps lines with ERROR. Card numbers, tokens and passwords "
    "are redacted, long output comes as a file. Operators only: logs can hold customer data.",
    role=Role.OPERATOR,
    examples=("/payflow logs api-gateway --errors", "/payflow logs wallet-service --lines 300 --since 15m"),
    parse=_parse_logs,
)
async def show_logs(cmd: Logs, ctx: Context) -> Reply:
    snap = await ctx.kube.snapshot()
    color = await live_color(ctx, cmd.service, otherwise="there are no logs to pick", snapshot=snap)
    deployment = ctx.catalog.deployment_name(cmd.service, color)
    dep = snap.deployments.get(deployment)
    if dep is None:
        raise Refused(f"The live deployment {deployment} does not exist.")
    pods = sorted(p.name for p in snap.pods_of(dep))
    if not pods:
        return Reply(Notice(f"{cmd.service} ({color}) has no pods, so there are no logs to show."))
    problems = [f"showing {MAX_PODS} of {len(pods)} pods"] if len(pods) > MAX_PODS else []
    pods = pods[:MAX_PODS]
    container = ctx.catalog.container_name(cmd.service)
    texts = await asyncio.gather(*(_read(ctx, cmd, pod, container) for pod in pods))
    failures = [t for t in texts if isinstance(t, KubeError)]
    if failures and len(failures) == len(texts) and isinstance(failures[0], Unreachable):
        raise failures[0]
    entries: list[tuple[str, str]] = []
    for pod, text in zip(pods, texts, strict=True):
        label = pod.removeprefix(f"{deployment}-")
        if isinstance(text, KubeError):
            problems.append(f"{label}: {text}")
        else:
            entries += _parse(text, label)
    entries.sort(key=lambda e: e[0])  # stable: lines of one instant keep their pod's order
    lines = [line for _, line in entries if not cmd.errors_only or "ERROR" in line][-cmd.lines :]
    clean = redact_lines(lines)  # as one text: a key logged over several lines is seen whole
    view = LogExcerpt(
        private=True,
        service=cmd.service,
        color=color,
        pods=len(pods),
        lines=tuple(clean),
        errors_only=cmd.errors_only,
        since_seconds=cmd.since_seconds,
        redacted=sum(a != b for a, b in zip(lines, clean, strict=True)),
        problems=tuple(problems),
    )
    detail = f"{color}: {len(clean)} line(s) from {len(pods)} pod(s)"
    if not clean:
        which = "ERROR lines" if cmd.errors_only else "log lines"
        notes = f" ({'; '.join(problems)})" if problems else ""
        return Reply(Notice(f"No {which} from {cmd.service} ({color}) in that window{notes}."), detail=detail)
    if len(clean) <= INLINE_LINES and sum(len(line) + 1 for line in clean) <= INLINE_CHARS:
        return Reply(view, detail=f"{detail}, privately")
    return await _upload(ctx, view, detail)


async def _upload(ctx: Context, view: LogExcerpt, detail: str) -> Reply:
    """Slack has no private files: the excerpt goes into a thread under a one-line note, so the
    channel sees that logs were read, not what they hold."""
    kind = "errors" if view.errors_only else "logs"
    notes = [f"{view.redacted} line(s) redacted"] if view.redacted else []
    notes += list(view.problems)
    comment = f"📜 {view.headline}" + (f" ({'; '.join(notes)})" if notes else "")
    try:
        parent = await ctx.notifier.post(
            ctx.channel,
            Notice(
                f"<@{ctx.actor}> asked for {view.headline}: the excerpt is in this thread "
                "(logs can hold customer data, so they stay out of the channel)."
            ),
        )
        await ctx.notifier.upload(
            ctx.channel,
            f"{view.service}-{view.color}-{kind}.log",
            "\n".join(view.lines) + "\n",
            title=view.headline,
            comment=comment,
            thread=parent,
        )
    except SlackError as exc:
        raise Refused(
            f"Could not share the log file here (Slack: {exc.code}). Invite the bot to this channel, "
            f"or ask for at most {INLINE_LINES} lines to get them privately as a message."
        ) from None
    link = await ctx.notifier.permalink(parent)
    where = f"<{link}|this message>" if link else "the bot's message above"
    return Reply(
        Notice(f"{view.headline}: the file is in the thread of {where}."),
        detail=f"{detail}, as a file in a thread",
    )
