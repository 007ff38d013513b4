"""The hash-chained audit trail on a private redis-server: appends per second from one bot
process and from two racing ones (each lost race for the chain's tip costs a round trip), and
how fast `verify` walks the chain.

    .venv/bin/python bench/audit_chain.py [--entries 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.gateways.store import AuditEntry, RedisStore, Store
from tests.support.redis_server import RedisServer


async def append(stores: list[Store], n: int, concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await stores[i % len(stores)].append_audit(AuditEntry(f"U{i}", "status", "ok", detail="bench"))

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - started


async def run(url: str, n: int, server: RedisServer) -> None:
    print(f"{'case':44} {'entries':>8} {'seconds':>8} {'per s':>8}")
    for label, replicas, concurrency in (
        ("1 process, one at a time", 1, 1),
        ("1 process, 20 concurrent", 1, 20),
        ("2 processes racing, 20 concurrent", 2, 20),
    ):
        server.flush()
        stores: list[Store] = [RedisStore(url) for _ in range(replicas)]
        try:
            took = await append(stores, n, concurrency)
            verdict_started = time.perf_counter()
            verdict = await stores[0].verify_audit()
            verify_took = time.perf_counter() - verdict_started
        finally:
            for store in stores:
                await store.close()
        assert verdict.ok and verdict.checked == n, verdict.report()
        print(f"{'append: ' + label:44} {n:8d} {took:8.2f} {n / took:8.0f}")
        print(f"{'verify after it':44} {n:8d} {verify_took:8.2f} {n / verify_took:8.0f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=5000)
    args = parser.parse_args()
    with RedisServer() as server:
        asyncio.run(run(server.url, args.entries, server))


if __name__ == "__main__":
    main()
