"""Metrics, query tables, health and the digests."""

from __future__ import annotations

from typing import Any

from bot.base.mrkdwn import escape, slack_date
from bot.base.redact import clip
from bot.chat.blocks.digests import VERDICT_ICON, VERDICT_WORDS, business_section, compact, line_sections
from bot.chat.blocks.kit import (
    COLOR_ICON,
    SECTION_LIMIT,
    Row,
    _clip,
    _context,
    _header,
    _section,
    _sections,
    fit_rows,
    render,
)
from bot.domain import views as mv
from bot.gateways.slack import Message

# --- metrics, query, health, digests ------------------------------------------------------


def _figure(f: mv.Figure) -> str:
    objective = f" (SLO {f.objective})" if f.objective else ""
    return f"{VERDICT_ICON[f.verdict]} {f.label} *{escape(f.value)}*{objective}"


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
    blocks += business_section(view.business, f"all PayFlow, the last {view.window}")
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


def _digest_service(s: mv.DigestService) -> str:
    live = f"{COLOR_ICON.get(s.live, '')} {s.live}" if s.live else "live: unknown"
    version = f" `{escape(s.version)}`" if s.version else ""
    figures = " · ".join(compact(f) for f in s.figures)
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
    parts += [f.label for f in view.extra if f.verdict in ("bad", "unknown", "warn")]
    headline = f"{VERDICT_ICON[verdict]} *{VERDICT_WORDS[verdict]}*" + (
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
    tail += business_section(view.business, "all PayFlow, the last day")
    tail += line_sections(view.extra)
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
    text = f"{view.title}: {VERDICT_WORDS[verdict]}" + (f" — {'; '.join(parts)}" if parts else "")
    if view.late:
        text += f" ({view.late})"
    return Message(_clip(text), fitted.blocks, fitted.files)


@render.register
def _error_digest(view: mv.ErrorDigest) -> Message:
    verdict = view.verdict
    breaching = [name for name, f in view.rows if f.verdict == "bad"]
    listed = ", ".join(breaching[:10]) + (f" and {len(breaching) - 10} more" if len(breaching) > 10 else "")
    headline = f"{VERDICT_ICON[verdict]} *{VERDICT_WORDS[verdict]}*" + (
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
    text = f"{view.title}: {VERDICT_WORDS[verdict]}" + (f" (over the SLO: {listed})" if breaching else "")
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
    blocks.append(_context("`/payflow digest now [daily|weekly|monthly]` posts one here"))
    return Message("Digest schedules", blocks)
