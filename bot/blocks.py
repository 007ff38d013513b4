"""The one place that knows Slack's message format: views → Block Kit (plus a plain-text fallback
for notifications and screen readers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import singledispatch
from typing import Any

from bot.views import (
    AuditPage,
    Button,
    ColorStatus,
    HelpPage,
    Notice,
    Scaled,
    ServiceStatus,
    StatusReport,
    Tone,
    View,
)

SECTION_LIMIT = 2900  # Slack allows 3,000 characters in a section's text
MAX_BLOCKS = 50

TONE_ICON = {Tone.INFO: "ℹ️", Tone.SUCCESS: "✅", Tone.WARNING: "⚠️", Tone.ERROR: "⛔", Tone.WORKING: "⏳"}
COLOR_ICON = {"blue": "🔵", "green": "🟢"}
OUTCOME_ICON = {"ok": "✅", "denied": "🚫", "refused": "✋", "failed": "❌", "error": "❌"}


@dataclass(frozen=True)
class Message:
    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)


def escape(text: str) -> str:
    """Neutralise Slack's control characters in text that came from outside (users, the cluster)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(*parts: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": p} for p in parts]}


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": text[:150], "emoji": True}}


def _sections(lines: list[str]) -> list[dict[str, Any]]:
    """Pack lines into as few sections as Slack's per-section limit allows."""
    blocks: list[dict[str, Any]] = []
    chunk = ""
    for line in lines:
        if chunk and len(chunk) + 1 + len(line) > SECTION_LIMIT:
            blocks.append(_section(chunk))
            chunk = ""
        chunk = f"{chunk}\n{line}" if chunk else line[:SECTION_LIMIT]
    if chunk:
        blocks.append(_section(chunk))
    return blocks


ACTION_PREFIX = "payflow:"


def action_id(action: str) -> str:
    return f"{ACTION_PREFIX}{action}"


def _button(b: Button) -> dict[str, Any]:
    el: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": b.label[:75], "emoji": True},
        "action_id": action_id(b.action),
        "value": b.value[:2000],
    }
    if b.style:
        el["style"] = b.style
    if b.confirm:
        el["confirm"] = {
            "title": {"type": "plain_text", "text": b.confirm.title[:100]},
            "text": {"type": "mrkdwn", "text": b.confirm.text[:300]},
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


@render.register
def _status(view: StatusReport) -> Message:
    troubled = [s for s in view.services if not s.healthy]
    ordered = troubled + [s for s in view.services if s.healthy]
    summary = (
        f"{len(troubled)} of {len(view.services)} service(s) need attention"
        if troubled
        else f"all {len(view.services)} service(s) healthy"
    )
    blocks = [
        _header(f"PayFlow status · {view.environment}"),
        _context(f"namespace `{view.namespace}` · {summary}"),
    ]
    for service in ordered:
        blocks += _sections(_service_lines(service))
    text = f"PayFlow status ({view.environment}): {summary}"
    return Message(
        text, _fit(blocks, "More services than one message holds; ask for one: `/payflow status <service>`")
    )


@render.register
def _scaled(view: Scaled) -> Message:
    text = f"<@{view.actor}> scaled {view.service} ({view.color}) {view.before} → {view.after}"
    icon = COLOR_ICON[view.color]
    rich = f"<@{view.actor}> scaled *{view.service}* ({icon} {view.color}) {view.before} → {view.after}"
    return Message(text, [_section(rich)])


@render.register
def _audit(view: AuditPage) -> Message:
    scope = f" for {view.service}" if view.service else ""
    if not view.entries:
        text = f"No audit entries{scope} yet."
        return Message(text, [_section(text)])
    lines = []
    for e in view.entries:
        icon = OUTCOME_ICON.get(e.outcome, "•")
        target = f" {e.target}" if e.target else ""
        detail = f" — {escape(e.detail)}" if e.detail else ""
        lines.append(f"{icon} {slack_date(e.at)} <@{e.actor}> `{e.action}{target}` *{e.outcome}*{detail}")
    title = f"Audit{scope}: last {len(view.entries)} entr{'y' if len(view.entries) == 1 else 'ies'}"
    return Message(title, [_section(f"*{title}*"), *_sections(lines)])


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
