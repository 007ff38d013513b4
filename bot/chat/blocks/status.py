"""Status, scaling, audit and help."""

from __future__ import annotations

from bot.base.mrkdwn import escape, slack_date
from bot.chat.blocks.kit import (
    COLOR_ICON,
    OUTCOME_ICON,
    Row,
    _context,
    _header,
    _listing,
    _section,
    _sections,
    fit_rows,
    render,
)
from bot.domain.views import (
    AuditPage,
    ColorStatus,
    HelpPage,
    Scaled,
    ServiceStatus,
    StatusReport,
)
from bot.gateways.slack import Message


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
