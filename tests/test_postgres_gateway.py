"""bot/gateways/postgres.py against the real test PostgreSQL, as the bot's role: what it reads
matches the server, it cannot write, one deadline per call, and no message holds the DSN."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from bot.gateways.postgres import Postgres, PostgresError, PostgresUnavailable
from sandbox.payflow_db import BOT_ROLE, PayflowDatabase

ODD_SCHEMA = 'Odd "Schema"; DROP'
ODD_VIEW = "we'ird view"


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


@pytest.fixture
def pg(postgres_server: PayflowDatabase) -> Postgres:
    return Postgres(postgres_server.bot_dsn, timeout=5)


@pytest.fixture
def odd_names(postgres_server: PayflowDatabase) -> Iterator[None]:
    """A materialized view whose schema and name would break SQL built by pasting names."""
    with postgres_server.connect_admin() as conn:
        conn.execute(f'CREATE SCHEMA "{ODD_SCHEMA.replace(chr(34), chr(34) * 2)}"')
        conn.execute(
            f'CREATE MATERIALIZED VIEW "{ODD_SCHEMA.replace(chr(34), chr(34) * 2)}"."{ODD_VIEW}" AS'
            " SELECT n, repeat('x', 200) AS pad FROM generate_series(1, 50000) AS n"
        )
    yield
    with postgres_server.connect_admin() as conn:
        conn.execute(f'DROP SCHEMA "{ODD_SCHEMA.replace(chr(34), chr(34) * 2)}" CASCADE')


def test_table_sizes_are_the_servers_largest_first(
    pg: Postgres, postgres_server: PayflowDatabase, odd_names: None
) -> None:
    found = run(pg.table_sizes(3))

    with postgres_server.connect_admin() as conn:
        expected = conn.execute(
            "SELECT n.nspname, c.relname, pg_total_relation_size(c.oid), pg_indexes_size(c.oid)"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            " AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 3 DESC, 1, 2"
        ).fetchall()
    assert found.database == "payflow"
    assert found.count == len(expected) == 4  # users, wallets, transactions, the view
    assert [(t.schema, t.name, t.total_bytes, t.index_bytes) for t in found.tables] == expected[:3]
    odd = next(t for t in found.tables if t.name == ODD_VIEW)
    assert (odd.schema, odd.kind) == (ODD_SCHEMA, "materialized view")
    assert odd.table_bytes > 50000 * 200 and odd.total_bytes >= odd.table_bytes
    assert found.tables[0].name == "transactions" or found.tables[1].name == "transactions"


def test_slow_statements_use_the_columns_the_view_has(pg: Postgres) -> None:
    found = run(pg.slow_statements(25))
    assert found.mean_column == "mean_exec_time"  # PostgreSQL 15, extension 1.10
    means = [s.mean_ms for s in found.statements]
    assert means == sorted(means, reverse=True) and found.tracked >= len(found.statements) >= 4
    assert all(s.total_ms >= s.mean_ms * s.calls * 0.999 for s in found.statements)


def test_reads_run_in_a_read_only_transaction(pg: Postgres) -> None:
    async def write(conn: Any) -> None:
        await conn.execute("CREATE TABLE public.written_by_the_bot (id int)")

    with pytest.raises(PostgresError, match=r"\(25006\): cannot execute CREATE TABLE in a read-only"):
        run(pg._read(write))


def test_a_table_locked_by_ddl_costs_one_deadline(
    postgres_server: PayflowDatabase,
) -> None:
    """pg_total_relation_size waits for a table an ALTER holds: the statement timeout ends it."""
    pg = Postgres(postgres_server.bot_dsn, timeout=1)
    with postgres_server.connect_admin(autocommit=False) as conn:
        conn.execute("LOCK TABLE wallets IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(PostgresUnavailable, match=r"1 s"):
            run(pg.table_sizes(10))
        conn.rollback()
    assert run(Postgres(postgres_server.bot_dsn, timeout=5).table_sizes(1)).count >= 3


@pytest.mark.parametrize(
    ("make_dsn", "expected"),
    [
        (
            lambda db: db.server.dsn(BOT_ROLE, "wrong-Pa55word-xyz"),
            "PostgreSQL is unreachable: connection failed: ",
        ),
        (
            lambda db: f"host=127.0.0.1 port={db.server.port} password=wrong-Pa55word-xyz user",
            "DATABASE_URL does not hold a PostgreSQL connection string",
        ),
    ],
    ids=["bad password", "not a DSN"],
)
def test_errors_never_hold_the_dsn_or_its_password(
    postgres_server: PayflowDatabase, make_dsn: Callable[[PayflowDatabase], str], expected: str
) -> None:
    dsn = make_dsn(postgres_server)
    with pytest.raises(PostgresError) as raised:
        run(Postgres(dsn, timeout=5).overview())
    message = str(raised.value)
    assert message.startswith(expected)
    assert "wrong-Pa55word-xyz" not in message and dsn not in message
    # psycopg's own exception (whose text may hold the DSN) is not chained into a traceback
    error = raised.value
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    assert "wrong-Pa55word-xyz" not in repr(Postgres(dsn, timeout=5))
