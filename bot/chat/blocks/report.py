"""Reports: facts, tables and paragraphs in one message, within Slack's limits. A table that does
not fit keeps its problems in the message, counts the rest and attaches every row as a file."""

from __future__ import annotations

from typing import Any

from bot.base.mrkdwn import escape
from bot.chat.blocks.kit import TONE_ICON, Row, _actions, _clip, _context, _header, _section, fit_rows, render
from bot.domain.views import Facts, Part, Report, Table, Text
from bot.gateways.slack import Message

MAX_CELL = 60  # a cell wider than this is cut with "…" in the message; the file has it whole
OK = "ok"


def _cell(text: str) -> str:
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def _aligned(columns: tuple[str, ...], rows: list[tuple[str, ...]], cut: bool) -> list[str]:
    cells = [[_cell(c) if cut else c for c in row] for row in [columns, *rows]]
    widths = [max(len(r[i]) if i < len(r) else 0 for r in cells) for i in range(len(columns))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in cells]


def _facts(part: Facts) -> list[str]:
    head = [f"*{part.title}*"] if part.title else []
    return head + [f"{label}: {value}" for label, value in part.items]


def _table_rows(part: Table) -> tuple[str, list[Row]]:
    """Each row as one code line; `state` None marks a problem (shown first)."""
    flagged = part.attention or (False,) * len(part.rows)
    order = sorted(range(len(part.rows)), key=lambda i: not flagged[i])
    rows = [part.rows[i] for i in order]
    lines = _aligned(part.columns, rows, cut=True)
    whole = _aligned(part.columns, rows, cut=False)
    head = lines[0]
    return head, [
        Row((f"`{escape(line)}`",), whole[n + 1], None if flagged[order[n]] else OK)
        for n, line in enumerate(lines[1:])
    ]


def _text_lines(part: Part) -> list[str]:
    if isinstance(part, Facts):
        return _facts(part)
    if isinstance(part, Text):
        return [f"{TONE_ICON[part.tone]} {part.text}" if part.tone else part.text]
    return []


@render.register
def _report(view: Report) -> Message:
    head: list[dict[str, Any]] = [_header(f"{TONE_ICON[view.tone]} {view.title}")]
    tail: list[dict[str, Any]] = []
    tables = [p for p in view.parts if isinstance(p, Table)]
    if len(tables) > 1:
        raise ValueError("a report holds at most one table (the one that may go out as a file)")
    table = tables[0] if tables else None
    before = True
    for part in view.parts:
        if part is table:
            before = False
            continue
        lines = _text_lines(part)
        if lines:
            (head if before else tail).append(_section("\n".join(lines)))
    if view.footer:
        tail.append(_context(view.footer))
    tail += _actions(view.buttons)
    files: tuple = ()
    blocks = head + tail
    if table is not None:
        if table.title:
            head.append(_section(f"*{table.title}*"))
        if not table.rows:
            head.append(_section(f"_{table.empty}_"))
            blocks = head + tail
        else:
            table_head, rows = _table_rows(table)
            head.append(_section(f"`{escape(table_head)}`"))
            if table.note:
                tail.insert(0, _context(table.note))
            fitted = fit_rows(
                head,
                rows,
                tail,
                noun=table.noun,
                table_head=_aligned(table.columns, [], cut=False)[0],
                filename=view.filename,
                title=view.title,
            )
            blocks, files = fitted.blocks, fitted.files
    text = " · ".join([view.title, *(line for p in view.parts for line in _text_lines(p))])
    return Message(_clip(text), blocks, files)
