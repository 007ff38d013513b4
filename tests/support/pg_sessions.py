"""Other people's sessions on the test PostgreSQL: a query that keeps running, a row lock that
blocks another session. Each is undone on exit, so the shared database is left as found."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg

from sandbox.local import wait_until
from sandbox.payflow_db import BOT_ROLE, PayflowDatabase


def bot_statement_calls(db: PayflowDatabase) -> int:
    """Statements the bot's role has run, as pg_stat_statements counts them: unchanged when a
    command was refused before it reached the server."""
    with db.connect_admin() as conn:
        row = conn.execute(
            "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements WHERE userid = %s::regrole",
            (BOT_ROLE,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def _run_in_thread(db: PayflowDatabase, query: str, app: str) -> threading.Thread:
    def run() -> None:
        with (
            contextlib.suppress(psycopg.errors.QueryCanceled),
            db.connect_admin(application_name=app) as conn,
        ):
            conn.execute(query)

    thread = threading.Thread(target=run, name=app, daemon=True)
    thread.start()
    return thread


def _pid_of(db: PayflowDatabase, app: str, condition: str = "state = 'active'") -> int:
    def find() -> int | None:
        with db.connect_admin() as conn:
            row = conn.execute(
                f"SELECT pid FROM pg_stat_activity WHERE application_name = %s AND {condition}", (app,)
            ).fetchone()
        return int(row[0]) if row else None

    pid = wait_until(find, 10, f"session {app}", poll=0.05)
    assert pid is not None
    return pid


@contextlib.contextmanager
def running(db: PayflowDatabase, query: str, app: str) -> Iterator[int]:
    """`query` running in another session (application_name `app`) until the block ends; yields its pid."""
    thread = _run_in_thread(db, query, app)
    pid = _pid_of(db, app)
    try:
        yield pid
    finally:
        with db.connect_admin() as conn:
            conn.execute("SELECT pg_cancel_backend(%s)", (pid,))
        thread.join(10)


@dataclass(frozen=True)
class Blocked:
    holder: int  # pid holding the row lock, idle in transaction
    waiter: int  # pid waiting for it


@contextlib.contextmanager
def row_lock(db: PayflowDatabase, holder_app: str, waiter_app: str) -> Iterator[Blocked]:
    """One session holds users row 1 FOR UPDATE (and idles in its transaction); another waits
    for the same row. Nothing is written: both only lock."""
    query = "SELECT id FROM users WHERE id = 1 FOR UPDATE"
    holder = db.connect_admin(application_name=holder_app, autocommit=False)
    try:
        holder.execute(query)
        thread = _run_in_thread(db, query, waiter_app)
        waiter = _pid_of(db, waiter_app, "cardinality(pg_blocking_pids(pid)) > 0")
        holder_pid = holder.info.backend_pid
        try:
            yield Blocked(holder_pid, waiter)
        finally:
            holder.rollback()
            thread.join(10)
    finally:
        holder.close()
