"""The private PostgreSQL and the bot's least-privilege role, as deploy/sql/payflow-bot.sql
installs it: what the bot can read, what it cannot touch, and the one write it may make."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from sandbox.payflow_db import (
    BOT_ROLE,
    BOT_SQL,
    SLOW_STATEMENTS,
    PayflowDatabase,
    install_bot_role,
    user_email,
)

LOCK_COLUMNS = "SELECT email, locked_until, failed_attempts FROM users ORDER BY email"


def lock_state(db: PayflowDatabase) -> list[tuple[Any, ...]]:
    with db.connect_admin() as conn:
        return conn.execute(LOCK_COLUMNS).fetchall()


def unlock(db: PayflowDatabase, email: str | None) -> int:
    with db.connect_bot() as conn:
        return conn.execute("SELECT payflow_bot.unlock_user(%s)", (email,)).fetchone()[0]


@pytest.fixture
def two_locked_users(postgres_server: PayflowDatabase) -> Iterator[tuple[str, str]]:
    """Two users of the test's own, locked for an hour; removed afterwards."""
    emails = ("unlock-a@test.example", "unlock-b@test.example")
    with postgres_server.connect_admin() as conn:
        for email in emails:
            conn.execute(
                "INSERT INTO users (email, password_hash, full_name, failed_attempts, locked_until)"
                " VALUES (%s, 'x', 'Test', 5, now() + interval '1 hour')",
                (email,),
            )
    yield emails
    with postgres_server.connect_admin() as conn:
        conn.execute("DELETE FROM users WHERE email = ANY(%s)", (list(emails),))


def test_server_tracks_the_slow_statements(postgres_server: PayflowDatabase) -> None:
    with postgres_server.connect_bot() as conn:
        assert conn.execute("SHOW pg_stat_statements.track").fetchone() == ("all",)
        rows = conn.execute(
            "SELECT query, calls, mean_exec_time FROM pg_stat_statements"
            " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " ORDER BY mean_exec_time DESC"
        ).fetchall()
    by_query = {query: (calls, mean) for query, calls, mean in rows}
    sleep_calls, sleep_mean = by_query["SELECT pg_sleep($1)"]
    assert sleep_calls == 2 and sleep_mean >= 200.0  # pg_sleep(0.2) cannot be quicker
    scans = [q for q in by_query if q.startswith("SELECT status, currency, count(*), sum(amount)")]
    assert len(scans) == 1 and by_query[scans[0]][0] == 2 and by_query[scans[0]][1] > 0
    # The bot reads other roles' statement text (pg_read_all_stats through pg_monitor).
    assert "<insufficient privilege>" not in by_query
    assert len([q for q in by_query if "transactions" in q]) >= len(SLOW_STATEMENTS) - 1


def test_bot_reads_sizes_activity_and_lock_columns(postgres_server: PayflowDatabase) -> None:
    seeded = postgres_server.seeded
    assert seeded is not None
    with postgres_server.connect_bot() as conn:
        sizes = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " ORDER BY pg_total_relation_size(quote_ident(schemaname) || '.' || quote_ident(tablename)) DESC"
        ).fetchall()
        assert sizes[0] == ("transactions",)
        with postgres_server.connect_admin() as other:
            other.execute("SELECT 'admin is here'")
            seen = conn.execute(
                "SELECT usename, query FROM pg_stat_activity WHERE pid = %s", (other.info.backend_pid,)
            ).fetchone()
        assert seen == ("payflow", "SELECT 'admin is here'")
        locked = conn.execute(
            "SELECT email, failed_attempts FROM users WHERE locked_until > now() ORDER BY locked_until"
        ).fetchall()
    assert locked == [(email, 5) for email in seeded.locked_emails]


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT password_hash FROM users LIMIT 1",
        "SELECT * FROM users LIMIT 1",
        "SELECT count(*) FROM wallets",
        "SELECT amount FROM transactions LIMIT 1",
        "UPDATE users SET locked_until = NULL, failed_attempts = 0 WHERE email = 'user1@payflow.example'",
        "UPDATE users SET password_hash = 'x' WHERE email = 'user1@payflow.example'",
        "DELETE FROM users WHERE email = 'user1@payflow.example'",
        "INSERT INTO users (email, password_hash, full_name) VALUES ('bot@x', 'x', 'x')",
        "CREATE FUNCTION payflow_bot.more() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "ALTER FUNCTION payflow_bot.unlock_user(text) SECURITY INVOKER",
    ],
)
def test_bot_role_is_refused_everything_else(postgres_server: PayflowDatabase, statement: str) -> None:
    before = lock_state(postgres_server)
    with postgres_server.connect_bot() as conn, pytest.raises(errors.InsufficientPrivilege) as refused:
        conn.execute(statement)
    assert "permission denied" in str(refused.value) or "must be owner" in str(refused.value)
    assert lock_state(postgres_server) == before


def test_unlock_changes_exactly_the_one_locked_user(
    postgres_server: PayflowDatabase, two_locked_users: tuple[str, str]
) -> None:
    target, bystander = two_locked_users
    before = {row[0]: row for row in lock_state(postgres_server)}
    assert unlock(postgres_server, target) == 1
    after = {row[0]: row for row in lock_state(postgres_server)}
    assert after[target][1:] == (None, 0)
    del before[target], after[target]
    assert after == before  # the other locked user and every seeded user are untouched
    assert after[bystander][1] is not None


@pytest.mark.parametrize(
    ("email", "error", "message"),
    [
        (user_email(500), errors.ObjectNotInPrerequisiteState, "this user is not locked"),
        (user_email(8), errors.ObjectNotInPrerequisiteState, "this user is not locked"),  # lock expired
        ("nobody@payflow.example", errors.NoDataFound, "no user has this email"),
        ("USER1@PAYFLOW.EXAMPLE", errors.NoDataFound, "no user has this email"),
        ("", errors.InvalidParameterValue, "must be 1 to 320 characters"),
        (None, errors.InvalidParameterValue, "must be 1 to 320 characters"),
        ("a" * 321, errors.InvalidParameterValue, "must be 1 to 320 characters"),
    ],
)
def test_unlock_refuses_and_changes_nothing(
    postgres_server: PayflowDatabase, email: str | None, error: type[Exception], message: str
) -> None:
    assert postgres_server.seeded is not None and user_email(8) in postgres_server.seeded.expired_emails
    before = lock_state(postgres_server)
    with pytest.raises(error, match=message):
        unlock(postgres_server, email)
    assert lock_state(postgres_server) == before


def test_unlock_refuses_when_more_than_one_row_would_change(postgres_server: PayflowDatabase) -> None:
    """Emails are unique in PayFlow's schema; if a migration ever drops that, the function must
    still not unlock two accounts at once. Everything here is rolled back."""
    with postgres_server.connect_admin(autocommit=False) as conn:
        conn.execute("ALTER TABLE users DROP CONSTRAINT users_email_key")
        conn.execute(
            "INSERT INTO users (email, password_hash, full_name, failed_attempts, locked_until)"
            " SELECT 'twin@test.example', 'x', 'Twin', 5, now() + interval '1 hour'"
            "   FROM generate_series(1, 2)"
        )
        conn.execute(f"SET ROLE {BOT_ROLE}")
        # conn.transaction() is a savepoint here: the failed call alone is undone.
        too_many = pytest.raises(errors.TooManyRows, match="2 users matched one email; nothing was changed")
        with too_many, conn.transaction():
            conn.execute("SELECT payflow_bot.unlock_user('twin@test.example')")
        conn.execute("RESET ROLE")
        still = conn.execute(
            "SELECT count(*) FROM users WHERE email = 'twin@test.example' AND locked_until > now()"
            " AND failed_attempts = 5"
        ).fetchone()
        assert still == (2,)
        conn.rollback()
    with postgres_server.connect_admin() as conn:
        assert conn.execute("SELECT count(*) FROM users WHERE email = 'twin@test.example'").fetchone() == (0,)


def test_unlock_function_is_pinned_definer_and_not_public(postgres_server: PayflowDatabase) -> None:
    with postgres_server.connect_admin() as conn:
        row = conn.execute(
            "SELECT p.prosecdef, p.proconfig, pg_get_userbyid(p.proowner), n.nspname,"
            "       pg_get_userbyid(n.nspowner)"
            "  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE p.oid = 'payflow_bot.unlock_user(text)'::regprocedure"
        ).fetchone()
        grantees = conn.execute(
            "SELECT coalesce(pg_get_userbyid(a.grantee), 'PUBLIC') FROM pg_proc p,"
            " aclexplode(p.proacl) a WHERE p.oid = 'payflow_bot.unlock_user(text)'::regprocedure"
            " AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner"
        ).fetchall()
        definer = conn.execute(
            "SELECT rolcanlogin, rolsuper FROM pg_roles WHERE rolname = 'payflow_bot_definer'"
        ).fetchone()
        bot = conn.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = %s", (BOT_ROLE,)
        )
        assert bot.fetchone() == (False, False, False)
    assert row == (
        True,
        ["search_path=pg_catalog, pg_temp"],
        "payflow_bot_definer",
        "payflow_bot",
        "payflow_bot_definer",
    )
    assert grantees == [(BOT_ROLE,)]
    assert definer == (False, False)


def test_install_file_is_rerunnable_and_keeps_the_same_privileges(postgres_server: PayflowDatabase) -> None:
    assert BOT_SQL.name == "payflow-bot.sql" and BOT_SQL.parent.name == "sql"
    with postgres_server.connect_admin() as conn:
        install_bot_role(conn, postgres_server.bot_password)
    with postgres_server.connect_bot() as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SELECT password_hash FROM users LIMIT 1")
    with postgres_server.connect_bot() as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() is not None


def test_bot_login_needs_its_password(postgres_server: PayflowDatabase) -> None:
    wrong = postgres_server.server.dsn(BOT_ROLE, "not-the-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        postgres_server.server.connect(wrong)
