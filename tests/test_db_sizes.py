"""/payflow db sizes end to end: the served bot reads the real PostgreSQL's largest tables as
`payflow_bot`; bad input is refused before anything reaches the server."""

from __future__ import annotations

import re
from typing import Any

import pytest

from bot.config.catalog import Catalog
from bot.config.settings import Settings
from handlers.db import size_text
from sandbox.payflow_db import PayflowDatabase
from sandbox.slack_api import SlackApiStub
from tests.support.chat import Chat
from tests.support.pg_sessions import bot_statement_calls
from tests.test_db_commands import admin_one, body, bot_with, with_database


@pytest.fixture
def settings(settings: Settings, postgres_server: PayflowDatabase) -> Settings:
    return with_database(settings, postgres_server.bot_dsn)


def _largest(db: PayflowDatabase) -> list[tuple[str, int, int, int]]:
    with db.connect_admin() as conn:
        rows = conn.execute(
            "SELECT n.nspname || '.' || c.relname, pg_total_relation_size(c.oid), pg_relation_size(c.oid),"
            " pg_indexes_size(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            " AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 2 DESC, 1"
        ).fetchall()
    return [(name, total, data, index) for name, total, data, index in rows]


def test_db_sizes_lists_the_largest_tables_with_the_servers_sizes(
    chat: Chat, postgres_server: PayflowDatabase
) -> None:
    before = _largest(postgres_server)  # autovacuum may add a table's visibility map meanwhile
    answer = chat.run("db sizes", user="dave")  # a viewer may look
    after = _largest(postgres_server)

    [post] = answer.posts
    text = body(answer)
    assert post["text"] == "Largest tables · payflow"
    assert re.search(r"`table\s+total\s+table\s+indexes`", text)
    assert [name for name, *_ in after] == ["public.transactions", "public.users", "public.wallets"]
    lines = [x for x in text.splitlines() if x.startswith("`public.")]
    assert len(lines) == 3  # fewer than the default 10
    for line, *expected in zip(lines, before, after, strict=True):
        assert any(
            re.match(
                rf"`{re.escape(name)}\s+{re.escape(size_text(total))}\s+{re.escape(size_text(data))}"
                rf"\s+{re.escape(size_text(index))}`",
                line,
            )
            for name, total, data, index in expected
        ), line
    assert "all 3 of 3 tables" in text
    [entry] = chat.audit()
    assert (entry.action, entry.outcome, entry.detail) == ("db sizes", "ok", "3 of 3 tables")

    one = body(chat.run("db sizes 1"))
    assert "the 1 largest of 3 tables" in one
    assert [x.split()[0] for x in one.splitlines() if x.startswith("`public.")] == ["`public.transactions"]


def test_without_a_database_url_db_sizes_says_what_to_set(
    settings: Settings, catalog: Catalog, slack: SlackApiStub, k8s_view: Any
) -> None:
    with bot_with(with_database(settings, None), catalog, slack) as chat:
        answer = chat.run("db sizes")
    [reply] = answer.replies
    assert "PostgreSQL is not configured: set `DATABASE_URL`" in reply["text"]


BAD_INPUT = [
    ("db sizes 0", "N must be between 1 and 50, got 0."),
    ("db sizes 51", "N must be between 1 and 50, got 51."),
    ("db sizes all", "N must be a whole number, got `all`."),
    ("db sizes 5; DROP TABLE users", "Too many arguments: `DROP TABLE users` is not understood here."),
    ("db sizes users", "N must be a whole number, got `users`."),
]


@pytest.mark.parametrize(("text", "expected"), BAD_INPUT, ids=[t for t, _ in BAD_INPUT])
def test_bad_input_is_refused_before_anything_reaches_the_database(
    chat: Chat, postgres_server: PayflowDatabase, redis_server: Any, text: str, expected: str
) -> None:
    statements = bot_statement_calls(postgres_server)
    tables = admin_one(postgres_server, "SELECT count(*) FROM pg_class WHERE relkind = 'r'")

    answer = chat.run(text)

    assert expected in answer.ack_text
    assert answer.replies == [] and answer.posts == []
    assert bot_statement_calls(postgres_server) == statements
    assert admin_one(postgres_server, "SELECT count(*) FROM pg_class WHERE relkind = 'r'") == tables
    assert redis_server.client().dbsize() == 0
