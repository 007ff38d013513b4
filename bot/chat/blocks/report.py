"""Reports: facts, tables and paragraphs in one message, within Slack's limits. A table that does
not fit keeps its problems in the message, counts the rest and attaches every row as a file; facts
and paragraphs too long for a message go out whole in a file, the message saying how much it shows."""

from __future__ import annotations

from typing import Any

from bot.base.mrkdwn import escape
from bot.base.redact import clip, redact
from bot.chat.blocks.kit import (
    MAX_BLOCKS,
    SECTION_LIMIT,
    TEXT_LIMIT,
    TONE_ICON,
    Row,
    _actions,
    _clip,
    _context,
    _header,
    _section,
    _sections,
    _size,
    fit_rows,
    render,
)
from bot.domain.views import Facts, Part, Report, Table, Text
from bot.gateways.slack import Attachment, Message

MAX_CELL = 60  # a cell wider than this is cut with "…" in the message; the file has it whole
OK = "ok"
# Facts and paragraphs past these go out whole in a file: the rest of the message is the table's.
PROSE_BLOCKS = 40
PROSE_CHARS = 30_000


def _cell(text: str) -> str:
    """Outside text as one code-line cell: on one line, no backtick to end the code span, and
    redacted before any cut (a card number cut short would no longer be recognised)."""
    return redact(" ".join(text.split()).replace("`", "'"))


def _aligned(columns: tuple[str, ...], rows: list[tuple[str, ...]], cut: bool) -> list[str]:
    cells = [[clip(c, MAX_CELL, "…") if cut else c for c in row] for row in [columns, *rows]]
    widths = [max(len(r[i]) if i < len(r) else 0 for r in cells) for i in range(len(columns))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in cells]


def _code(line: str) -> tuple[str, bool]:
    """A table line as inline code within a section; True when it had to be cut."""
    text = escape(line)
    if len(text) <= SECTION_LIMIT - 2:
        return f"`{text}`", False
    return f"`{clip(text, SECTION_LIMIT - 2, '…')}`", True


def _table_rows(part: Table) -> tuple[str, str, list[Row], bool]:
    """The head line shown, the head line of the file, each row as one code line (`state` None
    marks a problem, shown first) and whether the message cuts anything the file holds whole."""
    flagged = part.attention or (False,) * len(part.rows)
    order = sorted(range(len(part.rows)), key=lambda i: not flagged[i])
    columns = tuple(_cell(c) for c in part.columns)
    rows = [tuple(_cell(c) for c in part.rows[i]) for i in order]
    lines = _aligned(columns, rows, cut=True)
    whole = _aligned(columns, rows, cut=False)
    coded = [_code(line) for line in lines]
    cut = lines != whole or any(was_cut for _, was_cut in coded)
    shown = [
        Row((text,), whole[n + 1], None if flagged[order[n]] else OK) for n, (text, _) in enumerate(coded[1:])
    ]
    return coded[0][0], whole[0], shown, cut


def _text_lines(part: Part) -> list[str]:
    if isinstance(part, Facts):
        head = [f"*{part.title}*"] if part.title else []
        return head + [f"{label}: {value}" for label, value in part.items]
    if isinstance(part, Text):
        return [f"{TONE_ICON[part.tone]} {part.text}" if part.tone else part.text]
    return []


def _whole_report(view: Report) -> str:
    """Every part as plain text, for the file a report too long for a message goes out in."""
    out = [view.title, ""]
    for part in view.parts:
        if isinstance(part, Table):
            columns = tuple(_cell(c) for c in part.columns)
            rows = [tuple(_cell(c) for c in row) for row in part.rows]
            out += [part.title] if part.title else []
            out += _aligned(columns, rows, cut=False) if rows else [part.empty]
            out += [part.note] if part.note else []
        else:
            out += _text_lines(part)
        out.append("")
    out += [view.footer] if view.footer else []
    return "\n".join(out) + "\n"


def _too_long(
    view: Report, header: dict[str, Any], prose: list[dict[str, Any]], tail: list[dict[str, Any]]
) -> Message:
    """Facts and paragraphs beyond a message: the first sections that fit, how many are left out,
    and the whole report (its table included) as a file."""
    kept: list[dict[str, Any]] = []
    room_blocks = MAX_BLOCKS - 2 - len(tail)  # the header and the note
    room_chars = TEXT_LIMIT - 1_000 - _size(tail)
    for block in prose:
        if len(kept) == room_blocks or _size(kept) + _size([block]) > room_chars:
            break
        kept.append(block)
    note = (
        f"📎 {len(kept)} of {len(prose)} sections of this report shown; the whole report"
        f"{', its table included,' if any(isinstance(p, Table) for p in view.parts) else ''}"
        f" is in the file `{view.filename}` in this message's thread"
    )
    files = (Attachment(view.filename, _whole_report(view), view.title),)
    return Message("", [header, *kept, _context(note), *tail], files)


@render.register
def _report(view: Report) -> Message:
    header = _header(f"{TONE_ICON[view.tone]} {view.title}")
    table = next((p for p in view.parts if isinstance(p, Table)), None)
    at = view.parts.index(table) if table is not None else len(view.parts)
    before = _sections([line for p in view.parts[:at] for line in _text_lines(p)])
    after = _sections([line for p in view.parts[at + 1 :] for line in _text_lines(p)])
    closing = ([_context(clip(view.footer, SECTION_LIMIT))] if view.footer else []) + _actions(view.buttons)
    text = _clip(" · ".join([view.title, *(line for p in view.parts for line in _text_lines(p))]))
    prose = before + after
    if len(prose) > PROSE_BLOCKS or _size(prose) > PROSE_CHARS:
        message = _too_long(view, header, prose, closing)
        return Message(text, message.blocks, message.files)
    head = [header, *before]
    tail = after + closing
    if table is None:
        return Message(text, head + tail)
    if table.title:
        head.append(_section(clip(f"*{table.title}*", SECTION_LIMIT)))
    if not table.rows:
        return Message(text, [*head, _section(clip(f"_{table.empty}_", SECTION_LIMIT)), *tail])
    shown_head, file_head, rows, cut = _table_rows(table)
    head.append(_section(shown_head))
    if table.note:
        tail.insert(0, _context(clip(table.note, SECTION_LIMIT)))
    fitted = fit_rows(
        head,
        rows,
        tail,
        noun=table.noun,
        table_head=file_head,
        filename=view.filename,
        title=view.title,
        attach="cells cut with … in this message are whole in the file" if cut else "",
    )
    return Message(text, fitted.blocks, fitted.files)
