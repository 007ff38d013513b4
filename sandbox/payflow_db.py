"""PayFlow's database in a private PostgreSQL, for tests, benchmarks and `make run`.

Schema (sandbox/sql/payflow_schema.sql), the bot's least-privilege role exactly as a DBA installs
it (deploy/sql/payflow-bot.sql), rows generated server-side with `generate_series` (a million
transactions in seconds, not a million round trips), some users locked, some locks expired, and
then a few genuinely slow statements so `pg_stat_statements` has something to rank.

    with PayflowDatabase(transactions=1_000_000) as db:
        db.bot_dsn      # payflow_bot: pg_monitor, three columns of users, unlock_user()
        db.admin_dsn    # the cluster's superuser
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import psycopg
from psycopg import sql

from sandbox.local import ROOT, LocalServer
from sandbox.postgres import PostgresServer

__all__ = [
    "BOT_ROLE",
    "BOT_SQL",
    "SCHEMA_SQL",
    "UNLOCK_FUNCTION",
    "PayflowDatabase",
    "Seeded",
    "apply_schema",
    "install_bot_role",
    "run_slow_statements",
    "seed",
]

SCHEMA_SQL = Path(__file__).with_name("sql") / "payflow_schema.sql"
BOT_SQL = ROOT / "deploy" / "sql" / "payflow-bot.sql"
BOT_ROLE = "payflow_bot"
UNLOCK_FUNCTION = "payflow_bot.unlock_user"
CURRENCIES = ("USD", "EUR", "GBP", "NGN", "KES")
EMAIL_DOMAIN = "payflow.example"


def user_email(n: int) -> str:
    """The seeded user number `n`'s email (1-based), so tests can name users without a query."""
    return f"user{n}@{EMAIL_DOMAIN}"


@dataclass(frozen=True)
class Seeded:
    """What `seed` generated: users 1..locked are locked for the coming hours, the next
    `expired_locks` users have locks that already ran out, the rest were never locked."""

    users: int
    locked: int
    expired_locks: int
    wallets: int
    transactions: int

    @property
    def locked_emails(self) -> list[str]:
        return [user_email(n) for n in range(1, self.locked + 1)]

    @property
    def expired_emails(self) -> list[str]:
        return [user_email(n) for n in range(self.locked + 1, self.locked + self.expired_locks + 1)]


def apply_schema(conn: psycopg.Connection[Any]) -> None:
    conn.execute(SCHEMA_SQL.read_bytes())


def install_bot_role(conn: psycopg.Connection[Any], password: str) -> None:
    """Run deploy/sql/payflow-bot.sql unchanged (as the README tells a DBA), then set the
    password the way a DBA would: the file itself holds none."""
    conn.execute(BOT_SQL.read_bytes())
    conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(BOT_ROLE), sql.Literal(password)))


def seed(
    conn: psycopg.Connection[Any],
    *,
    users: int = 500,
    transactions: int = 20_000,
    locked: int = 7,
    expired_locks: int = 5,
) -> Seeded:
    """Generate the rows in the server: one wallet per user, transactions spread over 30 days.
    Values are derived from the row number (no random()) so every run has the same data."""
    if users < locked + expired_locks or min(users, transactions, locked, expired_locks) < 0:
        raise ValueError("seed needs users >= locked + expired_locks, and no negative counts")
    currencies = list(CURRENCIES)
    with conn.transaction():
        # The foreign-key triggers would cost one lookup per generated row; the generator
        # keeps references valid by construction.
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute(
            """
            INSERT INTO users (email, password_hash, full_name, failed_attempts, locked_until, created_at)
            SELECT 'user' || n || '@' || %(domain)s,
                   '$2b$12$' || md5(n::text) || md5((n * 7)::text),
                   'PayFlow User ' || n,
                   CASE WHEN n <= %(locked)s + %(expired)s THEN 5 ELSE n %% 3 END,
                   CASE WHEN n <= %(locked)s THEN now() + (n * interval '17 minutes')
                        WHEN n <= %(locked)s + %(expired)s THEN now() - (n * interval '1 hour')
                   END,
                   now() - (n %% 400) * interval '1 day'
              FROM generate_series(1, %(users)s::bigint) AS n
            """,
            {"users": users, "locked": locked, "expired": expired_locks, "domain": EMAIL_DOMAIN},
        )
        conn.execute(
            """
            INSERT INTO wallets (user_id, currency, balance)
            SELECT u.id, (%(cur)s::text[])[1 + u.id %% %(ncur)s], (u.id * 7919 %% 1000000) / 100.0
              FROM users u
            """,
            {"cur": currencies, "ncur": len(currencies)},
        )
        conn.execute(
            """
            INSERT INTO transactions (wallet_id, kind, amount, currency, status, reference, created_at)
            SELECT w.id,
                   (ARRAY['payment', 'transfer', 'refund', 'topup'])[1 + n %% 4],
                   1 + (n * 7919 %% 500000) / 100.0,
                   w.currency,
                   (ARRAY['completed', 'completed', 'completed', 'completed', 'completed',
                          'completed', 'pending', 'failed', 'completed', 'reversed'])[1 + n %% 10],
                   'TX-' || lpad(n::text, 10, '0'),
                   now() - (n %% 2592000) * interval '1 second'
              FROM generate_series(1, %(tx)s::bigint) AS n
              JOIN wallets w ON w.id = 1 + n %% %(wallets)s
            """,
            {"tx": transactions, "wallets": users},
        )
    conn.execute("ANALYZE users, wallets, transactions")
    return Seeded(users, locked, expired_locks, users, transactions)


# Statements an operator would find in `/payflow db slow`: aggregates that scan the whole
# transactions table (no index on created_at/status), and one that waits on purpose.
SLOW_STATEMENTS: tuple[str, ...] = (
    "SELECT status, currency, count(*), sum(amount) FROM transactions"
    " WHERE created_at > now() - interval '7 days' GROUP BY status, currency",
    "SELECT date_trunc('day', created_at) AS day, count(*) FILTER (WHERE status = 'failed')"
    " FROM transactions GROUP BY day ORDER BY day",
    "SELECT w.user_id, sum(t.amount) FROM transactions t JOIN wallets w ON w.id = t.wallet_id"
    " WHERE t.status = 'reversed' GROUP BY w.user_id ORDER BY 2 DESC LIMIT 10",
    "SELECT pg_sleep(0.2)",
)


def run_slow_statements(conn: psycopg.Connection[Any], repeat: int = 2) -> None:
    """Start pg_stat_statements afresh, then run SLOW_STATEMENTS `repeat` times each."""
    conn.execute("SELECT pg_stat_statements_reset()")
    for _ in range(repeat):
        for statement in SLOW_STATEMENTS:
            conn.execute(statement)


class PayflowDatabase(LocalServer):
    """A started private PostgreSQL holding a seeded PayFlow database and the bot's role.

    `admin_dsn` is the superuser (`payflow`, random password); `bot_dsn` logs in as `payflow_bot`
    with a random password. Both reach the server over TCP on 127.0.0.1 with scram auth."""

    def __init__(
        self,
        *,
        users: int = 500,
        transactions: int = 20_000,
        locked: int = 7,
        expired_locks: int = 5,
        slow_repeat: int = 2,
    ) -> None:
        self.server = PostgresServer()
        self.bot_password = secrets.token_urlsafe(18)
        self._seed_args = {
            "users": users,
            "transactions": transactions,
            "locked": locked,
            "expired_locks": expired_locks,
        }
        self._slow_repeat = slow_repeat
        self.seeded: Seeded | None = None

    @property
    def admin_dsn(self) -> str:
        return self.server.dsn()

    @property
    def bot_dsn(self) -> str:
        return self.server.dsn(BOT_ROLE, self.bot_password)

    def start(self) -> Self:
        self.server.start()
        with self.server.connect() as conn:
            apply_schema(conn)
            install_bot_role(conn, self.bot_password)
            self.seeded = seed(conn, **self._seed_args)
            run_slow_statements(conn, self._slow_repeat)
        return self

    def connect_admin(self, **kwargs: Any) -> psycopg.Connection[Any]:
        return self.server.connect(self.admin_dsn, **kwargs)

    def connect_bot(self, **kwargs: Any) -> psycopg.Connection[Any]:
        return self.server.connect(self.bot_dsn, **kwargs)

    def close(self) -> None:
        self.server.close()
