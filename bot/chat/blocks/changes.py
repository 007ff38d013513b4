"""Change cards and lists, log excerpts, alert groups."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import bot.domain.gate.kinds  # noqa: F401  (every kind's words are registered)
from bot.base.mrkdwn import escape, slack_date
from bot.base.redact import clip
from bot.chat.blocks.kit import (
    SECTION_LIMIT,
    STATE_ICON,
    _actions,
    _context,
    _fit,
    _listing,
    _section,
    _sections,
    render,
)
from bot.domain.gate.record import Change, wording
from bot.domain.views import (
    AlertChanges,
    AlertGroupCard,
    AlertLine,
    ChangeCard,
    ChangeList,
    LogExcerpt,
)
from bot.gateways.slack import Message


def _iso_date(text: str | None) -> str:
    return slack_date(datetime.fromisoformat(text)) if text else "—"


def _change_fields(c: Change) -> list[str]:
    fields = [f"*{label}*\n{value}" for label, value in wording(c).fields]
    return [*fields, f"*Requested by*\n{_who(c.requester)}"]


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
        fields += [f"*{wording(c).evidence}*\n{smoke}", f"*Expires*\n{_iso_date(c.expires_at)}"]
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
        words = wording(c)
        lines.append(
            f"{icon} `{c.id}` {words.title} · {escape(words.summary)} · *{c.state.replace('_', ' ')}* · "
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
