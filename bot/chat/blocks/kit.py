"""Block Kit's pieces and the one fitting rule for long views; `render` dispatches on the view's type
and each room of this package registers the renderings of its views."""

from __future__ import annotations

from dataclasses import dataclass
from functools import singledispatch
from typing import Any

from bot.base.redact import clip, redact
from bot.domain.views import (
    Button,
    Notice,
    Tone,
    View,
)
from bot.gateways.slack import Attachment, Message

SECTION_LIMIT = 2900  # Slack allows 3,000 characters in a section's text
MAX_BLOCKS = 50
TEXT_LIMIT = 40_000  # Slack's limit on a message's text; also what all its blocks may hold together
LONG_TEXT = 3_000  # a fallback text longer than this is cut at a line, saying so

TONE_ICON = {Tone.INFO: "ℹ️", Tone.SUCCESS: "✅", Tone.WARNING: "⚠️", Tone.ERROR: "⛔", Tone.WORKING: "⏳"}
COLOR_ICON = {"blue": "🔵", "green": "🟢"}
OUTCOME_ICON = {"ok": "✅", "denied": "🚫", "refused": "✋", "failed": "❌", "error": "❌"}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(*parts: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": p} for p in parts]}


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": clip(text, 150), "emoji": True}}


def _pieces(line: str, limit: int = SECTION_LIMIT) -> list[str]:
    """A line longer than a section, in pieces that each fit one, split at a space where there is
    one: a paragraph is carried on, not cut. Redacted first, so a split cannot halve a card number
    that the redaction point downstream would then no longer recognise."""
    if len(line) <= limit:
        return [line]
    line = redact(line)
    pieces = []
    while len(line) > limit:
        at = line.rfind(" ", limit // 2, limit)
        at = at if at > 0 else limit
        pieces.append(line[:at])
        line = line[at:].lstrip(" ")
    return [*pieces, line] if line else pieces


def _sections(lines: list[str]) -> list[dict[str, Any]]:
    """Pack lines into as few sections as Slack's per-section limit allows."""
    blocks: list[dict[str, Any]] = []
    chunk = ""
    for line in (piece for whole in lines for piece in _pieces(whole)):
        if chunk and len(chunk) + 1 + len(line) > SECTION_LIMIT:
            blocks.append(_section(chunk))
            chunk = ""
        chunk = f"{chunk}\n{line}" if chunk else line
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
    attach: str = "",
) -> Fitted:
    """The one fitting rule for every long view, within Slack's limits (50 blocks, 3,000
    characters a section, 40,000 in all): `head` and `tail` are always kept (a digest's verdict,
    dependencies and alerts); rows are shown in full when they all fit; otherwise problems come
    first, as many as fit, the other rows are counted per state ("196 healthy"), and the full
    table of every row goes with the message as a file. Never a silent cut: `attach`, when the
    rows' lines in the message leave something out (a long cell cut), says so and sends the file
    even when every row fits."""
    fixed = len(head) + len(tail) + bool(attach)
    all_in = _sections([line for r in rows for line in r.lines])
    table = "\n".join([table_head, *(r.table for r in rows)]) + "\n"
    if (
        fixed + len(all_in) <= MAX_BLOCKS
        and _size(head) + _size(tail) + _size(all_in) + len(attach) <= TEXT_LIMIT
    ):
        if not attach:
            return Fitted([*head, *all_in, *tail], (), len(rows), {})
        said = _context(f"📎 {attach}; the full table is in the file `{filename}` in this message's thread")
        return Fitted([*head, *all_in, said, *tail], (Attachment(filename, table, title),), len(rows), {})

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
    blocks = _sections(text.split("\n"))  # a long list (users locked 100) in sections Slack accepts
    if view.usage:
        blocks.append(_context(f"Usage: `{view.usage}` · `/payflow help` lists every command"))
    blocks += _actions(view.buttons)
    return Message(text, blocks)


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


def _listing(title: str, lines: list[str], empty: str) -> Message:
    """A titled list of one-line entries, or a sentence saying there are none."""
    if not lines:
        return Message(empty, [_section(empty)])
    return Message(title, [_section(f"*{title}*"), *_sections(lines)])
