"""The embedded backend: the store used when ``REDIS_URL`` is unset (console, one replica)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from bot.gateways.store.audit import GENESIS, AuditEntry, id_key, link
from bot.gateways.store.checks import decode_record, matches
from bot.gateways.store.contract import Store
from bot.gateways.store.values import AUDIT_SCAN_CAP, KEEP_TTL, Expected, KeepTtl

_SWEEP_EVERY: Final = 1_000  # writes between sweeps of expired records


class MemoryStore(Store):
    """The embedded store: one process, nothing survives a restart.

    All state changes happen under a `threading.Lock` (never held across an ``await``), so it is
    atomic for concurrent tasks and also for callers on worker threads. Expiry uses a monotonic
    clock (injectable for tests) so wall-clock jumps cannot resurrect or kill records.
    """

    def __init__(
        self, *, audit_scan_cap: int = AUDIT_SCAN_CAP, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(audit_scan_cap=audit_scan_cap)
        self._clock = clock
        self._lock = threading.Lock()
        self._records: dict[str, tuple[str, float | None]] = {}  # key -> (JSON, expires_at)
        self._audit_log: list[tuple[str, dict[str, str]]] = []  # (id, stored fields), oldest first
        self._audit_meta: dict[str, str] = {}  # tip_*, anchor_*, exported_id: as in Redis
        self._indexes: dict[str, dict[str, float]] = {}  # index -> member -> score (a sorted set)
        self._last_id = (0, -1)
        self._writes = 0

    def describe(self) -> str:
        return "in-memory store"

    def _live(self, key: str, now: float) -> tuple[str, float | None] | None:
        item = self._records.get(key)
        if item is not None and item[1] is not None and now >= item[1]:
            del self._records[key]
            return None
        return item

    def _wrote(self, now: float) -> None:
        """Drop expired records now and then, so never-read claims do not pile up forever."""
        self._writes += 1
        if self._writes % _SWEEP_EVERY == 0:
            for key in [k for k, (_, exp) in self._records.items() if exp is not None and now >= exp]:
                del self._records[key]

    def _expiry(self, ttl_ms: int | KeepTtl | None, now: float, old: float | None) -> float | None:
        if ttl_ms is KEEP_TTL:
            return old
        return None if ttl_ms is None else now + ttl_ms / 1000

    async def _ping(self) -> None:
        return None

    async def _append_chained(self, content: dict[str, str]) -> tuple[str, dict[str, str]]:
        with self._lock:  # the lock makes read-tip, link, append one atomic step
            meta = self._audit_meta
            (fields,) = link([content], meta.get("tip_hash", GENESIS), int(meta.get("tip_seq", 0)))
            # Same "ms-seq" shape and monotonicity as a Redis stream id.
            ms, seq = int(time.time() * 1000), 0
            last_ms, last_seq = self._last_id
            if ms <= last_ms:
                ms, seq = last_ms, last_seq + 1
            self._last_id = (ms, seq)
            entry_id = f"{ms}-{seq}"
            self._audit_log.append((entry_id, fields))
            meta.update(tip_hash=fields["hash"], tip_seq=fields["seq"], tip_id=entry_id)
            return entry_id, fields

    async def _audit(self, target: str | None, limit: int) -> list[AuditEntry]:
        with self._lock:
            newest = self._audit_log[-self.audit_scan_cap :]
        found: list[AuditEntry] = []
        for entry_id, fields in reversed(newest):
            if target is None or fields.get("target") == target:
                found.append(AuditEntry._from_fields(entry_id, fields))
                if len(found) == limit:
                    break
        return found

    async def _audit_page(
        self, start: str, count: int, *, with_meta: bool
    ) -> tuple[list[tuple[str, dict[str, str]]], dict[str, str]]:
        with self._lock:
            if start == "-":
                chosen = self._audit_log[:count]
            else:
                after = start.startswith("(")
                key = id_key(start.lstrip("("))
                chosen = [
                    (i, dict(f))
                    for i, f in self._audit_log
                    if (id_key(i) > key if after else id_key(i) >= key)
                ][:count]
            return [(i, dict(f)) for i, f in chosen], dict(self._audit_meta) if with_meta else {}

    async def _mark_exported(self, first_id: str, last_id: str) -> bool:
        with self._lock:
            done = self._audit_meta.get("exported_id")
            floor = id_key(done) if done else (-1, -1)
            first = id_key(first_id)
            if any(floor < id_key(i) < first for i, _ in self._audit_log):
                return False  # unexported entries before first_id
            if done and id_key(last_id) <= floor:
                return False
            self._audit_meta["exported_id"] = last_id
            return True

    async def _trim(self, limit_id: str) -> int:
        with self._lock:
            limit = id_key(limit_id)
            cut = 0
            while cut < len(self._audit_log) and id_key(self._audit_log[cut][0]) < limit:
                cut += 1
            if not cut:
                return 0
            last_id, last = self._audit_log[cut - 1]
            if "hash" in last and "seq" in last:
                self._audit_meta.update(anchor_hash=last["hash"], anchor_seq=last["seq"], anchor_id=last_id)
            else:
                self._audit_meta["anchor_id"] = last_id
            del self._audit_log[:cut]
            return cut

    async def _get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            item = self._live(key, self._clock())
        return None if item is None else decode_record(key, item[0])

    async def _put(self, key: str, text: str, ttl_ms: int | KeepTtl | None) -> None:
        with self._lock:
            now = self._clock()
            old = self._live(key, now)
            self._records[key] = (text, self._expiry(ttl_ms, now, old[1] if old else None))
            self._wrote(now)

    async def _create(self, key: str, text: str, ttl_ms: int | None) -> bool:
        with self._lock:
            now = self._clock()
            if self._live(key, now) is not None:
                return False
            self._records[key] = (text, self._expiry(ttl_ms, now, None))
            self._wrote(now)
            return True

    async def _compare_and_set(
        self, key: str, field: str, expected: Expected, text: str, ttl_ms: int | KeepTtl | None
    ) -> tuple[bool, str | None]:
        with self._lock:
            now = self._clock()
            item = self._live(key, now)
            if item is None:
                return False, None
            if not matches(decode_record(key, item[0]), field, expected):
                return False, item[0]
            self._records[key] = (text, self._expiry(ttl_ms, now, item[1]))
            return True, None

    async def _delete(self, key: str, if_field: str | None, equals: Expected) -> bool:
        with self._lock:
            item = self._live(key, self._clock())
            if item is None:
                return False
            if if_field is not None and not matches(decode_record(key, item[0]), if_field, equals):
                return False
            del self._records[key]
            return True

    async def _scan(self, prefix: str) -> dict[str, dict[str, Any]]:
        with self._lock:
            now = self._clock()
            keys = sorted(k for k in self._records if k.startswith(prefix))
            texts = {k: item[0] for k in keys if (item := self._live(k, now)) is not None}
        return {k: decode_record(k, t) for k, t in texts.items()}

    async def _ttl(self, key: str) -> float | None:
        with self._lock:
            now = self._clock()
            item = self._live(key, now)
        if item is None or item[1] is None:
            return None
        return max(0.0, math.floor((item[1] - now) * 1000) / 1000)

    async def _get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        with self._lock:
            now = self._clock()
            texts = {k: item[0] for k in keys if (item := self._live(k, now)) is not None}
        return {k: decode_record(k, t) for k, t in texts.items()}

    def _ordered(self, index: str) -> list[tuple[str, float]]:
        return sorted(self._indexes.get(index, {}).items(), key=lambda ms: (ms[1], ms[0]))

    async def _index_add(self, index: str, member: str, score: float, keep: int | None) -> None:
        with self._lock:
            members = self._indexes.setdefault(index, {})
            members[member] = score
            if keep is not None and len(members) > keep:
                for old, _ in self._ordered(index)[: len(members) - keep]:
                    del members[old]

    async def _index_remove(self, index: str, member: str) -> bool:
        with self._lock:
            members = self._indexes.get(index, {})
            found = members.pop(member, None) is not None
            if not members:
                self._indexes.pop(index, None)
            return found

    async def _index_range(self, index: str, limit: int, newest_first: bool) -> list[tuple[str, float]]:
        with self._lock:
            ordered = self._ordered(index)
        return (ordered[::-1] if newest_first else ordered)[:limit]

    async def _close(self) -> None:
        return None
