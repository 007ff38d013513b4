# ruff: noqa: E402  (the repo root goes on sys.path before the project imports)
"""The store contract, run against both backends so they provably behave the same.

Behavioural tests take the ``backend`` fixture (``memory`` and ``redis``, a real private
redis-server); outage, reconnect and secret-hygiene tests are Redis-only. No test asserts on
timing: expiry is awaited by polling against a generous deadline.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:  # `pytest tests/...` without an installed package
    sys.path.insert(0, _ROOT)

import asyncio
import itertools
import json
import re
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar
from urllib.parse import quote

import pytest

from bot.gateways.store import (
    GENESIS,
    KEEP_TTL,
    MAX_AUDIT_LIMIT,
    AuditEntry,
    CasResult,
    MemoryStore,
    RedisStore,
    Store,
    StoreUnavailable,
    chain_hash,
    open_store,
)
from sandbox.local import wait_until
from tests.support.redis_server import RedisServer, redis_server_fixture

T = TypeVar("T")
SECRET = "s3cr3t/pa ss"  # characters that need URL-quoting, to test both spellings are scrubbed

redis_server = redis_server_fixture(scope="session")


@dataclass
class Backend:
    """Opens a fresh store of one kind inside a fresh event loop for each `run`."""

    name: str
    open: Callable[[], Store]
    redis: RedisServer | None = None

    def run(self, body: Callable[[Store], Awaitable[T]]) -> T:
        async def main() -> T:
            store = self.open()
            try:
                return await body(store)
            finally:
                await store.close()

        return asyncio.run(main())


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        return Backend("memory", MemoryStore)
    server: RedisServer = request.getfixturevalue("redis_server")
    server.flush()
    return Backend("redis", lambda: RedisStore(server.url), server)


@pytest.fixture
def fresh_redis(redis_server: RedisServer) -> RedisServer:
    redis_server.flush()
    return redis_server


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A password-protected server of its own, which the test may stop and start."""
    with RedisServer(password=SECRET) as server:
        yield server


def id_key(entry_id: str) -> tuple[int, int]:
    ms, seq = entry_id.split("-")
    return int(ms), int(seq)


# --------------------------------------------------------------------------------------------
# Audit trail


def test_audit_round_trips_newest_first(backend: Backend) -> None:
    written = [
        AuditEntry("U1", "status", "ok"),
        AuditEntry("U2", "scale", "denied", target="api", detail="not in role", channel="C123"),
        AuditEntry(
            "payflow-bot",
            "deploy.approve",
            "ok",
            target="ledger",
            permalink="https://x.slack.com/archives/C1/p1",
            at=datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2))),
        ),
    ]

    async def body(store: Store) -> None:
        ids = [await store.append_audit(e) for e in written]
        assert all(re.fullmatch(r"\d+-\d+", i) for i in ids)
        assert [id_key(i) for i in ids] == sorted({id_key(i) for i in ids})  # strictly increasing
        got = await store.audit()
        assert got == [replace(e, id=i) for e, i in zip(written, ids, strict=True)][::-1]
        assert got[0].at == datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)
        assert got[0].at.tzinfo is UTC

    backend.run(body)


def test_audit_filters_by_target_and_limits(backend: Backend) -> None:
    async def body(store: Store) -> None:
        assert await store.audit() == []
        for i in range(30):
            await store.append_audit(
                AuditEntry("U1", "scale", "ok", target="api" if i % 2 else "ledger", detail=str(i))
            )
        api = await store.audit(target="api", limit=5)
        assert [e.detail for e in api] == ["29", "27", "25", "23", "21"]
        assert [e.detail for e in await store.audit(limit=3)] == ["29", "28", "27"]
        assert len(await store.audit(limit=MAX_AUDIT_LIMIT)) == 30
        assert await store.audit(target="nope") == []

    backend.run(body)


def test_audit_filtered_scan_is_capped(backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.append_audit(AuditEntry("U1", "scale", "ok", target="rare"))
        for _ in range(25):
            await store.append_audit(AuditEntry("U1", "status", "ok", target="busy"))
        store.audit_scan_cap = 25  # the rare entry is the 26th newest: out of reach
        assert await store.audit(target="rare") == []
        assert len(await store.audit(target="busy", limit=100)) == 25
        store.audit_scan_cap = 26
        assert [e.target for e in await store.audit(target="rare")] == ["rare"]

    backend.run(body)


def test_audit_ignores_a_caller_supplied_id(backend: Backend) -> None:
    async def body(store: Store) -> None:
        entry_id = await store.append_audit(AuditEntry("U1", "status", "ok", id="999-0"))
        assert entry_id != "999-0"
        assert [e.id for e in await store.audit()] == [entry_id]

    backend.run(body)


def test_audit_entry_validates_and_normalises() -> None:
    assert AuditEntry("U1", "scale", "ok", target="", channel="").target is None
    with pytest.raises(ValueError, match="actor"):
        AuditEntry("", "scale", "ok")
    with pytest.raises(ValueError, match="timezone-aware"):
        AuditEntry("U1", "scale", "ok", at=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="target"):
        AuditEntry("U1", "scale", "ok", target=5)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Records


ODD_RECORD = {
    "big": 2**63 + 1,  # beyond a double: must never pass through cjson.encode
    "empty_list": [],
    "empty_obj": {},
    "text": 'üñí😀 "quoted" / back\\slash \u2028 \x00 tab\t',
    "nested": [{"a": None, "b": [1, 2.5, True]}],
    "float": 0.1,
}


def test_get_put_round_trip(backend: Backend) -> None:
    async def body(store: Store) -> None:
        assert await store.get("change:1") is None
        await store.put("change:1", ODD_RECORD)
        got = await store.get("change:1")
        assert got == ODD_RECORD
        assert got is not None
        got["big"] = 0  # the caller's copy is its own
        assert await store.get("change:1") == ODD_RECORD
        await store.put("change:1", {"state": "done"})
        assert await store.get("change:1") == {"state": "done"}

    backend.run(body)


def test_create_only_if_absent(backend: Backend) -> None:
    async def body(store: Store) -> None:
        assert await store.create("claim:digest:2026-03-01", {"by": "replica-a"}) is True
        assert await store.create("claim:digest:2026-03-01", {"by": "replica-b"}) is False
        assert await store.get("claim:digest:2026-03-01") == {"by": "replica-a"}
        assert await store.delete("claim:digest:2026-03-01") is True
        assert await store.create("claim:digest:2026-03-01", {"by": "replica-b"}) is True

    backend.run(body)


def test_compare_and_set_win_and_lose(backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.put("approval:7", {"state": "pending", "by": None})
        won = await store.compare_and_set("approval:7", "state", "pending", {"state": "approved", "by": "U1"})
        assert won == CasResult(True, {"state": "approved", "by": "U1"})
        assert won
        lost = await store.compare_and_set(
            "approval:7", "state", "pending", {"state": "approved", "by": "U2"}
        )
        assert lost == CasResult(False, {"state": "approved", "by": "U1"})  # the late clicker sees who won
        assert not lost
        absent = await store.compare_and_set("approval:8", "state", "pending", {"state": "approved"})
        assert absent == CasResult(False, None)
        assert await store.get("approval:8") is None  # CAS never creates

    backend.run(body)


TYPED = {"n": 1, "f": 1.0, "b": True, "s": "1", "z": None, "big": 2**60}


@pytest.mark.parametrize(
    ("field", "expected", "match"),
    [
        ("n", 1, True),
        ("n", True, False),
        ("n", "1", False),
        ("n", None, False),
        ("f", 1, True),
        ("b", True, True),
        ("b", 1, False),
        ("b", False, False),
        ("s", "1", True),
        ("s", 1, False),
        ("z", None, True),
        ("missing", None, True),
        ("missing", "x", False),
        ("big", 2**53 - 1, False),
    ],
)
def test_field_comparison_is_typed(backend: Backend, field: str, expected: Any, match: bool) -> None:
    async def body(store: Store) -> None:
        await store.put("rec", TYPED)
        result = await store.compare_and_set("rec", field, expected, {"replaced": True})
        assert result.won is match
        assert result.current == ({"replaced": True} if match else TYPED)
        await store.put("rec", TYPED)
        assert await store.delete("rec", if_field=field, equals=expected) is match

    backend.run(body)


def test_compare_and_set_keeps_json_exact(backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.put("rec", {"state": "a", **ODD_RECORD})
        lost = await store.compare_and_set("rec", "state", "b", {"state": "c"})
        assert lost.current == {"state": "a", **ODD_RECORD}
        won = await store.compare_and_set("rec", "text", ODD_RECORD["text"], {"state": "b", **ODD_RECORD})
        assert won.won
        assert await store.get("rec") == {"state": "b", **ODD_RECORD}

    backend.run(body)


def test_concurrent_compare_and_set_has_one_winner(backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.put("change:42", {"state": "awaiting_approval"})
        results = await asyncio.gather(
            *(
                store.compare_and_set(
                    "change:42", "state", "awaiting_approval", {"state": "switching", "by": f"U{i}"}
                )
                for i in range(50)
            )
        )
        winners = [r for r in results if r.won]
        assert len(winners) == 1
        assert all(r.current == winners[0].current for r in results)
        assert await store.get("change:42") == winners[0].current

    backend.run(body)


def test_concurrent_create_has_one_winner(backend: Backend) -> None:
    async def body(store: Store) -> None:
        created = await asyncio.gather(
            *(store.create("lock:api", {"owner": f"U{i}"}, ttl=60) for i in range(50))
        )
        assert created.count(True) == 1

    backend.run(body)


def test_concurrent_compare_and_set_across_connections(fresh_redis: RedisServer) -> None:
    """Separate clients (as two bot replicas would be) still produce exactly one winner."""

    async def main() -> None:
        stores = [RedisStore(fresh_redis.url) for _ in range(5)]
        try:
            await stores[0].put("change:9", {"state": "awaiting_approval"})
            results = await asyncio.gather(
                *(
                    stores[i % 5].compare_and_set(
                        "change:9", "state", "awaiting_approval", {"state": "switching", "by": f"U{i}"}
                    )
                    for i in range(50)
                )
            )
            assert sum(r.won for r in results) == 1
            creates = await asyncio.gather(*(stores[i % 5].create("claim:slot", {"i": i}) for i in range(50)))
            assert creates.count(True) == 1
        finally:
            for store in stores:
                await store.close()

    asyncio.run(main())


def test_memory_store_is_atomic_across_threads() -> None:
    store = MemoryStore()
    asyncio.run(store.put("change:1", {"state": "pending"}))
    barrier = threading.Barrier(8)

    def attempt(i: int) -> tuple[bool, bool]:
        if i < 8:
            barrier.wait()  # start the first wave together
        cas = asyncio.run(store.compare_and_set("change:1", "state", "pending", {"state": "done", "by": i}))
        created = asyncio.run(store.create("claim:x", {"by": i}))
        return cas.won, created

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(attempt, range(50)))
    assert sum(won for won, _ in results) == 1
    assert sum(created for _, created in results) == 1


# --------------------------------------------------------------------------------------------
# The audit trail as a hash chain: tampering is found, on both backends


Raw = list[tuple[str, dict[str, str]]]


def rewrite_trail(backend: Backend, store: Store, edit: Callable[[Raw], Raw]) -> None:
    """Change the stored trail behind the bot's back, as someone with access to the store could:
    in Redis with plain stream commands (XRANGE, DEL, XADD with the original ids), in the
    embedded store by editing its list."""
    if isinstance(store, MemoryStore):
        store._audit_log[:] = edit([(i, dict(f)) for i, f in store._audit_log])
        return
    client = backend.redis.client()
    key = "payflow:audit"
    entries = edit([(i, dict(f)) for i, f in client.xrange(key)])
    client.delete(key)
    for entry_id, fields in entries:
        client.xadd(key, fields, id=entry_id)


def delete_entry(backend: Backend, store: Store, entry_id: str) -> None:
    if isinstance(store, MemoryStore):
        store._audit_log[:] = [(i, f) for i, f in store._audit_log if i != entry_id]
    else:
        assert backend.redis.client().xdel("payflow:audit", entry_id) == 1


async def fill(store: Store, n: int, start: int = 0) -> list[str]:
    return [
        await store.append_audit(AuditEntry(f"U{i}", "scale", "ok", target="api", detail=f"#{i}"))
        for i in range(start, start + n)
    ]


def test_every_entry_links_to_the_one_before(backend: Backend) -> None:
    async def body(store: Store) -> None:
        assert (await store.verify_audit()).ok
        ids = await fill(store, 5)
        newest = await store.audit(limit=5)
        oldest_first = newest[::-1]
        assert [e.id for e in oldest_first] == ids
        assert [e.seq for e in oldest_first] == [1, 2, 3, 4, 5]
        assert oldest_first[0].prev == GENESIS
        for before, after in itertools.pairwise(oldest_first):
            assert after.prev == before.hash
        raw = [item async for item in store.export_audit()]
        assert [i for i, _ in raw] == ids
        assert all(chain_hash(f) == f["hash"] for _, f in raw)
        verdict = await store.verify_audit()
        assert (verdict.ok, verdict.checked, verdict.first_seq, verdict.last_seq) == (True, 5, 1, 5)
        assert "5 entries, #1–#5, chain intact" in verdict.report()

    backend.run(body)


def test_verify_names_an_edited_entry(backend: Backend) -> None:
    async def body(store: Store) -> None:
        ids = await fill(store, 5)

        def edit(entries: Raw) -> Raw:
            entries[2][1]["detail"] = "#2 (nothing to see)"
            return entries

        rewrite_trail(backend, store, edit)
        verdict = await store.verify_audit()
        assert (verdict.ok, verdict.broken_id, verdict.checked) == (False, ids[2], 2)
        assert "does not match its hash: it was altered" in verdict.report()
        assert ids[2] in verdict.report()

    backend.run(body)


def test_verify_finds_an_edit_whose_hash_was_recomputed(backend: Backend) -> None:
    async def body(store: Store) -> None:
        ids = await fill(store, 5)

        def edit(entries: Raw) -> Raw:
            entries[1][1]["outcome"] = "denied"
            entries[1][1]["hash"] = chain_hash(entries[1][1])
            return entries

        rewrite_trail(backend, store, edit)
        verdict = await store.verify_audit()
        assert (verdict.ok, verdict.broken_id) == (False, ids[2])
        assert f"prev-hash does not match entry {ids[1]}" in (verdict.problem or "")

    backend.run(body)


def test_verify_finds_deleted_entries(backend: Backend) -> None:
    async def body(store: Store) -> None:
        ids = await fill(store, 6)
        delete_entry(backend, store, ids[2])
        verdict = await store.verify_audit()
        assert (verdict.ok, verdict.broken_id) == (False, ids[3])
        assert "1 entry before it (#3) are missing: deleted" in (verdict.problem or "")

    backend.run(body)


def test_verify_finds_the_newest_entry_deleted(backend: Backend) -> None:
    async def body(store: Store) -> None:
        ids = await fill(store, 3)
        delete_entry(backend, store, ids[-1])
        verdict = await store.verify_audit()
        assert (verdict.ok, verdict.broken_id) == (False, ids[-1])
        assert "the newest 1 entry (up to #3) are missing" in (verdict.problem or "")

    backend.run(body)


def test_verify_finds_the_first_entry_replaced(backend: Backend) -> None:
    async def body(store: Store) -> None:
        ids = await fill(store, 3)

        def edit(entries: Raw) -> Raw:  # a forged first entry, correctly hashed from GENESIS
            entries[0][1]["actor"] = "U-nobody"
            entries[0][1]["hash"] = chain_hash(entries[0][1])
            return entries

        rewrite_trail(backend, store, edit)
        verdict = await store.verify_audit()
        assert (verdict.ok, verdict.broken_id) == (False, ids[1])

    backend.run(body)


def test_concurrent_appends_make_one_valid_chain(backend: Backend) -> None:
    """250 at once from one process: none starves racing the others for the chain's tip."""

    async def body(store: Store) -> None:
        await asyncio.gather(*(store.append_audit(AuditEntry(f"U{i}", "status", "ok")) for i in range(250)))
        verdict = await store.verify_audit()
        assert (verdict.ok, verdict.checked, verdict.last_seq) == (True, 250, 250), verdict.report()

    backend.run(body)


def test_two_replicas_appending_at_once_make_one_valid_chain(fresh_redis: RedisServer) -> None:
    """Two bot processes' stores (separate connections, separate cached tips), racing."""

    async def main() -> None:
        async with RedisStore(fresh_redis.url) as one, RedisStore(fresh_redis.url) as two:
            await one.append_audit(AuditEntry("U0", "status", "ok"))  # `two` starts with a stale tip
            await asyncio.gather(
                *(
                    (one if i % 2 else two).append_audit(AuditEntry(f"U{i}", "status", "ok"))
                    for i in range(1, 101)
                )
            )
            verdict = await two.verify_audit()
            assert (verdict.ok, verdict.checked) == (True, 101), verdict.report()
            seqs = [e.seq for e in await one.audit(limit=101)]
            assert sorted(seqs) == list(range(1, 102))

    asyncio.run(main())


def test_memory_store_chain_holds_across_threads() -> None:
    store = MemoryStore()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(
            pool.map(
                lambda i: asyncio.run(store.append_audit(AuditEntry(f"U{i}", "status", "ok"))), range(80)
            )
        )
    verdict = asyncio.run(store.verify_audit())
    assert (verdict.ok, verdict.checked) == (True, 80)


def test_export_then_trim_keeps_the_chain_verifiable(backend: Backend) -> None:
    async def body(store: Store) -> None:
        ids = await fill(store, 10)
        later = datetime.now(UTC) + timedelta(minutes=1)
        assert await store.trim_audit(later) == 0  # nothing exported yet: nothing may go
        exported = [item async for item in store.export_audit()]
        assert [i for i, _ in exported] == ids
        assert await store.mark_audit_exported(ids[0], ids[5])  # the pipeline took the first six
        assert await store.trim_audit(later) == 6  # only exported entries go
        kept = await store.audit(limit=50)
        assert [e.id for e in kept] == ids[6:][::-1]
        verdict = await store.verify_audit()
        assert (verdict.ok, verdict.first_seq, verdict.last_seq, verdict.checked) == (True, 7, 10, 4)
        more = await fill(store, 2, start=10)
        assert [i async for i, _ in store.export_audit()] == ids[6:] + more  # from the watermark
        assert (await store.verify_audit()).ok
        delete_entry(backend, store, ids[6])  # the first kept entry: the anchor still catches it
        verdict = await store.verify_audit()
        assert (verdict.ok, verdict.broken_id) == (False, ids[7])

    backend.run(body)


def test_trim_keeps_entries_inside_the_window(backend: Backend) -> None:
    async def body(store: Store) -> None:
        ids = await fill(store, 4)
        assert await store.mark_audit_exported(ids[0], ids[-1])
        assert await store.trim_audit(datetime.now(UTC) - timedelta(days=1)) == 0  # all too young
        assert len(await store.audit()) == 4

    backend.run(body)


def test_the_export_watermark_never_skips_an_entry(backend: Backend) -> None:
    async def body(store: Store) -> None:
        ids = await fill(store, 6)
        later = datetime.now(UTC) + timedelta(minutes=1)
        assert not await store.mark_audit_exported(ids[2], ids[4])  # #1, #2 were never exported
        assert await store.trim_audit(later) == 0
        assert await store.mark_audit_exported(ids[0], ids[1])
        assert await store.mark_audit_exported(ids[1], ids[3])  # overlapping is fine
        assert not await store.mark_audit_exported(ids[0], ids[2])  # never moves back
        assert await store.trim_audit(later) == 4
        assert [e.id for e in await store.audit()] == ids[4:][::-1]
        with pytest.raises(ValueError, match="not an audit entry id"):
            await store.mark_audit_exported("yesterday", ids[0])
        since = [i async for i, _ in store.export_audit(since=datetime.now(UTC) - timedelta(hours=1))]
        assert since == ids[4:]

    backend.run(body)


def test_audit_detail_is_redacted_before_it_is_hashed_and_exported(backend: Backend) -> None:
    lines: list[str] = []

    async def body(store: Store) -> None:
        store.audit_sink = lines.append
        await store.append_audit(AuditEntry("U1", "deploy", "refused", detail="card 4111 1111 1111 1111"))
        [entry] = await store.audit()
        assert "4111" not in entry.detail and "REDACTED" in entry.detail
        assert (await store.verify_audit()).ok

    backend.run(body)
    [line] = lines
    data = json.loads(line)
    assert "4111" not in line and data["seq"] == "1" and data["prev"] == GENESIS
    assert chain_hash({k: v for k, v in data.items() if k != "id"}) == data["hash"]


def test_entries_from_before_the_chain_are_reported_not_failed(fresh_redis: RedisServer) -> None:
    client = fresh_redis.client()
    legacy = AuditEntry("U1", "status", "ok")._fields()
    client.xadd("payflow:audit", legacy)

    async def main() -> None:
        async with RedisStore(fresh_redis.url) as store:
            await fill(store, 2)
            verdict = await store.verify_audit()
            assert (verdict.ok, verdict.checked, verdict.unchained) == (True, 2, 1)
            assert "1 older entries predate the chain" in verdict.report()
            assert len(await store.audit()) == 3

    asyncio.run(main())


# --------------------------------------------------------------------------------------------
# Expiry


def test_records_expire(backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.put("approval:1", {"state": "pending"}, ttl=0.2)
        assert await store.create("lock:api", {"owner": "U1"}, ttl=0.2)
        left = await store.ttl("approval:1")
        assert left is not None
        assert 0 <= left <= 0.2

        async def gone() -> bool:
            return await store.get("approval:1") is None and await store.get("lock:api") is None

        loop = asyncio.get_running_loop()  # the check runs on the store's loop, the wait beside it
        checked = lambda: asyncio.run_coroutine_threadsafe(gone(), loop).result(5)  # noqa: E731
        await asyncio.to_thread(wait_until, checked, 10, "both records expired")
        assert await store.ttl("approval:1") is None
        assert await store.scan("") == {}
        assert (await store.compare_and_set("approval:1", "state", "pending", {"state": "x"})).current is None
        assert await store.create("lock:api", {"owner": "U2"}, ttl=30)  # an expired lock can be taken

    backend.run(body)


def test_ttl_semantics(backend: Backend) -> None:
    async def left(store: Store, key: str) -> float | None:
        return await store.ttl(key)

    async def body(store: Store) -> None:
        assert await left(store, "absent") is None
        await store.put("k", {"v": 1})
        assert await left(store, "k") is None  # no expiry
        await store.put("k", {"v": 1}, ttl=60)
        assert 0 < (await left(store, "k") or 0) <= 60
        await store.put("k", {"v": 2}, ttl=KEEP_TTL)
        assert 0 < (await left(store, "k") or 0) <= 60
        assert await store.compare_and_set("k", "v", 2, {"v": 3}, ttl=KEEP_TTL)
        assert 0 < (await left(store, "k") or 0) <= 60
        assert await store.compare_and_set("k", "v", 3, {"v": 4}, ttl=5)
        assert 0 < (await left(store, "k") or 0) <= 5
        assert await store.compare_and_set("k", "v", 4, {"v": 5})
        assert await left(store, "k") is None  # ttl=None clears the expiry, like SET
        await store.put("k", {"v": 6}, ttl=KEEP_TTL)
        assert await left(store, "k") is None  # keeping "no expiry" keeps no expiry
        await store.put("j", {"v": 1}, ttl=60)
        await store.put("j", {"v": 2})
        assert await left(store, "j") is None

    backend.run(body)


def test_keep_ttl_still_expires(backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.put("approval:2", {"state": "pending"}, ttl=0.3)
        assert await store.compare_and_set("approval:2", "state", "pending", {"state": "seen"}, ttl=KEEP_TTL)

        async def gone() -> bool:
            return await store.get("approval:2") is None

        loop = asyncio.get_running_loop()  # the check runs on the store's loop, the wait beside it
        checked = lambda: asyncio.run_coroutine_threadsafe(gone(), loop).result(5)  # noqa: E731
        await asyncio.to_thread(
            wait_until, checked, 10, "the CAS-updated record expired on its original schedule"
        )

    backend.run(body)


# --------------------------------------------------------------------------------------------
# Delete and scan


def test_conditional_delete_only_by_owner(backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.create("lock:api", {"owner": "U1"}, ttl=60)
        assert await store.delete("lock:api", if_field="owner", equals="U2") is False
        assert await store.get("lock:api") == {"owner": "U1"}
        assert await store.delete("lock:api", if_field="owner", equals="U1") is True
        assert await store.get("lock:api") is None
        assert await store.delete("lock:api", if_field="owner", equals="U1") is False
        assert await store.delete("lock:api") is False
        await store.put("lock:api", {"owner": "U3"})
        assert await store.delete("lock:api") is True

    backend.run(body)


def test_scan_by_prefix(backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.append_audit(AuditEntry("U1", "status", "ok"))  # the audit trail is not a record
        await store.put("change:1", {"n": 1})
        await store.put("change:2", {"n": 2})
        await store.put("changes", {"n": 3})
        await store.put("lock:api", {"owner": "U1"})
        await store.put("odd*[x]?:1", {"n": 4})  # glob characters are literal in a prefix
        await store.put("oddA[x]?:1", {"n": 5})
        await store.put("oddAx?:1", {"n": 6})
        assert await store.scan("change:") == {"change:1": {"n": 1}, "change:2": {"n": 2}}
        assert await store.scan("odd*[x]?") == {"odd*[x]?:1": {"n": 4}}
        assert await store.scan("nothing:") == {}
        everything = await store.scan("")
        assert list(everything) == sorted(everything)  # same order on both backends
        assert set(everything) == {
            "change:1",
            "change:2",
            "changes",
            "lock:api",
            "odd*[x]?:1",
            "oddA[x]?:1",
            "oddAx?:1",
        }

    backend.run(body)


def test_index_keeps_order_bounds_and_removes(backend: Backend) -> None:
    """The ordered index behind the change sweep: newest first or oldest first, ties by member
    as Redis orders them, `keep` trims the lowest scores in the same step, a member moves."""

    async def body(store: Store) -> None:
        for i, member in enumerate(["a", "b", "c", "d", "e"]):
            await store.index_add("idx", member, float(i))
        await store.index_add("idx", "tie-1", 2.0)
        assert [m for m, _ in await store.index_range("idx", 10)] == ["e", "d", "tie-1", "c", "b", "a"]
        assert await store.index_range("idx", 2, newest_first=False) == [("a", 0.0), ("b", 1.0)]
        await store.index_add("idx", "a", 9.5)  # moved, not duplicated
        assert await store.index_range("idx", 1) == [("a", 9.5)]
        assert await store.index_remove("idx", "a") and not await store.index_remove("idx", "a")
        await store.index_add("idx", "f", 7.0, keep=3)
        assert [m for m, _ in await store.index_range("idx", 10)] == ["f", "e", "d"]
        assert await store.index_range("nothing", 5) == []
        await store.put("r:1", {"n": 1})
        await store.put("r:2", {"n": 2}, ttl=0.05)
        await asyncio.sleep(0.1)
        assert await store.get_many(["r:1", "r:2", "r:3", "r:1"]) == {"r:1": {"n": 1}}
        assert await store.get_many([]) == {}

    backend.run(body)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.index_add("idx", "m", float("nan")), "score must be a finite number"),
        (lambda s: s.index_add("idx", "m", True), "score must be a finite number"),
        (lambda s: s.index_add("idx", "m", 1.0, keep=0), "keep must be an integer from 1 to 10000"),
        (lambda s: s.index_add("", "m", 1.0), "index must be a non-empty string"),
        (lambda s: s.index_add("idx", "a b", 1.0), "member must not contain whitespace"),
        (lambda s: s.index_range("idx", 0), "limit must be an integer from 1 to 10000"),
        (lambda s: s.index_range("idx", 10_001), "limit must be an integer from 1 to 10000"),
        (lambda s: s.index_remove("idx", ""), "member must be a non-empty string"),
        (lambda s: s.get_many(["ok", "not ok"]), "key must not contain whitespace"),
        (lambda s: s.get_many("k"), "keys must be a list of at most 10000 keys"),
    ],
)
def test_index_inputs_are_refused_and_change_nothing(backend: Backend, call: Any, message: str) -> None:
    async def body(store: Store) -> None:
        await store.index_add("idx", "m", 1.0)
        with pytest.raises(ValueError, match=message):
            await call(store)
        assert await store.index_range("idx", 10) == [("m", 1.0)]

    backend.run(body)


def test_scan_returns_many_records(backend: Backend) -> None:
    async def body(store: Store) -> None:
        await asyncio.gather(*(store.put(f"change:{i}", {"i": i}) for i in range(1_234)))
        found = await store.scan("change:")
        assert found == {f"change:{i}": {"i": i} for i in range(1_234)}

    backend.run(body)


# --------------------------------------------------------------------------------------------
# Validation


def _circular() -> dict[str, Any]:
    value: dict[str, Any] = {}
    value["self"] = value
    return value


BAD_CALLS: list[tuple[str, Callable[[Store], Awaitable[Any]]]] = [
    ("empty key", lambda s: s.get("")),
    ("space in key", lambda s: s.get("change 1")),
    ("tab in key", lambda s: s.put("a\tb", {})),
    ("newline in key", lambda s: s.create("a\n", {})),
    ("control char in key", lambda s: s.ttl("a\x00b")),
    ("non-str key", lambda s: s.get(123)),  # type: ignore[arg-type]
    ("None key", lambda s: s.delete(None)),  # type: ignore[arg-type]
    ("long key", lambda s: s.get("k" * 513)),
    ("surrogate key", lambda s: s.get("\ud800")),
    ("list value", lambda s: s.put("k", [1])),  # type: ignore[arg-type]
    ("set inside", lambda s: s.put("k", {"a": {1, 2}})),
    ("nan inside", lambda s: s.put("k", {"a": float("nan")})),
    ("int dict key", lambda s: s.put("k", {1: "a"})),
    ("tuple inside", lambda s: s.create("k", {"a": (1, 2)})),
    ("datetime inside", lambda s: s.put("k", {"at": datetime.now(UTC)})),
    ("surrogate inside", lambda s: s.put("k", {"a": "\udc00"})),
    ("circular", lambda s: s.put("k", _circular())),
    ("too big", lambda s: s.put("k", {"a": "x" * 1_000_001})),
    ("zero ttl", lambda s: s.put("k", {}, ttl=0)),
    ("negative ttl", lambda s: s.create("k", {}, ttl=-1)),
    ("nan ttl", lambda s: s.put("k", {}, ttl=float("nan"))),
    ("inf ttl", lambda s: s.put("k", {}, ttl=float("inf"))),
    ("bool ttl", lambda s: s.put("k", {}, ttl=True)),
    ("str ttl", lambda s: s.put("k", {}, ttl="1")),  # type: ignore[arg-type]
    ("KEEP_TTL on create", lambda s: s.create("k", {}, ttl=KEEP_TTL)),  # type: ignore[arg-type]
    ("float expected", lambda s: s.compare_and_set("k", "f", 1.5, {})),  # type: ignore[arg-type]
    ("list expected", lambda s: s.compare_and_set("k", "f", [1], {})),  # type: ignore[arg-type]
    ("huge int expected", lambda s: s.compare_and_set("k", "f", 2**53, {})),
    ("empty field", lambda s: s.compare_and_set("k", "", "x", {})),
    ("bad cas value", lambda s: s.compare_and_set("k", "f", "x", {"a": object()})),
    ("equals without field", lambda s: s.delete("k", equals="U1")),
    ("empty if_field", lambda s: s.delete("k", if_field="", equals="U1")),
    ("float equals", lambda s: s.delete("k", if_field="owner", equals=0.5)),  # type: ignore[arg-type]
    ("space in prefix", lambda s: s.scan("a b")),
    ("None prefix", lambda s: s.scan(None)),  # type: ignore[arg-type]
    ("zero limit", lambda s: s.audit(limit=0)),
    ("huge limit", lambda s: s.audit(limit=MAX_AUDIT_LIMIT + 1)),
    ("bool limit", lambda s: s.audit(limit=True)),
    ("empty target", lambda s: s.audit(target="")),
    ("not an entry", lambda s: s.append_audit({"actor": "U1"})),  # type: ignore[arg-type]
]


async def _error_of(store: Store, call: Callable[[Store], Awaitable[Any]]) -> tuple[type, str]:
    try:
        await call(store)
    except Exception as exc:
        return type(exc), str(exc)
    return type(None), "no error"


@pytest.mark.parametrize("call", [c for _, c in BAD_CALLS], ids=[n for n, _ in BAD_CALLS])
def test_invalid_input_is_refused_identically(
    fresh_redis: RedisServer, call: Callable[[Store], Awaitable[Any]]
) -> None:
    async def main() -> None:
        # Nothing listens on port 1: validation must happen before any network I/O.
        dead = RedisStore("redis://127.0.0.1:1/0", timeout=0.2)
        async with MemoryStore() as memory, RedisStore(fresh_redis.url) as live, dead:
            errors = [await _error_of(s, call) for s in (memory, live, dead)]
        assert errors[0][0] is ValueError, errors[0]
        assert errors[0] == errors[1] == errors[2]

    asyncio.run(main())
    assert fresh_redis.client().keys("*") == []


# --------------------------------------------------------------------------------------------
# Lifecycle, outages and secrets


def _every_call() -> list[tuple[str, Callable[[Store], Awaitable[Any]]]]:
    return [
        ("ping", lambda s: s.ping()),
        ("append_audit", lambda s: s.append_audit(AuditEntry("U1", "scale", "ok"))),
        ("audit", lambda s: s.audit()),
        ("audit by target", lambda s: s.audit(target="api")),
        ("get", lambda s: s.get("k")),
        ("put", lambda s: s.put("k", {"v": 1})),
        ("create", lambda s: s.create("k2", {"v": 1})),
        ("compare_and_set", lambda s: s.compare_and_set("k", "v", 1, {"v": 2})),
        ("delete", lambda s: s.delete("k")),
        ("delete if owner", lambda s: s.delete("k", if_field="v", equals=2)),
        ("scan", lambda s: s.scan("")),
        ("ttl", lambda s: s.ttl("k")),
    ]


def test_closed_store_refuses(backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.close()
        await store.close()  # idempotent
        for _name, call in _every_call():
            with pytest.raises(StoreUnavailable, match="closed"):
                await call(store)

    backend.run(body)


def _assert_no_secret(exc: BaseException, secret: str) -> None:
    seen: BaseException | None = exc
    while seen is not None:
        for text in (str(seen), repr(seen)):
            assert secret not in text
            assert quote(secret, safe="") not in text
        seen = seen.__cause__ or seen.__context__


def test_outage_raises_unavailable_then_recovers(private_redis: RedisServer) -> None:
    async def main() -> None:
        async with RedisStore(private_redis.url, timeout=0.5) as store:
            await store.put("k", {"v": 1})
            await asyncio.gather(*(store.get("k") for _ in range(10)))  # several pooled connections
            assert SECRET not in repr(store)

            private_redis.stop()
            for name, call in _every_call():
                with pytest.raises(StoreUnavailable) as info:
                    await call(store)
                assert private_redis.address in str(info.value), name
                _assert_no_secret(info.value, SECRET)

            private_redis.start()  # same port, empty data; no retry loop in the test on purpose
            await store.ping()
            for _name, call in _every_call():
                await call(store)
            assert await store.get("k2") == {"v": 1}  # written after the restart

            private_redis.stop()
            await asyncio.sleep(0.1)  # idle, as a running bot would be: the loop sees the sockets close
            private_redis.start()  # restarted while idle: stale pooled connections are replaced
            results = await asyncio.gather(*(store.put(f"r:{i}", {"i": i}) for i in range(10)))
            assert results == [None] * 10
            assert len(await store.scan("r:")) == 10

    asyncio.run(main())


def test_wrong_password_is_unavailable_without_leaking_it(private_redis: RedisServer) -> None:
    wrong = "not-the-" + SECRET

    async def main() -> None:
        url = f"redis://:{quote(wrong, safe='')}@{private_redis.address}/0"
        async with RedisStore(url, timeout=0.5) as store:
            with pytest.raises(StoreUnavailable) as info:
                await store.ping()
        assert private_redis.address in str(info.value)
        _assert_no_secret(info.value, wrong)

    asyncio.run(main())


def test_unreachable_server_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before use: nothing listens there

    async def main() -> None:
        async with RedisStore(f"redis://:{quote(SECRET, safe='')}@127.0.0.1:{port}/0", timeout=0.5) as store:
            with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{port}") as info:
                await store.get("k")
        _assert_no_secret(info.value, SECRET)

    asyncio.run(main())


def test_unresponsive_server_times_out() -> None:
    """A peer that accepts TCP but never answers (hung host) must not hang the bot."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel completes handshakes; nobody ever reads or replies
        port = silent.getsockname()[1]

        async def main() -> None:
            async with RedisStore(f"redis://127.0.0.1:{port}/0", timeout=0.3) as store:
                with pytest.raises(StoreUnavailable, match="Timeout"):
                    await asyncio.wait_for(store.ping(), timeout=30)

        asyncio.run(main())


def test_keys_live_under_the_prefix(fresh_redis: RedisServer) -> None:
    async def main() -> None:
        async with (
            RedisStore(fresh_redis.url, prefix="t1:") as one,
            RedisStore(fresh_redis.url, prefix="t2:") as two,
        ):
            await one.put("audit", {"v": 1})  # cannot collide with the audit stream
            await one.append_audit(AuditEntry("U1", "status", "ok"))
            assert await two.get("audit") is None
            assert await two.audit() == []
            assert await one.get("audit") == {"v": 1}
            assert len(await one.audit()) == 1

    asyncio.run(main())
    assert sorted(fresh_redis.client().keys("*")) == ["t1:audit", "t1:audit:chain", "t1:rec:audit"]


def test_open_store_picks_the_backend(fresh_redis: RedisServer) -> None:
    assert isinstance(open_store(None), MemoryStore)
    assert isinstance(open_store("  "), MemoryStore)

    async def main() -> None:
        async with open_store(fresh_redis.url) as store:
            assert isinstance(store, RedisStore)
            await store.ping()

    asyncio.run(main())
    with pytest.raises(ValueError, match="redis://") as info:
        open_store(f"http://user:{SECRET}@example.com")
    _assert_no_secret(info.value, SECRET)
