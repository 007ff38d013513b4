"""The one place that knows Slack's message format: views → Block Kit (plus a plain-text fallback
for notifications and screen readers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import singledispatch
from typing import Any

from bot.base.redact import clip
from bot.domain import views as mv  # metrics, query, health and digest views (rendered at the end)
from bot.domain.gate.record import Change
from bot.domain.views import (
    AlertChanges,
    AlertGroupCard,
    AlertLine,
    AuditPage,
    Button,
    ChangeCard,
    ChangeList,
    ColorStatus,
    HelpPage,
    LogExcerpt,
    Notice,
    Scaled,
    ServiceStatus,
    StatusReport,
    Tone,
    View,
)

SECTION_LIMIT = 2900  # Slack allows 3,000 characters in a section's text
MAX_BLOCKS = 50
TEXT_LIMIT = 40_000  # Slack's limit on a message's text; also what all its blocks may hold together
LONG_TEXT = 3_000  # a fallback text longer than this is cut at a line, saying so

TONE_ICON = {Tone.INFO: "ℹ️", Tone.SUCCESS: "✅", Tone.WARNING: "⚠️", Tone.ERROR: "⛔", Tone.WORKING: "⏳"}
COLOR_ICON = {"blue": "🔵", "green": "🟢"}
OUTCOME_ICON = {"ok": "✅", "denied": "🚫", "refused": "✋", "failed": "❌", "error": "❌"}


@dataclass(frozen=True)
class Attachment:
    """A file that goes with a message (posted in its thread): the full table of a long view."""

    filename: str
    content: str
    title: str


@dataclass(frozen=True)
class Message:
    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    files: tuple[Attachment, ...] = ()


def escape(text: str) -> str:
    """Neutralise Slack's control characters in text that came from outside (users, the cluster)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(*parts: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": p} for p in parts]}


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": clip(text, 150), "emoji": True}}


def _sections(lines: list[str]) -> list[dict[str, Any]]:
    """Pack lines into as few sections as Slack's per-section limit allows."""
    blocks: list[dict[str, Any]] = []
    chunk = ""
    for line in lines:
        if chunk and len(chunk) + 1 + len(line) > SECTION_LIMIT:
            blocks.append(_section(chunk))
            chunk = ""
        chunk = f"{chunk}\n{line}" if chunk else clip(line, SECTION_LIMIT)
    if chunk:
        blocks.append(_section(chunk))
    return blocks


ACTION_PREFIX = "payflow:"


def action_id(action: str) -> str:
    return f"{ACTION_PREFIX}{action}"


def _button(b: Button) -> dict[str, Any]:
    el: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": clip(b.label, 75), "emoji": True},
        "action_id": action_id(b.action),
        "value": b.value[:2000],
    }
    if b.style:
        el["style"] = b.style
    if b.confirm:
        el["confirm"] = {
            "title": {"type": "plain_text", "text": clip(b.confirm.title, 100)},
            "text": {"type": "mrkdwn", "text": clip(b.confirm.text, 300)},
            "confirm": {"type": "plain_text", "text": b.confirm.ok[:30]},
            "deny": {"type": "plain_text", "text": b.confirm.cancel[:30]},
        }
        if b.style == "danger":
            el["confirm"]["style"] = "danger"
    return el


def _actions(buttons: tuple[Button, ...] | list[Button], block_id: str = "") -> list[dict[str, Any]]:
    """An actions block, or nothing when there are no buttons (a decided approval has none)."""
    if not buttons:
        return []
    block: dict[str, Any] = {"type": "actions", "elements": [_button(b) for b in buttons]}
    if block_id:
        block["block_id"] = block_id
    return [block]


def slack_date(at: datetime) -> str:
    """A timestamp every reader sees in their own timezone; the fallback is UTC."""
    fallback = at.strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"<!date^{int(at.timestamp())}^{{date_num}} {{time_secs}}|{fallback}>"


def _fit(blocks: list[dict[str, Any]], note: str) -> list[dict[str, Any]]:
    if len(blocks) <= MAX_BLOCKS:
        return blocks
    return [*blocks[: MAX_BLOCKS - 1], _context(note)]


# --- long views: every row shown, counted, or in the attached file ------------------------


@dataclass(frozen=True)
class Row:
    """One entry of a long view (a service, a dependency): its lines in the message, its line in
    the full table, and `state`, the summary it is counted under when the message has no room for
    it — None for a problem, which is shown before anything else is."""

    lines: tuple[str, ...]
    table: str
    state: str | None = None


@dataclass(frozen=True)
class Fitted:
    blocks: list[dict[str, Any]]
    files: tuple[Attachment, ...]
    shown: int  # rows shown in full in the message
    counted: dict[str, int]  # rows only counted, per state ("more needing attention" for problems)


MORE_PROBLEMS = "more needing attention"


def _size(blocks: list[dict[str, Any]]) -> int:
    total = 0
    for b in blocks:
        text = b.get("text")
        if isinstance(text, dict):
            total += len(text.get("text", ""))
        total += sum(len(e.get("text", "")) for e in b.get("elements", ()) if isinstance(e, dict))
    return total


def fit_rows(
    head: list[dict[str, Any]],
    rows: list[Row],
    tail: list[dict[str, Any]],
    *,
    noun: str,
    table_head: str,
    filename: str,
    title: str,
) -> Fitted:
    """The one fitting rule for every long view, within Slack's limits (50 blocks, 3,000
    characters a section, 40,000 in all): `head` and `tail` are always kept (a digest's verdict,
    dependencies and alerts); rows are shown in full when they all fit; otherwise problems come
    first, as many as fit, the other rows are counted per state ("196 healthy"), and the full
    table of every row goes with the message as a file. Never a silent cut."""
    fixed = len(head) + len(tail)
    all_in = _sections([line for r in rows for line in r.lines])
    if fixed + len(all_in) <= MAX_BLOCKS and _size(head) + _size(tail) + _size(all_in) <= TEXT_LIMIT:
        return Fitted([*head, *all_in, *tail], (), len(rows), {})

    budget_blocks = MAX_BLOCKS - fixed - 2  # the summary and the note about the file
    budget_chars = TEXT_LIMIT - _size(head) - _size(tail) - 1_000
    problems = [r for r in rows if r.state is None]
    shown, count = _pack_while_room(problems, budget_blocks, budget_chars)
    counted: dict[str, int] = {}
    if len(problems) > count:
        counted[MORE_PROBLEMS] = len(problems) - count
    for r in rows:
        if r.state is not None:
            counted[r.state] = counted.get(r.state, 0) + 1
    summary = " · ".join(f"*{n}* {state}" for state, n in counted.items())
    what = f"{count} of {len(rows)} {noun} shown" if count else f"none of the {len(rows)} {noun} shown"
    note = (
        f"📎 {what}; the full table of all {len(rows)} is in the file `{filename}` in this message's thread"
    )
    table = "\n".join([table_head, *(r.table for r in rows)]) + "\n"
    blocks = [*head, *shown, _section(f"…and {summary}"), _context(note), *tail]
    return Fitted(blocks, (Attachment(filename, table, title),), count, counted)


def _pack_while_room(rows: list[Row], max_blocks: int, max_chars: int) -> tuple[list[dict[str, Any]], int]:
    """The first rows, whole, packed as `_sections` packs them, while they fit: linear."""
    chunks: list[str] = []
    chars = 0
    for n, row in enumerate(rows):
        trial = list(chunks)
        added = 0
        for line in row.lines:
            line = clip(line, SECTION_LIMIT)
            if trial and len(trial[-1]) + 1 + len(line) <= SECTION_LIMIT:
                trial[-1] = f"{trial[-1]}\n{line}"
            else:
                trial.append(line)
            added += len(line) + 1
        if len(trial) > max_blocks or chars + added > max_chars:
            return [_section(c) for c in chunks], n
        chunks, chars = trial, chars + added
    return [_section(c) for c in chunks], len(rows)


def _clip(text: str) -> str:
    """A fallback text within Slack's limit (it is what notifications show, not the message)."""
    if len(text) <= LONG_TEXT:
        return text
    return clip(text, len(text[: LONG_TEXT - 20].rsplit(" ", 1)[0])) + " … (see the message)"


@singledispatch
def render(view: View) -> Message:
    raise TypeError(f"no rendering for {type(view).__name__}")


@render.register
def _notice(view: Notice) -> Message:
    text = f"{TONE_ICON[view.tone]} {view.text}"
    blocks = [_section(text)]
    if view.usage:
        blocks.append(_context(f"Usage: `{view.usage}` · `/payflow help` lists every command"))
    blocks += _actions(view.buttons)
    return Message(text, blocks)


def _color_line(c: ColorStatus) -> str:
    version = f"`{escape(c.version)}`" if c.version else "—"
    live = " *(live)*" if c.live else ""
    pods = f"{c.ready}/{c.desired} ready"
    restarts = f"{c.restarts} restart{'s' * (c.restarts != 1)}"
    return f"{COLOR_ICON[c.color]} {c.color}{live} {version} · {pods} · {restarts} · {c.rollout}"


def _service_lines(s: ServiceStatus) -> list[str]:
    mark = "✅" if s.healthy else "🔴"
    live = f"live: *{s.live}*" if s.live else "live: *unknown*"
    lines = [f"{mark} *{s.name}* — {live}"]
    lines += [_color_line(c) for c in s.colors]
    problems = [*s.problems, *(f"{c.color}: {p}" for c in s.colors for p in c.problems)]
    lines += [f"      ⚠️ {escape(p)}" for p in problems]
    return lines


def _status_table(s: ServiceStatus) -> str:
    cells = [s.name, s.live or "unknown"]
    for c in s.colors:
        cells.append(
            f"{c.color}={c.version or '-'} {c.ready}/{c.desired} ready {c.restarts} restarts {c.rollout}"
        )
    problems = [*s.problems, *(f"{c.color}: {p}" for c in s.colors for p in c.problems)]
    cells.append("; ".join(problems) or "ok")
    return "\t".join(cells)


@render.register
def _status(view: StatusReport) -> Message:
    troubled = [s for s in view.services if not s.healthy]
    ordered = troubled + [s for s in view.services if s.healthy]
    summary = (
        f"{len(troubled)} of {len(view.services)} service(s) need attention"
        if troubled
        else f"all {len(view.services)} service(s) healthy"
    )
    head = [
        _header(f"PayFlow status · {view.environment}"),
        _context(f"namespace `{view.namespace}` · {summary}"),
    ]
    rows = [
        Row(tuple(_service_lines(s)), _status_table(s), None if not s.healthy else "healthy") for s in ordered
    ]
    fitted = fit_rows(
        head,
        rows,
        [],
        noun="services",
        table_head="service\tlive\tblue\tgreen\tproblems",
        filename=f"payflow-status-{view.environment}.tsv",
        title=f"PayFlow status · {view.environment}: all {len(rows)} services",
    )
    text = f"PayFlow status ({view.environment}): {summary}"
    return Message(text, fitted.blocks, fitted.files)


@render.register
def _scaled(view: Scaled) -> Message:
    text = f"<@{view.actor}> scaled {view.service} ({view.color}) {view.before} → {view.after}"
    icon = COLOR_ICON[view.color]
    rich = f"<@{view.actor}> scaled *{view.service}* ({icon} {view.color}) {view.before} → {view.after}"
    return Message(text, [_section(rich)])


def _listing(title: str, lines: list[str], empty: str) -> Message:
    """A titled list of one-line entries, or a sentence saying there are none."""
    if not lines:
        return Message(empty, [_section(empty)])
    return Message(title, [_section(f"*{title}*"), *_sections(lines)])


@render.register
def _audit(view: AuditPage) -> Message:
    scope = f" for {view.service}" if view.service else ""
    lines = []
    for e in view.entries:
        icon = OUTCOME_ICON.get(e.outcome, "•")
        target = f" {e.target}" if e.target else ""
        detail = f" — {escape(e.detail)}" if e.detail else ""
        lines.append(f"{icon} {slack_date(e.at)} <@{e.actor}> `{e.action}{target}` *{e.outcome}*{detail}")
    title = f"Audit{scope}: last {len(view.entries)} entr{'y' if len(view.entries) == 1 else 'ies'}"
    return _listing(title, lines, f"No audit entries{scope} yet.")


@render.register
def _help(view: HelpPage) -> Message:
    lines = []
    for e in view.entries:
        role = f" _(needs {e.role})_" if e.role else ""
        lines.append(f"*`{e.usage}`*{role}\n{e.summary}")
        if view.detailed or len(view.entries) == 1:
            lines += [f"  e.g. `{x}`" for x in e.examples]
    blocks = [_section("*PayFlow bot* — run production from Slack. Commands:"), *_sections(lines)]
    if not view.detailed:
        blocks.append(_context("`/payflow help <command>` shows examples"))
    return Message("PayFlow bot help", blocks)


STATE_ICON = {
    "preparing": "🔄",
    "awaiting_approval": "✋",
    "applying": "🔀",
    "verifying": "🍞",
    "needs_decision": "❓",
    "cleaning_up": "🧹",
    "done": "✅",
    "failed": "❌",
    "rejected": "🚫",
    "expired": "⌛",
    "voided": "⛔",
    "cancelled": "🗑️",
    "rollback_proposed": "↩️",
}


# --- metrics, query, health, digests ------------------------------------------------------

VERDICT_ICON = {"ok": "✅", "warn": "⚠️", "bad": "🔴", "unknown": "❔", "info": "▫️"}


def _figure(f: mv.Figure) -> str:
    objective = f" (SLO {f.objective})" if f.objective else ""
    return f"{VERDICT_ICON[f.verdict]} {f.label} *{escape(f.value)}*{objective}"


def _compact(f: mv.Figure) -> str:
    mark = "" if f.verdict in ("ok", "info") else f" {VERDICT_ICON[f.verdict]}"
    return f"{f.label} {escape(f.value)}{mark}"


@render.register
def _metrics(view: mv.MetricsReport) -> Message:
    breaches = [f.label for f in view.figures if f.verdict == "bad"]
    unknown = [f.label for f in view.figures if f.verdict == "unknown"]
    if breaches:
        summary = f"🔴 {', '.join(breaches)} outside the SLO"
    elif unknown:
        summary = f"❔ no figure for {', '.join(unknown)}: not known to be healthy"
    else:
        summary = "✅ every figure with an SLO is within it"
    live = f" · live: {COLOR_ICON.get(view.live, '')} {view.live}" if view.live else ""
    coverage = f"⏳ {escape(view.coverage)}\n" if view.coverage else ""
    blocks = [
        _header(f"{view.service} · last {view.window}"),
        _section(summary + "\n" + coverage + "\n".join(_figure(f) for f in view.figures)),
    ]
    context = [f"all colors together{live}"]
    if view.note:
        context.append(escape(view.note))
    blocks.append(_context(*context))
    return Message(f"{view.service} metrics, last {view.window}: {summary[2:]}", blocks)


@render.register
def _query_table(view: mv.QueryTable) -> Message:
    if not view.rows:
        text = "The query returned no series (no data)."
        return Message(text, [_section(f"`{escape(view.promql)}`\n{text}")])
    width = min(max(len(labels) for labels, _ in view.rows), 80)
    rows = [f"{labels.ljust(width)}  {value}" for labels, value in view.rows]
    blocks = [_section(f"`{escape(view.promql)}`"), *_code(rows)]
    if view.total > len(view.rows):
        blocks.append(
            _context(f"{len(view.rows)} of {view.total} series shown; narrow the query for the rest")
        )
    what = "scalar" if view.scalar else f"{view.total} series"
    return Message(f"Query result: {what}", blocks)


def _code(lines: list[str]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    chunk: list[str] = []
    for line in lines:
        if chunk and sum(len(c) + 1 for c in chunk) + len(line) > SECTION_LIMIT - 10:
            blocks.append(_section("```" + escape("\n".join(chunk)) + "```"))
            chunk = []
        chunk.append(line)
    if chunk:
        blocks.append(_section("```" + escape("\n".join(chunk)) + "```"))
    return blocks


def _health_item(item: mv.HealthItem) -> list[str]:
    kind = "" if item.kind == "service" else " _(dependency)_"
    return [
        f"{VERDICT_ICON[item.verdict]} *{escape(item.name)}*{kind}",
        *(f"      {escape(x)}" for x in item.lines),
    ]


@render.register
def _health(view: mv.HealthReport) -> Message:
    troubled = [i for i in view.items if i.verdict != "ok"]
    summary = (
        f"{len(troubled)} of {len(view.items)} need attention"
        if troubled
        else f"all {len(view.items)} healthy"
    )
    head = [
        _header(f"PayFlow health · {view.environment}"),
        _context(f"{VERDICT_ICON[view.verdict]} {summary} · worst first"),
    ]
    tail = [_context(*(f"❔ {escape(n)}" for n in view.notes[:10]))] if view.notes else []
    rows = [
        Row(
            tuple(_health_item(i)),
            "\t".join([i.name, i.kind, i.verdict, "; ".join(i.lines)]),
            None if i.verdict != "ok" else ("healthy" if i.kind == "service" else "dependencies up"),
        )
        for i in view.items
    ]
    fitted = fit_rows(
        head,
        rows,
        tail,
        noun="items",
        table_head="name\tkind\tverdict\tdetails",
        filename=f"payflow-health-{view.environment}.tsv",
        title=f"PayFlow health · {view.environment}: all {len(rows)} items",
    )
    text = f"PayFlow health ({view.environment}): {summary}"
    return Message(text, fitted.blocks, fitted.files)


_VERDICT_WORDS = {
    "ok": "All good",
    "warn": "Watch",
    "bad": "Needs attention",
    "unknown": "Not known to be healthy",
}


def _digest_service(s: mv.DigestService) -> str:
    live = f"{COLOR_ICON.get(s.live, '')} {s.live}" if s.live else "live: unknown"
    version = f" `{escape(s.version)}`" if s.version else ""
    figures = " · ".join(_compact(f) for f in s.figures)
    return f"{VERDICT_ICON[s.verdict]} *{s.name}* {live}{version} · {s.ready}/{s.desired} ready · {figures}"


def _digest_table(s: mv.DigestService) -> str:
    figures = "\t".join(f"{f.label} {f.value}" for f in s.figures)
    return (
        f"{s.name}\t{s.verdict}\t{s.live or 'unknown'}\t{s.version or '-'}\t{s.ready}/{s.desired}\t{figures}"
    )


@render.register
def _digest(view: mv.DigestReport) -> Message:
    verdict = view.verdict
    troubled = [s.name for s in view.services if s.verdict != "ok"]
    deps_down = [d.name for d in view.dependencies if d.verdict != "ok"]
    parts = []
    if troubled:
        more = f" and {len(troubled) - 5} more" if len(troubled) > 5 else ""
        parts.append(f"{len(troubled)} of {len(view.services)} service(s): {', '.join(troubled[:5])}{more}")
    if deps_down:
        parts.append(f"dependencies: {', '.join(deps_down)}")
    if view.alerts.verdict != "ok":
        parts.append(
            f"{view.alerts.value} firing alert(s)" if view.alerts.value[:1].isdigit() else "alerts unknown"
        )
    headline = f"{VERDICT_ICON[verdict]} *{_VERDICT_WORDS[verdict]}*" + (
        f" — {'; '.join(parts)}" if parts else ""
    )
    head = [_header(view.title), _section(clip(headline, SECTION_LIMIT))]
    if view.late:
        head.append(_context(f"⏰ {escape(view.late)}"))
    deps = [
        f"{VERDICT_ICON[d.verdict]} {escape(d.name)} {escape('; '.join(d.lines))}" for d in view.dependencies
    ]
    joined = f"*Dependencies* {' · '.join(deps)}" if deps else "*Dependencies* none in the catalog"
    tail = [_section(joined)] if len(joined) <= SECTION_LIMIT else _sections(["*Dependencies*", *deps])
    tail.append(_section(f"*Alerts* {VERDICT_ICON[view.alerts.verdict]} {escape(view.alerts.value)} firing"))
    tail.append(_context(f"figures over the last {view.window}; CPU and memory against 80 % of limits"))
    if view.unavailable:
        tail += _sections([f"❔ unavailable — {escape(u)}" for u in view.unavailable[:10]])
    rows = [
        Row((_digest_service(s),), _digest_table(s), None if s.verdict != "ok" else "all good")
        for s in view.services
    ]
    fitted = fit_rows(
        head,
        rows,
        tail,
        noun="services",
        table_head="service\tverdict\tlive\tversion\tready\tfigures",
        filename="payflow-digest.tsv",
        title=f"{view.title}: all {len(rows)} services",
    )
    text = f"{view.title}: {_VERDICT_WORDS[verdict]}" + (f" — {'; '.join(parts)}" if parts else "")
    if view.late:
        text += f" ({view.late})"
    return Message(_clip(text), fitted.blocks, fitted.files)


@render.register
def _error_digest(view: mv.ErrorDigest) -> Message:
    verdict = view.verdict
    breaching = [name for name, f in view.rows if f.verdict == "bad"]
    listed = ", ".join(breaching[:10]) + (f" and {len(breaching) - 10} more" if len(breaching) > 10 else "")
    headline = f"{VERDICT_ICON[verdict]} *{_VERDICT_WORDS[verdict]}*" + (
        f" — over the SLO: {listed}" if breaching else ""
    )
    head = [_header(view.title), _section(clip(headline, SECTION_LIMIT))]
    if view.late:
        head.append(_context(f"⏰ {escape(view.late)}"))
    tail = []
    if view.unavailable:
        tail += _sections([f"❔ unavailable — {escape(u)}" for u in view.unavailable[:10]])
    tail.append(_context(f"error rate over the last {view.window}"))
    rows = [
        Row(
            (f"{VERDICT_ICON[f.verdict]} *{name}* {escape(f.value)} (SLO {f.objective})",),
            f"{name}\t{f.verdict}\t{f.value}\t{f.objective}",
            None if f.verdict != "ok" else "within the SLO",
        )
        for name, f in view.rows
    ]
    fitted = fit_rows(
        head,
        rows,
        tail,
        noun="services",
        table_head="service\tverdict\terror rate\tSLO",
        filename="payflow-errors.tsv",
        title=f"{view.title}: all {len(rows)} services",
    )
    text = f"{view.title}: {_VERDICT_WORDS[verdict]}" + (f" (over the SLO: {listed})" if breaching else "")
    if view.late:
        text += f" ({view.late})"
    return Message(_clip(text), fitted.blocks, fitted.files)


@render.register
def _schedules(view: mv.DigestSchedules) -> Message:
    if not view.schedules:
        text = "No digest schedules in the catalog."
        return Message(text, [_section(text)])
    lines = []
    for s in view.schedules:
        when = slack_date(s.next_at) if s.next_at and view.running else "—"
        lines.append(
            f"• *{s.name}* ({s.kind}) `{escape(s.cron)}` {s.timezone} → {escape(s.channel)} · next: {when}"
        )
    blocks = [_section("*Digest schedules*"), *_sections(lines)]
    if not view.running:
        blocks.append(_context("⚠️ Not posting: set PROMETHEUS_URL so this bot runs the schedules."))
    blocks.append(_context("`/payflow digest now` posts the health digest here"))
    return Message("Digest schedules", blocks)


def _iso_date(text: str | None) -> str:
    return slack_date(datetime.fromisoformat(text)) if text else "—"


def _change_fields(c: Change) -> list[str]:
    before = f"{COLOR_ICON[c.from_color]} {c.from_color} `{escape(c.from_version)}`"
    arrow = f"{before} → {COLOR_ICON[c.to_color]} {c.to_color} `{escape(c.image_version)}`"
    return [
        f"*Service*\n{c.service}",
        f"*Change*\n{c.kind} `{c.id}`",
        f"*Traffic*\n{arrow}",
        f"*Image*\n`{escape(c.to_image)}`",
        f"*Replicas*\n{c.replicas}",
        f"*Requested by*\n{_who(c.requester)}",
    ]


def _who(user: str) -> str:
    return "the bot" if user == "payflow-bot" else f"<@{user}>"


@render.register
def _change_card(view: ChangeCard) -> Message:
    c = view.change
    icon = STATE_ICON.get(c.state, "•")
    head = f"{icon} {view.headline}"
    blocks: list[dict[str, Any]] = [_section(head)]
    fields = _change_fields(c)
    if view.approval:
        smoke = "\n".join(escape(s) for s in c.smoke) or "—"
        fields += [f"*Smoke test*\n{smoke}", f"*Expires*\n{_iso_date(c.expires_at)}"]
    blocks.append({"type": "section", "fields": [{"type": "mrkdwn", "text": clip(f, 2000)} for f in fields]})
    if c.reason:
        blocks.append(_context(f"Reason: {escape(c.reason)}"))
    if c.break_glass:
        blocks.append(_context(f"🚨 Break-glass during a change freeze: {escape(c.break_glass)}"))
    blocks += _sections(list(view.lines))
    blocks += _actions(view.buttons, block_id=f"change:{c.id}")
    text = f"{c.service} {c.kind} {c.id}: {view.headline}"
    return Message(text, blocks)


@render.register
def _change_list(view: ChangeList) -> Message:
    scope = f" for {view.service}" if view.service else ""
    lines = []
    for c in view.changes:
        icon = STATE_ICON.get(c.state, "•")
        lines.append(
            f"{icon} `{c.id}` *{c.service}* {c.kind} {c.from_color} `{escape(c.from_version)}` → "
            f"{c.to_color} `{escape(c.image_version)}` · *{c.state.replace('_', ' ')}* · "
            f"{_who(c.requester)} · {_iso_date(c.created_at)}"
        )
    title = f"Changes{scope}: {sum(c.in_flight for c in view.changes)} in flight"
    return _listing(title, lines, f"No changes{scope} yet.")


# --- logs and alerts ----------------------------------------------------------------------


def _code_blocks(lines: tuple[str, ...] | list[str]) -> list[dict[str, Any]]:
    """Lines in code fences, as many sections as Slack's limit needs; a fence inside a line is
    defused so log text cannot close the block and format the rest."""
    safe = [escape(line).replace("```", "'''") for line in lines]
    chunks: list[list[str]] = [[]]
    size = 0
    for line in safe:
        line = line[: SECTION_LIMIT - 10]
        if chunks[-1] and size + len(line) + 1 > SECTION_LIMIT - 10:
            chunks.append([])
            size = 0
        chunks[-1].append(line)
        size += len(line) + 1
    return [_section("```\n" + "\n".join(chunk) + "\n```") for chunk in chunks if chunk]


@render.register
def _logs(view: LogExcerpt) -> Message:
    blocks = [_section(f"📜 *{escape(view.headline)}*")]
    if view.lines:
        blocks += _code_blocks(view.lines)
    else:
        which = "ERROR lines" if view.errors_only else "log lines"
        blocks.append(_section(f"No {which} in that window."))
    notes = []
    if view.redacted:
        notes.append(f"🔒 {view.redacted} line(s) had card numbers, tokens or passwords redacted")
    notes += [f"⚠️ {escape(p)}" for p in view.problems]
    if view.private:  # first: the context block keeps at most 10 elements
        notes.insert(0, "👤 only you see this: logs can hold customer data")
    if notes:
        blocks.append(_context(*notes[:10]))
    return Message(view.headline, _fit(blocks, "Too many lines for one message; ask for fewer."))


ALERT_ICON = {"firing": "🔥", "resolved": "✅"}


def _alert_text(a: AlertLine) -> str:
    who = f" `{escape(a.instance)}`" if a.instance else ""
    summary = f" — {escape(a.summary)}" if a.summary else ""
    if a.status == "resolved":
        when = f" · resolved {slack_date(a.ends_at)}" if a.ends_at else ""
        return f"~{escape(a.name)}~{who}{summary}{when}"
    when = f" · since {slack_date(a.starts_at)}" if a.starts_at else ""
    return f"*{escape(a.name)}*{who}{summary}{when}"


def _alert_line(a: AlertLine) -> str:
    return f"{'✅' if a.status == 'resolved' else '🔴'} {_alert_text(a)}"


def _link(url: str, label: str) -> str | None:
    if not url.startswith(("http://", "https://")) or any(c in url for c in " |<>\n"):
        return None
    return f"<{url}|{label}>"


@render.register
def _alert_group(view: AlertGroupCard) -> Message:
    firing = sum(a.status == "firing" for a in view.alerts)
    resolved = len(view.alerts) - firing
    if view.counts is not None:
        firing, resolved = view.counts
    about = " · ".join(escape(x) for x in (view.service, view.severity) if x)
    head = f"{ALERT_ICON.get(view.status, '•')} *{view.status.upper()}* · *{escape(view.title)}*"
    head += f" · {about}" if about else ""
    count = f"{firing} firing, {resolved} resolved"
    if firing + resolved > len(view.alerts):
        count += f" (the first {len(view.alerts)} shown)"
    blocks = [_section(head), *_sections([_alert_line(a) for a in view.alerts])]
    context = [" · ".join(f"`{escape(k)}={escape(v)}`" for k, v in view.labels), count]
    if view.truncated:
        context.append(f"{view.truncated} more alert(s) left out by Alertmanager")
    link = _link(view.source, "Alertmanager") if view.source else None
    if link:
        context.append(link)
    blocks.append(_context(*(c for c in context if c)))
    if view.silenced_by:
        until = f" until {slack_date(view.silenced_until)}" if view.silenced_until else ""
        blocks.append(_context(f"🔕 Silenced by <@{view.silenced_by}>{until}"))
    blocks += _actions(view.buttons, block_id="alertgroup")
    service = f" ({view.service})" if view.service else ""
    text = f"{ALERT_ICON.get(view.status, '')} {view.status.upper()}: {view.title}{service} — {count}"
    return Message(text, _fit(blocks, "More alerts than one message holds; see Alertmanager."))


@render.register
def _alert_changes(view: AlertChanges) -> Message:
    lines = [f"🔥 Fired: {_alert_text(a)}" for a in view.fired]
    lines += [f"✅ Resolved: {_alert_text(a)}" for a in view.resolved]
    text = f"{len(view.fired)} fired, {len(view.resolved)} resolved"
    return Message(text, _fit(_sections(lines), "More changes than one message holds."))
