"""/payflow db, db slow, db activity end to end: signed requests to the served bot, which reads a
real PostgreSQL (seeded PayFlow schema, pg_stat_statements) as its least-privilege role
`payflow_bot`; other sessions are real connections holding locks and running queries."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from bot.config.catalog import Catalog
from bot.config.settings import Settings
from bot.shell.runtime import build_runtime
from handlers.db import QUERY_IN_FACTS
from sandbox.payflow_db import BOT_ROLE, SLOW_STATEMENTS, PayflowDatabase
from sandbox.slack_api import SlackApiStub
from sandbox.slack_requests import SlackRequests
from tests.conftest import SIGNING_SECRET
from tests.support.blackhole import BlackHole
from tests.support.bot_server import BotServer
from tests.support.chat import Answer, Chat
from tests.support.pg_sessions import bot_statement_calls, row_lock, running


@pytest.fixture
def settings(settings: Settings, postgres_server: PayflowDatabase) -> Settings:
    return with_database(settings, postgres_server.bot_dsn)


def with_database(settings: Settings, dsn: str | None) -> Settings:
    env = {k: v for k, v in settings.env.items() if k != "DATABASE_URL"}
    return replace(settings, env={**env, "DATABASE_URL": dsn} if dsn else env)


@contextlib.contextmanager
def bot_with(settings: Settings, catalog: Catalog, slack: SlackApiStub) -> Iterator[Chat]:
    """A second bot, for a test that needs other settings than the module's."""
    server = BotServer(build_runtime(settings, catalog)).start()
    try:
        yield Chat(server, slack, SlackRequests(SIGNING_SECRET, response_url=slack.response_url("cmd")))
    finally:
        server.stop()


def body(answer: Answer) -> str:
    """The mrkdwn of every block posted or replied, one block per line."""
    lines = []
    for message in [*answer.posts, *answer.replies]:
        for block in message.get("blocks", []):
            if isinstance(block.get("text"), dict):
                lines.append(block["text"]["text"])
            lines += [e.get("text", "") for e in block.get("elements", []) if isinstance(e, dict)]
    return "\n".join(lines)


def admin_one(db: PayflowDatabase, query: str, *params: Any) -> Any:
    with db.connect_admin() as conn:
        row = conn.execute(query, params or None).fetchone()
    assert row is not None
    return row[0]


def test_db_overview_figures_are_the_servers(chat: Chat, postgres_server: PayflowDatabase) -> None:
    statements = bot_statement_calls(postgres_server)
    answer = chat.run("db", user="dave")  # a viewer may look

    [post] = answer.posts
    text = body(answer)
    version = admin_one(postgres_server, "SHOW server_version")
    max_connections = admin_one(postgres_server, "SHOW max_connections")
    assert post["text"].startswith("PostgreSQL · payflow")
    assert f"Server: PostgreSQL {version}" in text
    assert re.search(rf"Connections: \*\d+\* of {max_connections} \(active \d+", text)
    assert re.search(r"Round trip: \d+\.\d ms \(SELECT 1\)", text)
    assert "Waiting on a lock: no session" in text
    assert "Longest-running query: no other query is running" in text
    assert re.search(r"Database size: [\d.,]+ MB", text)
    assert "Replication: no replicas" in text
    assert bot_statement_calls(postgres_server) > statements  # what the bad-input test counts
    [entry] = chat.audit()
    assert (entry.action, entry.outcome) == ("db", "ok")
    assert f"of {max_connections} connections, 0 waiting" in entry.detail


def test_a_long_running_query_is_shown_by_db_and_db_activity(
    chat: Chat, postgres_server: PayflowDatabase
) -> None:
    with running(postgres_server, "SELECT pg_sleep(30)", "db-test-sleeper") as pid:
        overview = body(chat.run("db"))
        activity = chat.run("db activity")

    assert "Longest-running query: " in overview
    line = next(x for x in overview.splitlines() if x.startswith("Longest-running query"))
    assert f"pid {pid} · active · waits on Timeout/PgSleep · app db-test-sleeper" in line
    assert "Its statement: `SELECT pg_sleep(30)`" in overview
    # the session's own transaction is the oldest one open
    assert "Oldest transaction: " in overview and f"pid {pid}" in overview

    assert activity.posts == []  # other sessions' statements go to the asker only
    [reply] = activity.replies
    assert reply["response_type"] == "ephemeral"
    text = body(activity)
    assert re.search(r"`db-test-sleeper\s+active\s+Timeout/PgSleep\s+1\s", text)
    assert (
        f"pid {pid} · active · waits on Timeout/PgSleep · app db-test-sleeper · `SELECT pg_sleep(30)`" in text
    )
    assert "No session waits on another session's lock." in text


def test_a_blocked_session_and_its_blocker_appear(chat: Chat, postgres_server: PayflowDatabase) -> None:
    with row_lock(postgres_server, "db-test-holder", "db-test-waiter") as lock:
        overview = body(chat.run("db"))
        text = body(chat.run("db activity"))

    assert "Waiting on a lock: ⚠️ *1* session · `/payflow db activity` shows who blocks them" in overview
    assert "*Blocked and blocking* (2 sessions)" in text
    blocking = next(x for x in text.splitlines() if x.startswith("⛔ blocking"))
    assert f"pid {lock.holder} · idle in transaction" in blocking and "app db-test-holder" in blocking
    blocked = next(x for x in text.splitlines() if x.startswith("🔴 blocked by"))
    assert blocked.startswith(f"🔴 blocked by pid {lock.holder} · ")
    assert f"pid {lock.waiter} · active · waits on Lock/transactionid · app db-test-waiter" in blocked
    assert "`SELECT id FROM users WHERE id = 1 FOR UPDATE`" in blocked
    rows = {x.split()[0]: x for x in text.splitlines() if x.startswith("`db-test-")}
    assert re.match(r"`db-test-waiter\s+active\s+Lock/transactionid\s+1\s", rows["`db-test-waiter"])
    assert re.match(
        r"`db-test-holder\s+idle in transaction\s+Client/ClientRead\s+1\s", rows["`db-test-holder"]
    )


def _expected_slowest(db: PayflowDatabase, limit: int) -> list[str]:
    with db.connect_admin() as conn:
        rows = conn.execute(
            "SELECT query FROM pg_stat_statements"
            " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND userid <> %s::regrole ORDER BY mean_exec_time DESC LIMIT %s",
            (BOT_ROLE, limit),
        ).fetchall()
    return [" ".join(r[0].split()) for r in rows]


SEEDED = ("SELECT pg_sleep(", "SELECT status, currency", "SELECT date_trunc(", "SELECT w.user_id, sum")


def _seeded(normalized: str) -> bool:
    """One of SLOW_STATEMENTS, as pg_stat_statements writes it (constants as $1, $2 …)."""
    assert len(SEEDED) == len(SLOW_STATEMENTS)
    return normalized.startswith(SEEDED)


def test_db_slow_lists_the_slow_statements_slowest_mean_first(
    chat: Chat, postgres_server: PayflowDatabase
) -> None:
    answer = chat.run("db slow")

    [post] = answer.posts
    text = body(answer)
    assert post["text"] == "Slowest statements · payflow"
    assert re.search(r"`mean ms\s+total ms\s+calls\s+rows\s+statement`", text)
    assert "by mean time (mean_exec_time)" in text
    # the seeded statements (0.2 s of sleep, then scans of 20,000 rows: means far apart) in the
    # server's order; statements of a millisecond or less may swap places between two reads
    expected = [q for q in _expected_slowest(postgres_server, 10) if _seeded(q)]
    assert len(expected) == len(SLOW_STATEMENTS) and expected[0] == "SELECT pg_sleep($1)"
    positions = [text.find(q[:40].replace(">", "&gt;")) for q in expected]
    assert -1 not in positions and positions == sorted(positions)
    sleep_row = next(x for x in text.splitlines() if "SELECT pg_sleep($1)" in x)
    assert re.match(r"`2\d\d\.?\d*\s+[\d,.]+\s+\d+\s+\d+\s+SELECT pg_sleep\(\$1\)`", sleep_row)
    assert "Slowest statements" not in body(chat.run("db slow", user="dave"))  # operators only

    two = body(chat.run("db slow 2"))
    assert "the 2 slowest of" in two
    assert (
        len([x for x in two.splitlines() if re.match(r"`[\d,.]+\s+[\d,.]+\s+[\d,]+\s+[\d,]+\s+\S", x)]) == 2
    )


def test_db_slow_without_the_extension_says_how_to_enable_it(
    postgres_server: PayflowDatabase, settings: Settings, catalog: Catalog, slack: SlackApiStub, k8s_view: Any
) -> None:
    with postgres_server.connect_admin() as conn:
        conn.execute("DROP DATABASE IF EXISTS payflow_noext")
        conn.execute("CREATE DATABASE payflow_noext")
    dsn = postgres_server.server.dsn(BOT_ROLE, postgres_server.bot_password, database="payflow_noext")
    try:
        with bot_with(with_database(settings, dsn), catalog, slack) as chat:
            answer = chat.run("db slow")
            assert "PostgreSQL · payflow_noext" in body(chat.run("db"))  # the rest works without it
    finally:
        with postgres_server.connect_admin() as conn:
            conn.execute("DROP DATABASE payflow_noext WITH (FORCE)")

    assert answer.posts == []
    [reply] = answer.replies
    assert "pg_stat_statements is not installed in database `payflow_noext`" in reply["text"]
    assert "`shared_preload_libraries`" in reply["text"]
    assert "run `CREATE EXTENSION pg_stat_statements;`" in reply["text"]
    assert "deploy/sql/payflow-bot.sql" in reply["text"]


def test_a_card_number_in_a_statement_is_redacted_before_it_is_cut(
    chat: Chat, postgres_server: PayflowDatabase
) -> None:
    # The card starts 8 characters before the cut: cut first, "4111 11…" would be left, too short
    # for any rule to recognise. The <!channel> must not ping anyone.
    head = "SELECT pg_sleep(30) AS waited, '<!channel> order note: "
    pad = "x" * (QUERY_IN_FACTS - 8 - len(head))
    query = f"{head}{pad}4111 1111 1111 1111 paid'"
    with running(postgres_server, query, "db-test-card"):
        overview = chat.run("db")
        activity = chat.run("db activity")

    for answer in (overview, activity):
        seen = answer.all_text()
        assert "4111" not in seen and "1111 1111" not in seen
        assert "<!channel>" not in seen and "&lt;!channel&gt; order note" in seen
    statement = next(x for x in body(overview).splitlines() if x.startswith("Its statement:"))
    assert statement.endswith("x[REDACT…`")  # the marker was cut, not the card


def test_a_database_that_never_answers_costs_one_deadline(
    postgres_server: PayflowDatabase, settings: Settings, catalog: Catalog, slack: SlackApiStub, k8s_view: Any
) -> None:
    quick = catalog.model_copy(update={"data": catalog.data.model_copy(update={"timeout_seconds": 1.0})})
    password = postgres_server.bot_password
    with BlackHole() as hole:
        dsn = f"postgresql://{BOT_ROLE}:{password}@127.0.0.1:{hole.port}/payflow"
        with bot_with(with_database(settings, dsn), quick, slack) as chat:
            answer = chat.run("db")
            entries = chat.audit()
        connections = hole.connections

    assert answer.posts == []
    [reply] = answer.replies
    assert "PostgreSQL did not answer within 1 s. Nothing was read." in reply["text"]
    assert password not in answer.all_text() and str(hole.port) not in answer.all_text()
    assert connections == 1  # no hidden retry
    [entry] = entries
    assert (entry.action, entry.outcome) == ("db", "failed")
    assert password not in entry.detail


def test_without_a_database_url_each_command_says_what_to_set(
    settings: Settings, catalog: Catalog, slack: SlackApiStub, k8s_view: Any
) -> None:
    with bot_with(with_database(settings, None), catalog, slack) as chat:
        answers = [chat.run(text) for text in ("db", "db slow", "db activity")]
    for answer in answers:
        assert answer.posts == []
        [reply] = answer.replies
        assert "PostgreSQL is not configured: set `DATABASE_URL`" in reply["text"]
        assert "deploy/sql/payflow-bot.sql" in reply["text"] and "README → *PostgreSQL*" in reply["text"]


BAD_INPUT = [
    ("db slow 0", "N must be between 1 and 25, got 0."),
    ("db slow 26", "N must be between 1 and 25, got 26."),
    ("db slow ten", "N must be a whole number, got `ten`."),
    ("db slow -3", "N must be a whole number, got `-3`."),
    ("db slow 5; DROP TABLE users", "Too many arguments: `DROP TABLE users` is not understood here."),
    ("db slow 5;", "N must be a whole number, got `5;`."),
    ("db slow 5 10", "Too many arguments: `10` is not understood here."),
    ("db activity now", "Too many arguments: `now` is not understood here."),
    ("db; SELECT pg_sleep(60)", "Unknown command `db;`."),
    ("db sloww", "No subcommand `db sloww`. Did you mean `db slow`?"),
    ("db 'OR 1=1--", "No subcommand `db 'OR`."),
]


@pytest.mark.parametrize(("text", "expected"), BAD_INPUT, ids=[t for t, _ in BAD_INPUT])
def test_bad_input_is_refused_before_anything_reaches_the_database(
    chat: Chat, postgres_server: PayflowDatabase, redis_server: Any, text: str, expected: str
) -> None:
    statements = bot_statement_calls(postgres_server)
    users = admin_one(postgres_server, "SELECT count(*) FROM users")

    answer = chat.run(text)

    assert expected in answer.ack_text
    assert answer.replies == [] and answer.posts == []
    assert bot_statement_calls(postgres_server) == statements  # not one statement ran
    assert admin_one(postgres_server, "SELECT count(*) FROM users") == users
    assert redis_server.client().dbsize() == 0  # not even an audit entry: nothing was attempted


# --- red team: the server's own cuts -------------------------------------------------------------
# PostgreSQL keeps only track_activity_query_size - 1 bytes of a statement (1,023 by default) and
# 63 bytes of an application_name. A card across either edge arrives with its last digits cut
# off: no longer a card to any rule (Luhn), but 12-15 digits of one. Whitespace collapsed for
# display brings a cut at byte 1,023 into the first characters shown.
CARD = "4111111111111111"


def _query_cut_inside_a_card(db: PayflowDatabase, keep: int) -> str:
    """A statement whose stored text ends after the card's first `keep` digits."""
    size = int(admin_one(db, "SELECT setting FROM pg_settings WHERE name = 'track_activity_query_size'"))
    head = "SELECT pg_sleep(30), '"
    return head + " " * (size - 1 - len(head) - keep) + CARD + "'"


@pytest.mark.parametrize("keep", [15, 13, 10])
def test_a_card_cut_by_the_servers_statement_limit_is_not_shown(
    chat: Chat, postgres_server: PayflowDatabase, keep: int
) -> None:
    query = _query_cut_inside_a_card(postgres_server, keep)
    with running(postgres_server, query, "db-test-cut-card"):
        overview = chat.run("db")
        activity = chat.run("db activity")

    for answer in (overview, activity):
        seen = answer.all_text()
        assert CARD[:keep] not in seen and "411111" not in seen
        assert "SELECT pg_sleep(30)" in seen  # the statement is still shown, without the digits


def test_a_card_cut_by_the_servers_application_name_limit_is_not_shown(
    chat: Chat, postgres_server: PayflowDatabase
) -> None:
    app = "pos-" + "x" * 45 + CARD  # 65 characters: PostgreSQL keeps 63, the card's first 14 digits
    with running(postgres_server, "SELECT pg_sleep(30)", app[:63]):
        activity = chat.run("db activity")
        overview = chat.run("db")

    for answer in (overview, activity):
        seen = answer.all_text()
        assert "41111111111111" not in seen and "411111" not in seen
        assert "pos-xxxx" in seen


def test_a_glued_card_in_a_statement_and_an_application_name_is_redacted(
    chat: Chat, postgres_server: PayflowDatabase
) -> None:
    query = f"SELECT pg_sleep(30), 'pan{CARD}x' AS note"
    with running(postgres_server, query, f"pos{CARD}x"):
        activity = chat.run("db activity")
    seen = activity.all_text()
    assert CARD not in seen and "411111" not in seen
    assert "pan[REDACTED card]x" in seen and "pos[REDACTED card]x" in seen


def test_many_session_groups_and_a_100_kb_statement_stay_within_slacks_limits(
    chat: Chat, postgres_server: PayflowDatabase
) -> None:
    # The sandbox server allows 40 connections: 33 sessions in 33 groups pass the 30-group bound
    # (200 sessions change only the counts: the bound is the query's LIMIT).
    big = "SELECT pg_sleep(30), '" + "y" * 100_000 + "'"
    conns = [postgres_server.connect_admin(application_name=f"db-test-many-{i}") for i in range(32)]
    try:
        with running(postgres_server, big, "db-test-big"):
            activity = chat.run("db activity")
    finally:
        for conn in conns:
            conn.close()

    [reply] = activity.replies
    assert reply["response_type"] == "ephemeral"
    text = body(activity)
    assert re.search(r"Client sessions: \*3\d\*", text)
    assert "the 30 largest of" in text  # the cut is said, not silent
    assert "y" * 200 not in activity.all_text()  # the 100 KB statement is shown cut
    [entry] = chat.audit()
    assert (entry.action, entry.outcome) == ("db activity", "ok")
