"""How long the private data stores take to come up, and to fill at benchmark scale: the
figures that decide whether tests can start them per session and `make run` per demo.

PostgreSQL: initdb + start; schema, bot role and 1,000,000 transactions by generate_series;
the slow statements. RabbitMQ: node boot with the management plugin until its API answers, then
`rabbitmqctl stop`. Redis: 100,000 blacklist keys by pipeline, then a SCAN count.

    .venv/bin/python bench/datastores.py [--transactions 1000000] [--tokens 100000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sandbox.payflow_db import apply_schema, install_bot_role, run_slow_statements, seed
from sandbox.payflow_redis import BLACKLIST_MATCH, fill_blacklist
from sandbox.postgres import PostgresServer
from sandbox.rabbitmq import RabbitNode
from tests.support.redis_server import RedisServer


def row(what: str, seconds: float) -> None:
    print(f"{what:<52} {seconds:8.2f} s")


def bench_postgres(transactions: int) -> None:
    began = time.monotonic()
    with PostgresServer() as pg:
        row("PostgreSQL: initdb + pg_ctl start", time.monotonic() - began)
        with pg.connect() as conn:
            t = time.monotonic()
            apply_schema(conn)
            install_bot_role(conn, "bench-password")
            row("PostgreSQL: schema + deploy/sql/payflow-bot.sql", time.monotonic() - t)
            t = time.monotonic()
            seeded = seed(conn, users=max(500, transactions // 100), transactions=transactions)
            row(
                f"PostgreSQL: seed {seeded.transactions:,} transactions, {seeded.users:,} users",
                time.monotonic() - t,
            )
            t = time.monotonic()
            run_slow_statements(conn)
            row("PostgreSQL: slow statements (2 rounds)", time.monotonic() - t)
            size = conn.execute("SELECT pg_size_pretty(pg_total_relation_size('transactions'))").fetchone()
        t = time.monotonic()
    row("PostgreSQL: pg_ctl stop -m immediate + cleanup", time.monotonic() - t)
    print(f"{'PostgreSQL: transactions table size':<52} {size[0] if size else '?':>10}")


def bench_rabbitmq() -> None:
    node = RabbitNode()
    with node:
        row("RabbitMQ: node + management API ready + monitor user", node.started_in or 0.0)
        t = time.monotonic()
    row("RabbitMQ: rabbitmqctl stop + process group gone", time.monotonic() - t)


def bench_redis(tokens: int) -> None:
    with RedisServer() as server:
        client = server.client()
        t = time.monotonic()
        fill_blacklist(client, tokens)
        row(f"Redis: {tokens:,} blacklist keys (pipelined SET EX)", time.monotonic() - t)
        t = time.monotonic()
        found = sum(1 for _ in client.scan_iter(match=BLACKLIST_MATCH, count=1000))
        row(f"Redis: SCAN count ({found:,} keys, COUNT 1000)", time.monotonic() - t)
        client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=1_000_000)
    parser.add_argument("--tokens", type=int, default=100_000)
    args = parser.parse_args()
    bench_postgres(args.transactions)
    bench_rabbitmq()
    bench_redis(args.tokens)
    return 0


if __name__ == "__main__":
    sys.exit(main())
