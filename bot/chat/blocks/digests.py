"""The weekly and monthly reviews, and the lines the daily digest shares with them (business
figures, the lines other commands add). Same rule as every long view: verdict and platform lines
always kept, problem services first, the full table as a file when it does not fit."""

from __future__ import annotations

from typing import Any

from bot.base.mrkdwn import escape
from bot.base.redact import clip
from bot.chat.blocks.kit import (
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

VERDICT_ICON = {"ok": "✅", "warn": "⚠️", "bad": "🔴", "unknown": "❔", "info": "▫️"}
VERDICT_WORDS = {
    "ok": "All good",
    "warn": "Watch",
    "bad": "Needs attention",
    "unknown": "Not known to be healthy",
}


def compact(f: mv.Figure) -> str:
    mark = "" if f.verdict in ("ok", "info") else f" {VERDICT_ICON[f.verdict]}"
    return f"{f.label} {escape(f.value)}{mark}"


def business_section(figures: tuple[mv.Figure, ...], what: str) -> list[dict[str, Any]]:
    """ "*Business* (all PayFlow, the last day) transactions 1,234 (+3.1 % on the day before) · …"."""
    if not figures:
        return []
    return [_section(clip(f"*Business* ({what}) " + " · ".join(compact(f) for f in figures), SECTION_LIMIT))]


def line_sections(figures: tuple[mv.Figure, ...]) -> list[dict[str, Any]]:
    """Platform lines ("*Changes* 3 deployed…"), packed into as few sections as fit."""
    lines = [f"{VERDICT_ICON[f.verdict]} *{escape(f.label)}* {escape(f.value)}" for f in figures]
    return _sections(lines) if lines else []


def _service(s: mv.PeriodService) -> str:
    return f"{VERDICT_ICON[s.verdict]} *{s.name}* · " + " · ".join(compact(f) for f in s.figures)


def _table(s: mv.PeriodService) -> str:
    return "\t".join([s.name, s.verdict, *(f.value for f in s.figures)])


@render.register
def _period(view: mv.PeriodDigest) -> Message:
    verdict = view.verdict
    troubled = [s.name for s in view.services if s.verdict != "ok" and s.verdict != "info"]
    flagged = [f.label for f in view.summary if f.verdict in ("bad", "unknown", "warn")]
    parts = []
    if troubled:
        more = f" and {len(troubled) - 5} more" if len(troubled) > 5 else ""
        parts.append(f"{len(troubled)} of {len(view.services)} service(s): {', '.join(troubled[:5])}{more}")
    if flagged:
        parts.append(", ".join(flagged))
    headline = f"{VERDICT_ICON[verdict]} *{VERDICT_WORDS[verdict]}*" + (
        f" — {'; '.join(parts)}" if parts else ""
    )
    head = [_header(view.title), _section(clip(headline, SECTION_LIMIT)), *line_sections(view.summary)]
    if view.late:
        head.append(_context(f"⏰ {escape(view.late)}"))
    tail: list[dict[str, Any]] = []
    if view.unavailable:
        tail += _sections([f"❔ unavailable — {escape(u)}" for u in view.unavailable[:10]])
    what = "this week against last week" if view.kind == "weekly" else "the last 30 days against the SLO"
    tail.append(_context(clip(f"figures over {what}; " + "; ".join(escape(n) for n in view.notes), 2000)))
    labels = [f.label for f in view.services[0].figures] if view.services else []
    rows = [
        Row((_service(s),), _table(s), None if s.verdict not in ("ok", "info") else "all good")
        for s in view.services
    ]
    fitted = fit_rows(
        head,
        rows,
        tail,
        noun="services",
        table_head="\t".join(["service", "verdict", *labels]),
        filename=f"payflow-{view.kind}.tsv",
        title=f"{view.title}: all {len(rows)} services",
    )
    text = f"{view.title}: {VERDICT_WORDS[verdict]}" + (f" — {'; '.join(parts)}" if parts else "")
    if view.late:
        text += f" ({view.late})"
    return Message(_clip(text), fitted.blocks, fitted.files)
