"""`/payflow db`, `db slow [N]`, `db activity`: the operations guide's "Database Health" and
"Check Database Performance" from chat, read through the bot's least-privilege role instead of a
`psql` shell in the postgres pod.

Statement text from the server is shown only normalized, redacted (before it is cut: a card
number cut in half would escape the rules), cut and escaped. `db activity` shows other
sessions' statements with their literals, so it answers only the asker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from bot.base.mrkdwn import escape
from bot.base.redact import redact
from bot.base.refused import Unavailable
from bot.base.roles import Role
from bot.config.catalog import Catalog
from bot.domain.views import Facts, Notice, Reply, Report, Table, Text, Tone
from bot.gateways.postgres import (
    Activity,
    Overview,
    Postgres,
    PostgresError,
    PostgresUnavailable,
    Session,
    SlowStatements,
    StatementsMissing,
)
from handlers.base import Context
from handlers.registry import command, count_arg, takes_nothing

SLOW_DEFAULT, SLOW_MOST = 10, 25
QUERY_IN_FACTS = 120  # characters of a statement shown in a line of facts
QUERY_IN_TABLE = 160  # in a table cell (the message cuts cells further; a file keeps these)
QUERY_IN_ACTIVITY = 100
CROWDED = 0.8  # connections in use, of max_connections, that make the overview a warning
README = "README → *PostgreSQL*"
T = TypeVar("T")


def postgres(ctx: Context) -> Postgres:
    """The gateway, or `Unavailable` naming the setting to set and the role to create."""
    pg = ctx.deps.postgres
    if pg is None:
        setting = ctx.catalog.data.postgres.url_setting
        raise Unavailable(
            f"PostgreSQL is not configured: set `{setting}` to a connection string for the bot's own "
            f"role `payflow_bot` (postgresql://payflow_bot:…@host:5432/payflow), created by "
            f"deploy/sql/payflow-bot.sql ({README}).",
            detail=f"{setting} not set",
            configured=False,
        )
    return pg


async def read(ctx: Context, call: Callable[[Postgres], Awaitable[T]]) -> T:
    """The one way a command reads PostgreSQL: not configured, unreachable, past the deadline or
    refused is said as such (`Unavailable`, audited as failed), never a traceback."""
    pg = postgres(ctx)
    try:
        return await call(pg)
    except StatementsMissing:
        raise
    except PostgresError as exc:
        text = f"{exc}. Nothing was read." if isinstance(exc, PostgresUnavailable) else f"{exc}."
        raise Unavailable(escape(text[:1].upper() + text[1:]), detail=str(exc)) from None


def statement_text(raw: str, limit: int) -> str:
    """One line, redacted, then cut (in this order), not yet escaped."""
    text = redact(" ".join(raw.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def code(text: str) -> str:
    """Outside text as inline code in mrkdwn: escaped, and unable to close the code span."""
    return "`" + escape(text.replace("`", "'")) + "`"


def size_text(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{n:,} bytes" if unit == "bytes" else f"{value:,.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def age_text(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 120:
        return f"{whole} s"
    if whole < 7200:
        return f"{whole // 60} min {whole % 60} s"
    if whole < 172_800:
        return f"{whole // 3600} h {whole % 3600 // 60} min"
    return f"{whole // 86_400} d {whole % 86_400 // 3600} h"


def ms_text(ms: float) -> str:
    return f"{ms:,.2f}" if ms < 10 else f"{ms:,.0f}"


def _session_line(s: Session) -> str:
    parts = [age_text(s.age_seconds), f"pid {s.pid}", s.state or "no state"]
    if s.wait:
        parts.append(f"waits on {s.wait}")
    if s.application:
        parts.append(f"app {s.application}")
    return escape(" · ".join(parts))


# --- /payflow db --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DbOverview:
    pass


def overview_report(o: Overview) -> Report:
    crowded = o.connected >= CROWDED * o.max_connections
    states = " · ".join(f"{state} {n}" for state, n in o.connections)
    facts: list[tuple[str, str]] = [
        ("Round trip", f"{o.round_trip_ms:.1f} ms (SELECT 1)"),
        ("Server", escape(f"PostgreSQL {o.version}" + (" · standby (in recovery)" if o.in_recovery else ""))),
        (
            "Connections",
            f"{'⚠️ ' if crowded else ''}*{o.connected}* of {o.max_connections}"
            f" ({escape(states)}; this check included)",
        ),
        (
            "Waiting on a lock",
            f"⚠️ *{o.waiting}* session{'s' * (o.waiting != 1)} · `/payflow db activity` shows who blocks them"
            if o.waiting
            else "no session",
        ),
        (
            "Oldest transaction",
            _session_line(o.oldest_transaction) if o.oldest_transaction else "none open",
        ),
    ]
    if o.longest_query:
        facts.append(("Longest-running query", _session_line(o.longest_query)))
        facts.append(("Its statement", code(statement_text(o.longest_query.query, QUERY_IN_FACTS))))
    else:
        facts.append(("Longest-running query", "no other query is running"))
    facts.append(("Database size", size_text(o.size_bytes)))
    parts: list[Facts | Table | Text] = [Facts(tuple(facts))]
    if o.replicas:
        rows = tuple(
            (
                r.name or "(unnamed)",
                r.address,
                r.state,
                r.sync_state,
                "—" if r.replay_lag_seconds is None else age_text(r.replay_lag_seconds),
                "—" if r.behind_bytes is None else size_text(r.behind_bytes),
            )
            for r in o.replicas
        )
        parts.append(
            Table(
                ("replica", "address", "state", "sync", "replay lag", "not replayed"),
                rows,
                title="Replication",
                attention=tuple(r.state != "streaming" for r in o.replicas),
                noun="replicas",
            )
        )
    else:
        parts.append(Text("Replication: no replicas (pg_stat_replication is empty: a standalone server)."))
    lagging = any(r.state != "streaming" for r in o.replicas)
    tone = Tone.WARNING if crowded or o.waiting or lagging else Tone.INFO
    return Report(
        f"PostgreSQL · {o.database}",
        tuple(parts),
        tone=tone,
        footer="`/payflow db activity` sessions and locks · `/payflow db slow` slowest statements",
    )


@command(
    "db",
    summary="PostgreSQL at a glance: round trip, version, connections of max_connections, the oldest "
    "transaction, the longest-running query, database size, replication lag.",
    role=Role.VIEWER,
    examples=("/payflow db",),
    parse=takes_nothing("db", DbOverview()),
)
async def db_overview(cmd: DbOverview, ctx: Context) -> Reply:
    o = await read(ctx, lambda pg: pg.overview())
    detail = f"{o.connected} of {o.max_connections} connections, {o.waiting} waiting"
    return Reply(overview_report(o), public=True, detail=detail)


# --- /payflow db slow [N] -----------------------------------------------------------------------


@dataclass(frozen=True)
class DbSlow:
    limit: int = SLOW_DEFAULT


def _parse_slow(args: list[str], catalog: Catalog) -> DbSlow:
    return DbSlow(count_arg(args, "db slow", default=SLOW_DEFAULT, most=SLOW_MOST))


def how_to_enable(exc: StatementsMissing) -> str:
    db = escape(exc.database)
    preload = (
        "add `pg_stat_statements` to `shared_preload_libraries` in postgresql.conf and restart PostgreSQL"
    )
    if exc.installed:
        first = f"pg_stat_statements is installed in `{db}` but not loaded"
        steps = preload
    else:
        first = f"pg_stat_statements is not installed in database `{db}`"
        steps = (
            f"{preload} (if it is not there yet), then in `{db}` run `CREATE EXTENSION pg_stat_statements;`"
        )
    return (
        f"{first}, so there are no statement figures. To enable it, as a superuser: {steps}. "
        f"deploy/sql/payflow-bot.sql does the `CREATE EXTENSION` and grants the bot `pg_monitor` "
        f"to read it ({README})."
    )


def slow_report(s: SlowStatements, limit: int) -> Report:
    rows = tuple(
        (
            ms_text(st.mean_ms),
            ms_text(st.total_ms),
            f"{st.calls:,}",
            f"{st.rows:,}",
            statement_text(st.query, QUERY_IN_TABLE),
        )
        for st in s.statements
    )
    shown = f"the {len(rows)} slowest" if len(rows) < s.tracked else f"all {len(rows)}"
    note = (
        f"{shown} of {s.tracked} statements pg_stat_statements tracks in {escape(s.database)}, by "
        f"mean time ({s.mean_column}); constants are shown as $1, $2 …; the bot's own reads are left out"
    )
    return Report(
        f"Slowest statements · {s.database}",
        (
            Table(
                ("mean ms", "total ms", "calls", "rows", "statement"),
                rows,
                empty="no statements recorded in this database yet (or since pg_stat_statements_reset())",
                noun="statements",
                note=note,
            ),
        ),
        filename="slow-statements.txt",
    )


@command(
    "db slow [N]",
    summary=f"The N statements with the slowest mean time from pg_stat_statements (default "
    f"{SLOW_DEFAULT}, at most {SLOW_MOST}): mean and total ms, calls, rows.",
    role=Role.OPERATOR,
    examples=("/payflow db slow", "/payflow db slow 5"),
    parse=_parse_slow,
)
async def db_slow(cmd: DbSlow, ctx: Context) -> Reply:
    try:
        found = await read(ctx, lambda pg: pg.slow_statements(cmd.limit))
    except StatementsMissing as exc:
        return Reply(Notice(how_to_enable(exc), Tone.WARNING), detail=str(exc), outcome="failed")
    detail = f"{len(found.statements)} of {found.tracked} statements"
    return Reply(slow_report(found, cmd.limit), public=True, detail=detail)


# --- /payflow db activity -----------------------------------------------------------------------


@dataclass(frozen=True)
class DbActivity:
    pass


def _involved_lines(a: Activity) -> list[str]:
    if not a.involved:
        return ["No session waits on another session's lock."]
    lines = [f"*Blocked and blocking* ({a.involved_count} session{'s' * (a.involved_count != 1)})"]
    for s in a.involved:
        role = (
            "🔴 blocked by " + ", ".join(f"pid {p}" for p in s.blocked_by) if s.blocked_by else "⛔ blocking"
        )
        text = statement_text(s.query, QUERY_IN_ACTIVITY)
        lines.append(f"{role} · {_session_line(s)} · {code(text) if text else '_no statement_'}")
    if a.involved_count > len(a.involved):
        lines.append(f"…and {a.involved_count - len(a.involved)} more")
    return lines


def activity_report(a: Activity) -> Report:
    rows = tuple(
        (
            g.application or "(none)",
            g.state or "(none)",
            g.wait or "—",
            str(g.sessions),
            age_text(g.oldest_seconds),
        )
        for g in a.groups
    )
    attention = tuple(
        g.wait.startswith("Lock/") or g.state.startswith("idle in transaction") for g in a.groups
    )
    note = f"the {len(rows)} largest of {a.group_count} groups" if a.group_count > len(rows) else ""
    longest = [f"{_session_line(s)} · {code(statement_text(s.query, QUERY_IN_ACTIVITY))}" for s in a.longest]
    parts: tuple[Facts | Table | Text, ...] = (
        Facts((("Client sessions", f"*{a.sessions}* (this check not counted)"),)),
        Table(
            ("application", "state", "wait", "sessions", "oldest"),
            rows,
            title="Sessions by application, state and wait",
            empty="no other client session",
            attention=attention,
            noun="groups",
            note=note,
        ),
        Text("\n".join(_involved_lines(a)), Tone.WARNING if a.involved else None),
        Text("*Longest-running queries*\n" + "\n".join(longest) if longest else "No other query is running."),
    )
    return Report(
        f"PostgreSQL sessions · {a.database}",
        parts,
        tone=Tone.WARNING if a.involved else Tone.INFO,
        footer="Shown only to you: statements can hold customer data.",
        filename="db-activity.txt",
    )


@command(
    "db activity",
    summary="PostgreSQL sessions grouped by application, state and wait, and which sessions block "
    "which (pg_blocking_pids); shown only to you.",
    role=Role.OPERATOR,
    examples=("/payflow db activity",),
    parse=takes_nothing("db activity", DbActivity()),
)
async def db_activity(cmd: DbActivity, ctx: Context) -> Reply:
    found = await read(ctx, lambda pg: pg.activity())
    detail = f"{found.sessions} sessions, {len([s for s in found.involved if s.blocked_by])} blocked"
    return Reply(activity_report(found), public=False, detail=detail)
