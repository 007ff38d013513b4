"""Bounded reads of change records: the sweep and `/payflow changes` read the in-flight index and
the newest finished ones, never every record kept, and the index repairs itself after a crash
between a record write and its index update (bot/domain/gate/records.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from bot.config.catalog import Catalog
from bot.domain.gate.engine import Gate
from bot.domain.gate.record import AWAITING_APPROVAL, CANCELLED, DONE, Change, Lease
from bot.domain.gate.records import (
    FINISHED_KEEP,
    IN_FLIGHT_INDEX,
    ORPHAN_GRACE,
    RETENTION_SECONDS,
    Records,
    finished_index,
)
from bot.gateways.store import MemoryStore, RedisStore, Store
from tests.support.redis_server import RedisServer, redis_server_fixture

redis_server = redis_server_fixture(scope="module")
FINISHED = 10_000


def _change(i: int, service: str = "api-gateway", **fields: Any) -> Change:
    return Change(
        f"chg-{i:08x}", "deploy", service, "blue", "green", "i:1", "i:2", 3, "U0ALICE", "", "C1",
        created_at=f"2026-01-0{1 + i // 86400}T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}+00:00",
        **fields,
    )  # fmt: skip


@dataclass
class Process:
    """What the gate needs from a process (the `Gateways` port); no phase may start here."""

    catalog: Catalog
    store: Store
    kube: Any = None
    notifier: Any = None
    prom: Any = None

    def spawn(self, coro: Any) -> None:
        coro.close()
        raise AssertionError("the sweep started a phase of a change someone holds")

    async def audit(self, entry: Any) -> bool:
        return True


async def _held(records: Records, i: int, service: str) -> Change:
    """An in-flight change whose phase another worker holds (the sweep leaves it alone)."""
    change = _change(i, service)
    assert await records.open(change)
    current = await records.get(change.id)
    assert current is not None
    return await records.write(current, lease=Lease("prepare", "another-worker", time.time() + 3600))


def _commands(server: RedisServer) -> dict[str, int]:
    stats = server.client().info("commandstats")
    calls = {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}
    return {k: n for k, n in calls.items() if k not in ("info", "hello", "config|resetstat")}  # not reads


def test_the_sweep_and_changes_read_a_bounded_number_of_records(redis_server: RedisServer, catalog: Catalog):
    """10,000 finished records kept (and indexed as `Records` files them), three in flight: a
    sweep is one index read and one MGET of the three, `changes` one index read and one MGET of
    at most FINISHED_KEEP; no SCAN, whatever the number of records kept."""
    redis_server.flush()
    services = list(catalog.services)
    raw = redis_server.client()
    with raw.pipeline(transaction=False) as pipe:
        for i in range(FINISHED):
            change = _change(i, services[i % len(services)], state=DONE, version=5)
            pipe.set(f"payflow:rec:{change.key}", json.dumps(change.to_record()), px=RETENTION_SECONDS * 1000)
        pipe.execute()

    async def scenario() -> tuple[dict[str, int], dict[str, int], list[Change], list[Change]]:
        store = RedisStore(redis_server.url)
        records = Records(store, lock_ttl=3600, lease_seconds=60)
        for i in range(FINISHED):  # filed as `Records.write` files a finished change
            change = _change(i, services[i % len(services)])
            for index in (finished_index(), finished_index(change.service)):
                await store.index_add(index, change.id, i, keep=FINISHED_KEEP)
        held = [await _held(records, FINISHED + k, services[k]) for k in range(3)]
        cancelled = await records.write(await _held(records, FINISHED + 3, services[3]), state=CANCELLED)
        gate = Gate(Process(catalog, store))  # type: ignore[arg-type]
        raw.config_resetstat()
        assert await gate.sweep() == 0
        swept = _commands(redis_server)
        raw.config_resetstat()
        recent = await records.recent(None, 5)
        listed = _commands(redis_server)
        in_flight = await records.in_flight()
        await store.close()
        assert [c.id for c in in_flight] == [c.id for c in held]
        assert recent[0].id == cancelled.id
        return swept, listed, in_flight, recent

    swept, listed, _, recent = asyncio.run(scenario())
    assert "scan" not in swept and "keys" not in swept, swept
    assert swept["zrange"] == 1 and swept["mget"] == 1, swept
    assert swept["evalsha"] == swept["get"] == 3, swept  # each in-flight change's lock refreshed
    assert "scan" not in listed and listed == {"zrevrange": 1, "mget": 1}, listed
    assert [c.created_at for c in recent] == sorted((c.created_at for c in recent), reverse=True)
    assert len(recent) == 5 and recent[1].id == f"chg-{FINISHED - 1:08x}"  # newest first


@pytest.fixture(params=["memory", "redis"])
def store_factory(request: pytest.FixtureRequest) -> Callable[[], Store]:
    if request.param == "memory":
        return MemoryStore
    server: RedisServer = request.getfixturevalue("redis_server")
    server.flush()
    return lambda: RedisStore(server.url)


def _run(factory: Callable[[], Store], body: Callable[[Store, Records], Awaitable[None]]) -> None:
    async def main() -> None:
        store = factory()
        try:
            await body(store, Records(store, lock_ttl=3600, lease_seconds=60))
        finally:
            await store.close()

    asyncio.run(main())


def test_changes_lists_in_flight_then_the_newest_finished_per_service(store_factory):
    async def body(store: Store, records: Records) -> None:
        for i in range(8):  # eight finished changes of one service, two of another
            change = await _held(records, i, "api-gateway" if i < 6 else "wallet-service")
            await records.write(change, state=CANCELLED)
        live = await _held(records, 100, "api-gateway")
        assert [c.id for c in await records.in_flight()] == [live.id]
        assert [c.id for c in await records.recent("api-gateway", 5)] == [
            _change(i).id for i in (5, 4, 3, 2, 1)
        ]
        assert [c.id for c in await records.recent("wallet-service", 5)] == [_change(i).id for i in (7, 6)]
        assert [c.id for c in await records.recent(None, 3)] == [_change(i).id for i in (7, 6, 5)]

    _run(store_factory, body)


def test_the_index_repairs_itself_after_a_crash_between_record_and_index(store_factory):
    """Index first, cleaned last: a worker that dies between the two writes leaves an entry too
    many, never a change the sweep cannot find; the next read puts it right."""

    async def body(store: Store, records: Records) -> None:
        # died after its terminal write, before filing it: the sweep still sees the entry
        change = await _held(records, 1, "api-gateway")
        done = change.to_record() | {"state": CANCELLED, "version": change.version + 1}
        assert await store.compare_and_set(change.key, "version", change.version, done)
        assert [m for m, _ in await store.index_range(IN_FLIGHT_INDEX, 10)] == [change.id]
        assert await records.in_flight() == []
        assert await store.index_range(IN_FLIGHT_INDEX, 10) == []
        assert [c.id for c in await records.recent("api-gateway")] == [change.id]
        # died after indexing a new change, before creating its record: kept for a grace, then dropped
        await store.index_add(IN_FLIGHT_INDEX, "chg-0000dead", time.time() - ORPHAN_GRACE - 1)
        await store.index_add(IN_FLIGHT_INDEX, "chg-0000beef", time.time())  # being opened now
        assert await records.in_flight() == []
        assert [m for m, _ in await store.index_range(IN_FLIGHT_INDEX, 10)] == ["chg-0000beef"]
        # a record from before the indexes: found by the reindex at worker start
        old = _change(2, "wallet-service", state=AWAITING_APPROVAL)
        await store.create(old.key, old.to_record())
        assert await records.in_flight() == []
        assert await records.reindex() == 2
        assert [c.id for c in await records.in_flight()] == [old.id]

    _run(store_factory, body)
