"""The generic answer, `Report`, under hostile sizes and contents: whatever a command puts in it, the
message stays within Slack's limits (50 blocks, 3,000 characters a text, 40,000 in all, a header
of 150), nothing is cut silently (what the message does not show is counted or in the file),
outside text cannot break a table's code line or ping anyone, and no card number reaches Slack."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from bot.chat.blocks import Message, render
from bot.chat.notifier import post_with_files
from bot.domain.views import Facts, Report, Table, Text
from bot.gateways.slack import SlackGateway, make_client
from sandbox import demo
from sandbox.slack_api import SlackApiStub

COLS = ("service", "value")


def _rows(n: int) -> tuple[tuple[str, str], ...]:
    return tuple((f"svc-{i:05d}", f"v{i}") for i in range(n))


def _facts(n: int) -> Facts:
    return Facts(tuple((f"label{i:04d}", f"value{i:04d} " + "v" * 40) for i in range(n)))


HOSTILE = {
    "10,000 rows": Report("T", (Table(COLS, _rows(10_000)),)),
    "5,000-character cells": Report(
        "T", (Table(COLS, tuple((f"a{i}" + "a" * 5000, "b" * 5000) for i in range(30))),)
    ),
    "a row wider than a section": Report(
        "T", (Table(tuple(f"c{i}" for i in range(60)), (("w" * 60,) * 60,)),)
    ),
    "500 facts": Report("T", (_facts(500),)),
    "5,000 facts and 10,000 rows": Report("T", (_facts(5000), Table(COLS, _rows(10_000)))),
    "a 5,000-character paragraph": Report("T", (Text("word " * 1000 + "END"),)),
    "a 50,000-character paragraph": Report("T", (Text("word " * 10_000 + "END"),)),
    "60 paragraphs": Report("T", tuple(Text(f"paragraph{i} " + "p" * 100) for i in range(60))),
    "a 300-character title": Report("T" * 300, (Text("x"),)),
}


def _texts(blocks: list[dict[str, Any]]) -> list[str]:
    found = []
    for b in blocks:
        if isinstance(b.get("text"), dict):
            found.append(b["text"]["text"])
        found += [e["text"] for e in b.get("elements", ()) if isinstance(e, dict) and "text" in e]
    return [t if isinstance(t, str) else t["text"] for t in found]


def _within_limits(m: Message) -> None:
    texts = _texts(m.blocks)
    assert len(m.blocks) <= 50
    assert max(len(t) for t in texts) <= 3000
    assert sum(len(t) for t in texts) <= 40_000
    assert all(len(b["text"]["text"]) <= 150 for b in m.blocks if b["type"] == "header")
    assert len(m.text) <= 3000


def _everything(m: Message) -> str:
    return "\n".join(_texts(m.blocks)) + "\n" + "\n".join(f.content for f in m.files)


@pytest.mark.parametrize("name", HOSTILE)
def test_any_report_stays_within_slacks_limits_and_loses_nothing_silently(name: str) -> None:
    report = HOSTILE[name]
    m = render(report)
    _within_limits(m)
    seen = set(_everything(m).replace("`", " ").split())
    for part in report.parts:
        if isinstance(part, Facts):
            values = [v for _, v in part.items]
        elif isinstance(part, Table):
            values = [cell for row in part.rows for cell in row]
        else:
            values = [part.text]
        missing = [v for v in values if not seen.issuperset(v.split())]
        assert not missing, f"{len(missing)} values neither shown nor in a file, e.g. {missing[0][:80]}"


def test_a_cell_cut_in_the_message_is_whole_in_the_file() -> None:
    m = render(Report("T", (Table(COLS, (("api", "x" * 200),)),)))
    assert "…" in json.dumps(m.blocks, ensure_ascii=False) and "x" * 200 in _everything(m)


def test_outside_text_in_cells_cannot_break_the_code_line_or_ping() -> None:
    rows = (("a`b`c", "<!channel>"), ("<@U123>", "fish & chips"), ("two\nlines", "tab\there"))
    m = render(Report("T", (Table(COLS, rows),)))
    lines = [line for t in _texts(m.blocks) for line in t.split("\n") if line.startswith("`")]
    assert len(lines) == 1 + len(rows)  # the head and one line per row
    assert all(line.endswith("`") and line.count("`") == 2 for line in lines), lines
    sent = json.dumps(m.blocks)
    assert "<!channel>" not in sent and "<@U123>" not in sent and "&lt;!channel&gt;" in sent
    assert "fish &amp; chips" in sent


def test_wrong_shapes_are_refused_where_the_report_is_made() -> None:
    """A handler's mistake fails in the handler (answered and audited as an internal error), not
    in the renderer after the audit trail already says the command succeeded."""
    with pytest.raises(ValueError, match="attention"):
        Table(COLS, _rows(2), attention=(True,))
    with pytest.raises(ValueError, match="attention"):
        Table(COLS, _rows(1), attention=(True, False))
    with pytest.raises(ValueError, match="cells"):
        Table(COLS, (("a", "b", "c"),))
    with pytest.raises(ValueError, match="one table"):
        Report("T", (Table(COLS, _rows(1)), Table(COLS, _rows(1))))


def test_an_empty_table_says_so() -> None:
    m = render(Report("T", (Table(COLS, (), empty="no queues"),)))
    assert "_no queues_" in json.dumps(m.blocks) and not m.files


CARD = "4111111111111111"


@pytest.mark.parametrize("rows", [3, 3000], ids=["fits", "as a file"])
def test_no_card_number_in_a_report_reaches_slack(rows: int) -> None:
    """Cards glued to text, and one a cell's cut would split (the gateway could no longer see it)."""
    cells = ((f"card{CARD}", f"{CARD}x"), ("x" * 50 + CARD, "ok"))
    table = Table(COLS, cells + _rows(rows))
    report = Report(f"T {CARD}", (Facts((("card", CARD),)), table, Text(f"see{CARD}")))
    message = render(report)
    assert message.files or rows == 3  # the long table goes out as a file
    with SlackApiStub(bot_token="xoxb-t") as stub:
        gateway = SlackGateway(make_client("xoxb-t", stub.api_url))
        asyncio.run(post_with_files(gateway, demo.OPS_CHANNEL_ID, message))
        sent = json.dumps([c.params for c in stub.calls]) + "".join(
            data.decode() for data in stub.uploads.values()
        )
        uploads = len(stub.uploads)
    assert uploads == len(message.files)
    assert "4111111" not in sent and "[REDACTED card]" in sent
