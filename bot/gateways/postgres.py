"""PayFlow's PostgreSQL, read through the bot's least-privilege role (deploy/sql/payflow-bot.sql):
the only module that talks to it.

Every call is one connection, one read-only transaction and one deadline: `connect_timeout`,
`statement_timeout` (SET LOCAL, so it works behind a transaction-mode pooler) and an overall
asyncio deadline that the answer never overruns, even while psycopg is still cancelling a query
on a server that stopped answering. At most `max_connections` calls hold a connection at once
(the role itself is limited to 10). Queries are fixed text with parameters; the only names put
into SQL come from the server's own catalog (`sql.Identifier`), never from a user.

Errors are `PostgresUnavailable` (could not get an answer in time) or `PostgresError` (the server
refused), with a message fit to show: it never holds the connection string or its password.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from bot.base.pii import mask_emails
from bot.base.redact import redact

if TYPE_CHECKING:  # psycopg itself is imported by the first call (≈0.1 s): not at start-up
    import psycopg
    from psycopg import sql

    Conn = psycopg.AsyncConnection[tuple[Any, ...]]

T = TypeVar("T")

APPLICATION_NAME = "payflow-chatops"
MAX_QUERY_CHARS = 2000  # of a statement's text read from the server; shown far shorter
MAX_GROUPS = 30  # session groups in `activity`
MAX_INVOLVED = 30  # blocked and blocking sessions in `activity`
MAX_LONGEST = 5  # longest-running queries in `activity`
MAX_REPLICAS = 20
# PostgreSQL cuts an application_name to NAMEDATALEN - 1 = 63 bytes (a multi-byte character may
# leave it up to three bytes shorter): one this long may have been cut.
NAME_CUT_BYTES = 60


class PostgresError(Exception):
    """PostgreSQL refused; `str()` is fit to show a user (no DSN, no password)."""

    def __init__(self, message: str, *, sqlstate: str | None = None):
        super().__init__(message)
        self.sqlstate = sqlstate


class PostgresUnavailable(PostgresError):
    """No answer: unreachable, refused the login, or past the deadline. `uncertain`: a write was
    sent and its answer never came, so it may have happened."""

    def __init__(self, message: str, *, uncertain: bool = False):
        super().__init__(message)
        self.uncertain = uncertain


class StatementsMissing(PostgresError):
    """pg_stat_statements is not installed in this database (`installed` True: created but not preloaded)."""

    def __init__(self, database: str, *, installed: bool):
        where = "installed but not loaded (shared_preload_libraries)" if installed else "not installed"
        super().__init__(f"pg_stat_statements is {where} in database {database}")
        self.database = database
        self.installed = installed


# --- what the gateway returns --------------------------------------------------------------------


class NotLocked(PostgresError):
    """The unlock function found nothing to do: the user is not locked (any more), or unknown."""


@dataclass(frozen=True)
class UserLock:
    """One user's lock as the bot's role may read it (email, locked_until, failed_attempts)."""

    found: bool
    locked_until: datetime | None = None
    failed_attempts: int | None = None


@dataclass(frozen=True)
class LockedUser:
    email: str
    locked_until: datetime
    failed_attempts: int | None


@dataclass(frozen=True)
class LockedUsers:
    total: int
    users: tuple[LockedUser, ...]  # the locks that end soonest, at most the limit asked


@dataclass(frozen=True)
class Session:
    """One client session as pg_stat_activity shows it. `query` is the server's text, bounded
    but not yet redacted: whoever shows it redacts, then cuts."""

    pid: int
    age_seconds: float  # of its transaction, or of its query for `longest`
    state: str
    application: str
    wait: str  # "Lock/transactionid", or "" when not waiting
    query: str
    blocked_by: tuple[int, ...] = ()


@dataclass(frozen=True)
class Replica:
    name: str
    address: str
    state: str
    sync_state: str
    replay_lag_seconds: float | None  # None: nothing to replay (or the server does not know)
    behind_bytes: int | None  # WAL not yet replayed; None on a standby


@dataclass(frozen=True)
class Overview:
    database: str
    round_trip_ms: float  # SELECT 1, inside an open transaction: one network round trip
    version: str
    in_recovery: bool
    max_connections: int
    connections: tuple[tuple[str, int], ...]  # client sessions by state, most first (ours counted)
    waiting: int  # sessions waiting for another session's lock
    oldest_transaction: Session | None
    longest_query: Session | None
    size_bytes: int
    replicas: tuple[Replica, ...]

    @property
    def connected(self) -> int:
        return sum(n for _, n in self.connections)


@dataclass(frozen=True)
class Statement:
    query: str  # normalized by pg_stat_statements: constants are $1, $2, …
    calls: int
    rows: int
    mean_ms: float
    total_ms: float


@dataclass(frozen=True)
class SlowStatements:
    database: str
    statements: tuple[Statement, ...]  # slowest mean first
    tracked: int  # statements pg_stat_statements holds for this database (the bot's own left out)
    mean_column: str  # mean_exec_time (PostgreSQL 13+) or mean_time


@dataclass(frozen=True)
class TableSize:
    schema: str
    name: str
    kind: str  # table | partitioned table | materialized view
    total_bytes: int  # data + indexes + TOAST
    table_bytes: int
    index_bytes: int


@dataclass(frozen=True)
class TableSizes:
    database: str
    tables: tuple[TableSize, ...]  # largest first
    count: int  # tables, partitioned tables and materialized views outside the system schemas


@dataclass(frozen=True)
class SessionGroup:
    application: str
    state: str
    wait: str
    sessions: int
    oldest_seconds: float  # the oldest transaction (or session) in the group


@dataclass(frozen=True)
class Activity:
    database: str
    sessions: int  # client sessions, ours not counted
    groups: tuple[SessionGroup, ...]  # most sessions first, at most MAX_GROUPS
    group_count: int
    involved: tuple[Session, ...]  # blocking sessions first, then the blocked (blocked_by set)
    involved_count: int
    longest: tuple[Session, ...]  # active queries, longest-running first


_KINDS = {"r": "table", "p": "partitioned table", "m": "materialized view"}

_CLIENTS = "backend_type = 'client backend' AND pid <> pg_backend_pid()"
_SESSION_COLUMNS = """
    {a}pid,
    greatest(0, extract(epoch FROM now() - {start}))::float8,
    coalesce({a}state, ''),
    coalesce({a}application_name, ''),
    coalesce({a}wait_event_type || '/' || {a}wait_event, ''),
    left(coalesce({a}query, ''), %(max_query)s),
    length({a}query) > %(max_query)s OR octet_length({a}query) >= (
        SELECT setting::int - 4 FROM pg_settings WHERE name = 'track_activity_query_size')
"""

_SERVER = """
SELECT current_setting('server_version'), current_setting('max_connections')::int,
       pg_is_in_recovery(), current_database(), pg_database_size(current_database())
"""
_BY_STATE = """
SELECT coalesce(state, 'unknown'), count(*)::int FROM pg_stat_activity
 WHERE backend_type = 'client backend' GROUP BY 1 ORDER BY 2 DESC, 1
"""
_WAITING = "SELECT count(*)::int FROM pg_stat_activity WHERE cardinality(pg_blocking_pids(pid)) > 0"
_OLDEST_TRANSACTION = (
    f"SELECT {_SESSION_COLUMNS.format(a='', start='xact_start')} FROM pg_stat_activity"
    f" WHERE {_CLIENTS} AND xact_start IS NOT NULL ORDER BY xact_start LIMIT 1"
)
_LONGEST_QUERIES = (
    f"SELECT {_SESSION_COLUMNS.format(a='', start='query_start')} FROM pg_stat_activity"
    f" WHERE {_CLIENTS} AND state = 'active' AND query_start IS NOT NULL"
    " ORDER BY query_start LIMIT %(limit)s"
)
_REPLICAS = """
SELECT coalesce(application_name, ''), coalesce(host(client_addr), 'local socket'),
       coalesce(state, ''), coalesce(sync_state, ''), extract(epoch FROM replay_lag)::float8,
       CASE WHEN pg_is_in_recovery() THEN NULL
            ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint END
  FROM pg_stat_replication ORDER BY 1, 2 LIMIT %(limit)s
"""
_STATEMENTS_VIEW = """
SELECT n.nspname, c.oid IS NOT NULL,
       EXISTS (SELECT 1 FROM pg_attribute a
                WHERE a.attrelid = c.oid AND a.attname = 'mean_exec_time' AND NOT a.attisdropped)
  FROM pg_extension e
  JOIN pg_namespace n ON n.oid = e.extnamespace
  LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = 'pg_stat_statements'
 WHERE e.extname = 'pg_stat_statements'
"""
_STATEMENTS = """
SELECT left(query, %(max_query)s), calls, rows, {mean}, {total}, count(*) OVER ()
  FROM {view}
 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND userid <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
 ORDER BY {mean} DESC NULLS LAST, calls DESC
 LIMIT %(limit)s
"""
_SIZES = r"""
SELECT n.nspname, c.relname, c.relkind::text, pg_total_relation_size(c.oid),
       pg_relation_size(c.oid), pg_indexes_size(c.oid), count(*) OVER ()
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'm')
   AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%%'
 ORDER BY 4 DESC, 1, 2
 LIMIT %(limit)s
"""
_GROUPS = f"""
SELECT coalesce(application_name, ''), coalesce(state, ''),
       coalesce(wait_event_type || '/' || wait_event, ''), count(*)::int,
       max(greatest(0, extract(epoch FROM now() - coalesce(xact_start, backend_start))))::float8,
       count(*) OVER ()::int, (sum(count(*)) OVER ())::int
  FROM pg_stat_activity WHERE {_CLIENTS}
 GROUP BY 1, 2, 3 ORDER BY 4 DESC, 5 DESC, 1, 2, 3
 LIMIT %(limit)s
"""
_INVOLVED = f"""
WITH waiting AS (
    SELECT pid, pg_blocking_pids(pid) AS blockers FROM pg_stat_activity
     WHERE cardinality(pg_blocking_pids(pid)) > 0
), involved AS (
    SELECT pid FROM waiting UNION SELECT unnest(blockers) FROM waiting
)
SELECT {_SESSION_COLUMNS.format(a="a.", start="coalesce(a.xact_start, a.query_start, a.backend_start)")},
       coalesce(w.blockers, '{{}}'::int[]), count(*) OVER ()::int
  FROM involved i JOIN pg_stat_activity a ON a.pid = i.pid LEFT JOIN waiting w ON w.pid = a.pid
 ORDER BY w.pid IS NOT NULL, 2 DESC, 1
 LIMIT %(limit)s
"""


_CUT_DIGITS = re.compile(r"[0-9][0-9 \t.+_\-]*\Z")


def uncut(text: str, cut: bool) -> str:
    """Text the server cut may end inside a card number, whose first 12-18 digits no redaction
    rule can recognise once its last ones (and with them the Luhn check) are gone: the digits at
    the cut are dropped."""
    return _CUT_DIGITS.sub("…", text) if cut else text


def app_name(name: str) -> str:
    return uncut(name, len(name.encode()) >= NAME_CUT_BYTES)


def _session(row: tuple[Any, ...], blocked_by: tuple[int, ...] = ()) -> Session:
    pid, age, state, app, wait, query, cut = row[:7]
    return Session(
        int(pid), float(age or 0.0), state, app_name(app), wait, uncut(query, bool(cut)), blocked_by
    )


class Postgres:
    """PostgreSQL through one DSN. `setting` names where the DSN came from (for messages)."""

    def __init__(
        self, dsn: str, *, timeout: float, setting: str = "DATABASE_URL", max_connections: int = 4
    ) -> None:
        self._dsn = dsn
        self.timeout = timeout
        self.setting = setting
        self._slots = asyncio.Semaphore(max_connections)
        self._cleanups: set[asyncio.Task[Any]] = set()
        self._parsed: tuple[bool, tuple[str, ...]] | None = None  # by the first call: see _dsn_check

    def _dsn_check(self) -> tuple[bool, tuple[str, ...]]:
        """Whether the DSN is a connection string, and the secrets never to show (the DSN and its
        password). Worked out by the first call, not when the gateway is built: that would import
        psycopg in every process that builds the gateways, the web process included."""
        if self._parsed is None:
            import psycopg
            from psycopg.conninfo import conninfo_to_dict

            try:
                params = conninfo_to_dict(self._dsn)
            except psycopg.ProgrammingError:
                params = None
            password = (params or {}).get("password")
            secrets = tuple(s for s in (self._dsn, str(password) if password else "") if s)
            self._parsed = (params is not None, secrets)
        return self._parsed

    def __repr__(self) -> str:
        return f"<Postgres from {self.setting}>"

    # --- the four reads ---------------------------------------------------------------------------

    async def overview(self) -> Overview:
        async def read(conn: Conn) -> Overview:
            began = time.perf_counter()
            await conn.execute("SELECT 1")
            round_trip = (time.perf_counter() - began) * 1000
            version, max_conn, recovery, database, size = await _one(conn, _SERVER)
            by_state = await _all(conn, _BY_STATE)
            (waiting,) = await _one(conn, _WAITING)
            oldest = await _all(conn, _OLDEST_TRANSACTION, max_query=MAX_QUERY_CHARS)
            longest = await _all(conn, _LONGEST_QUERIES, max_query=MAX_QUERY_CHARS, limit=1)
            replicas = await _all(conn, _REPLICAS, limit=MAX_REPLICAS)
            return Overview(
                database=database,
                round_trip_ms=round_trip,
                version=version,
                in_recovery=bool(recovery),
                max_connections=max_conn,
                connections=tuple((state, int(n)) for state, n in by_state),
                waiting=waiting,
                oldest_transaction=_session(oldest[0]) if oldest else None,
                longest_query=_session(longest[0]) if longest else None,
                size_bytes=int(size),
                replicas=tuple(
                    Replica(app_name(name), addr, state, sync, lag, None if behind is None else int(behind))
                    for name, addr, state, sync, lag, behind in replicas
                ),
            )

        return await self._read(read)

    async def slow_statements(self, limit: int) -> SlowStatements:
        """pg_stat_statements' slowest mean first, in this database; the bot's own reads left out.
        Its columns are told apart by the view itself (mean_exec_time from PostgreSQL 13 on, and
        only once the extension is updated), not by the server's version."""

        async def read(conn: Conn) -> SlowStatements:
            from psycopg import errors, sql

            (database,) = await _one(conn, "SELECT current_database()")
            found = await _all(conn, _STATEMENTS_VIEW)
            if not found or not found[0][1]:
                raise StatementsMissing(database, installed=False)
            schema, _, modern = found[0]
            mean, total = ("mean_exec_time", "total_exec_time") if modern else ("mean_time", "total_time")
            query = sql.SQL(_STATEMENTS).format(
                mean=sql.Identifier(mean),
                total=sql.Identifier(total),
                view=sql.Identifier(schema, "pg_stat_statements"),
            )
            try:
                rows = await _all(conn, query, max_query=MAX_QUERY_CHARS, limit=limit)
            except errors.ObjectNotInPrerequisiteState:  # "must be loaded via shared_preload_libraries"
                raise StatementsMissing(database, installed=True) from None
            statements = tuple(
                Statement(text or "", int(calls), int(n), float(m or 0), float(t or 0))
                for text, calls, n, m, t, _ in rows
            )
            return SlowStatements(database, statements, int(rows[0][5]) if rows else 0, mean)

        return await self._read(read)

    async def table_sizes(self, limit: int) -> TableSizes:
        """The largest tables by total size, from pg_class (any schema, no names from the user)."""

        async def read(conn: Conn) -> TableSizes:
            (database,) = await _one(conn, "SELECT current_database()")
            rows = await _all(conn, _SIZES, limit=limit)
            tables = tuple(
                TableSize(schema, name, _KINDS.get(kind, kind), int(total), int(data), int(index))
                for schema, name, kind, total, data, index, _ in rows
            )
            return TableSizes(database, tables, int(rows[0][6]) if rows else 0)

        return await self._read(read)

    async def activity(self) -> Activity:
        """Sessions grouped by application, state and wait; who blocks whom (pg_blocking_pids)."""

        async def read(conn: Conn) -> Activity:
            (database,) = await _one(conn, "SELECT current_database()")
            groups = await _all(conn, _GROUPS, limit=MAX_GROUPS)
            involved = await _all(conn, _INVOLVED, max_query=MAX_QUERY_CHARS, limit=MAX_INVOLVED)
            longest = await _all(conn, _LONGEST_QUERIES, max_query=MAX_QUERY_CHARS, limit=MAX_LONGEST)
            return Activity(
                database=database,
                sessions=int(groups[0][6]) if groups else 0,
                groups=tuple(
                    SessionGroup(app_name(a), s, w, int(n), float(o or 0)) for a, s, w, n, o, _, _ in groups
                ),
                group_count=int(groups[0][5]) if groups else 0,
                involved=tuple(_session(r, tuple(int(p) for p in r[7])) for r in involved),
                involved_count=int(involved[0][8]) if involved else 0,
                longest=tuple(_session(r) for r in longest),
            )

        return await self._read(read)

    # --- user lockouts (the guide's "User Lockouts") ---------------------------------------------

    async def user_lock(self, email: str, *, table: str = "users") -> UserLock:
        async def read(conn: Conn) -> UserLock:
            query = _named(
                "SELECT locked_until, failed_attempts FROM {} WHERE email = %(email)s LIMIT 2", table
            )
            rows = await _all(conn, query, email=email)
            if not rows:
                return UserLock(False)
            until, attempts = rows[0]
            return UserLock(True, until, attempts)

        return await self._read(read)

    async def locked_users(self, limit: int, *, table: str = "users") -> LockedUsers:
        async def read(conn: Conn) -> LockedUsers:
            where = "FROM {} WHERE locked_until > now()"
            (total,) = await _one(conn, _named(f"SELECT count(*) {where}", table))
            listed = f"SELECT email, locked_until, failed_attempts {where} ORDER BY locked_until, email"
            rows = await _all(conn, _named(f"{listed} LIMIT %(limit)s", table), limit=limit)
            return LockedUsers(int(total), tuple(LockedUser(e, u, a) for e, u, a in rows))

        return await self._read(read)

    async def unlock_user(self, email: str, *, function: str = "payflow_bot.unlock_user") -> int:
        """The one write the bot's role can make: the DBA's SECURITY DEFINER function, which
        changes exactly one row or raises and changes nothing. `PostgresUnavailable.uncertain`
        is True when the call may have reached the server (its commit may have happened)."""

        sent = False

        async def call(conn: Conn) -> int:
            nonlocal sent
            sent = True
            (changed,) = await _one(conn, _named("SELECT {}(%(email)s)", function), email=email)
            await conn.commit()
            return int(changed)

        try:
            return await self._read(call, write=True)
        except PostgresUnavailable as exc:
            raise PostgresUnavailable(str(exc), uncertain=sent) from None
        except PostgresError as exc:
            if exc.sqlstate in {"55000", "P0002"}:  # not locked / no such user: nothing changed
                raise NotLocked(str(exc)) from None
            raise

    # --- one call: a slot, a connection, a read-only transaction, one deadline --------------------

    async def _read(self, work: Callable[[Conn], Awaitable[T]], *, write: bool = False) -> T:
        import psycopg
        from psycopg import errors

        if not self._dsn_check()[0]:
            raise PostgresError(
                f"{self.setting} does not hold a PostgreSQL connection string "
                "(postgresql://user:password@host:5432/database)"
            )
        task = asyncio.ensure_future(self._session(work, write=write))
        done, _ = await asyncio.wait({task}, timeout=self.timeout)
        if not done:
            # psycopg cancels a running query on the server before it lets go (up to 10 s more
            # against a hung server): that cleanup finishes on its own, the answer does not wait.
            task.cancel()
            self._cleanups.add(task)
            task.add_done_callback(self._forget)
            raise PostgresUnavailable(f"PostgreSQL did not answer within {self.timeout:g} s")
        try:
            return task.result()
        except PostgresError:
            raise
        except errors.QueryCanceled:
            raise PostgresUnavailable(
                f"PostgreSQL cancelled the read at the {self.timeout:g} s statement timeout"
            ) from None
        except psycopg.OperationalError as exc:
            raise PostgresUnavailable(f"PostgreSQL is unreachable: {self._brief(exc)}") from None
        except errors.InsufficientPrivilege as exc:
            raise PostgresError(
                f"the bot's PostgreSQL role may not do this: {self._brief(exc)} "
                "(deploy/sql/payflow-bot.sql grants what it needs)"
            ) from None
        except psycopg.Error as exc:
            code = f" ({exc.sqlstate})" if exc.sqlstate else ""
            raise PostgresError(
                f"PostgreSQL refused{code}: {self._brief(exc)}", sqlstate=exc.sqlstate
            ) from None

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._cleanups.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a late failure of a call already answered is expected

    async def _session(self, work: Callable[[Conn], Awaitable[T]], *, write: bool = False) -> T:
        import psycopg
        from psycopg import sql

        async with self._slots:
            conn = await psycopg.AsyncConnection.connect(
                self._dsn,
                connect_timeout=max(2, math.ceil(self.timeout)),  # libpq's least is 2 s
                application_name=APPLICATION_NAME,
                autocommit=False,
            )
            try:
                timeout_ms = max(1, int(self.timeout * 1000))
                # a read runs READ ONLY; the one write (the unlock function) commits itself
                mode = "READ WRITE" if write else "READ ONLY"
                await conn.execute(
                    sql.SQL("SET TRANSACTION {}; SET LOCAL statement_timeout = {}").format(
                        sql.SQL(mode), sql.Literal(timeout_ms)
                    )
                )
                return await work(conn)
            finally:
                await conn.close()  # an uncommitted transaction goes with it

    def _brief(self, exc: BaseException) -> str:
        """The first line of the server's or libpq's message, without the DSN or its password,
        and with any customer address masked (a function's or constraint's message may name one)."""
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        text = lines[0] if lines else type(exc).__name__
        for secret in self._dsn_check()[1]:
            text = text.replace(secret, "***")
        text = mask_emails(redact(text))
        return text if len(text) <= 200 else text[:199] + "…"


async def _one(conn: Conn, query: str | sql.Composed, **params: Any) -> tuple[Any, ...]:
    rows = await _all(conn, query, **params)
    if len(rows) != 1:
        raise PostgresError(f"expected one row, got {len(rows)}")
    return rows[0]


async def _all(conn: Conn, query: str | sql.Composed, **params: Any) -> list[tuple[Any, ...]]:
    cursor = await conn.execute(query, params or None)
    return await cursor.fetchall()


def _named(query: str, name: str) -> sql.Composed:
    """`query` with the table or function the catalog names (`users`, `payflow_bot.unlock_user`;
    validated there) in place of `{}`, quoted as identifiers: never text pasted into SQL."""
    from psycopg import sql

    return sql.SQL(query).format(sql.Identifier(*name.split(".")))
