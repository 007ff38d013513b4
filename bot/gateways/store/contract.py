"""The store's contract: `Store`, whose public methods validate every input (before touching
the backend, so a bad call fails the same way whether or not Redis is reachable) and then call
the ``_`` primitives that each backend implements.

TTL semantics (`put`, `create`, `compare_and_set`): a number is seconds until the record
expires (rounded up to whole milliseconds); ``None`` means "no expiry" and clears any earlier
one, exactly like Redis ``SET``; `KEEP_TTL` keeps whatever expiry the record already had
(``SET ... KEEPTTL``), e.g. to move a pending approval along without extending its life.
"""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, Self

from bot.base.redact import redact
from bot.gateways.store.audit import AuditEntry, AuditVerdict, audit_line, id_key, verify_chain
from bot.gateways.store.checks import (
    check_count,
    check_expected,
    check_field,
    check_key,
    check_limit,
    check_prefix,
    check_score,
    decode_record,
    encode_record,
    to_ttl_ms,
)
from bot.gateways.store.values import (
    AUDIT_BATCH,
    AUDIT_SCAN_CAP,
    MAX_INDEX_READ,
    CasResult,
    Expected,
    KeepTtl,
    StoreUnavailable,
    Ttl,
)


class Store(ABC):
    """The async store contract. Public methods validate, subclasses implement the ``_`` ones."""

    def __init__(self, *, audit_scan_cap: int = AUDIT_SCAN_CAP) -> None:
        if isinstance(audit_scan_cap, bool) or not isinstance(audit_scan_cap, int) or audit_scan_cap < 1:
            raise ValueError("audit_scan_cap must be a positive integer")
        self.audit_scan_cap = audit_scan_cap
        self._closed = False
        # Called with each entry's exported line once it is stored (`AUDIT_STDOUT`): a log
        # pipeline then has every entry even if this store is lost before an export.
        self.audit_sink: Callable[[str], None] | None = None

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable(f"{self.describe()} is closed")

    @abstractmethod
    def describe(self) -> str:
        """Where the data lives, for logs and error messages; never contains a secret."""

    async def ping(self) -> None:
        """Raise `StoreUnavailable` unless the store answers; call it at startup."""
        self._check_open()
        await self._ping()

    async def append_audit(self, entry: AuditEntry) -> str:
        """Append ``entry`` (its ``id`` and chain fields are ignored) as the chain's next link and
        return the id it was stored under. ``detail`` is redacted first: the trail is exported to
        logs verbatim, and the hash must cover exactly what is kept."""
        if not isinstance(entry, AuditEntry):
            raise ValueError("entry must be an AuditEntry")
        self._check_open()
        content = entry._fields()
        content["detail"] = redact(content["detail"])
        entry_id, fields = await self._append_chained(content)
        if self.audit_sink is not None:
            self.audit_sink(audit_line(entry_id, fields))
        return entry_id

    async def verify_audit(self) -> AuditVerdict:
        """Walk the kept window oldest first and check every link: each entry's hash matches its
        content, its seq follows the one before, its prev is that entry's hash; the window starts
        at the anchor (or `GENESIS`) and ends at the recorded tip (so a deleted newest entry shows).

        Trimming while a verification runs can make it report entries missing: run it again."""
        self._check_open()
        return await verify_chain(self._audit_page)

    async def export_audit(
        self, *, since: datetime | None = None, batch: int = AUDIT_BATCH
    ) -> AsyncIterator[tuple[str, dict[str, str]]]:
        """Entries oldest first as (id, stored fields): from ``since`` when given, else from the
        first entry not yet marked exported. Write them out, then `mark_audit_exported`."""
        if since is not None and (not isinstance(since, datetime) or since.utcoffset() is None):
            raise ValueError("since must be a timezone-aware datetime")
        self._check_open()
        if since is not None:
            start = f"{max(0, math.floor(since.timestamp() * 1000))}-0"
        else:
            _, meta = await self._audit_page("-", 1, with_meta=True)
            done = meta.get("exported_id")
            start = "(" + done if done else "-"
        while True:
            page, _ = await self._audit_page(start, batch, with_meta=False)
            for item in page:
                yield item
            if len(page) < batch:
                return
            start = "(" + page[-1][0]

    async def mark_audit_exported(self, first_id: str, last_id: str) -> bool:
        """Record that entries ``first_id``..``last_id`` are safely in the log pipeline. The
        watermark moves only when nothing before ``first_id`` is left unexported (an export that
        skipped entries must not let `trim_audit` drop them). True if it moved."""
        for value in (first_id, last_id):
            if not isinstance(value, str) or not re.fullmatch(r"\d+-\d+", value):
                raise ValueError(f"not an audit entry id: {value!r}")
        if id_key(first_id) > id_key(last_id):
            raise ValueError("first_id comes after last_id")
        self._check_open()
        return await self._mark_exported(first_id, last_id)

    async def trim_audit(self, before: datetime) -> int:
        """Drop entries older than ``before`` that are exported (never one that is not), keeping
        the chain verifiable: the last dropped entry's seq and hash become the anchor. Returns how
        many were dropped."""
        if not isinstance(before, datetime) or before.utcoffset() is None:
            raise ValueError("before must be a timezone-aware datetime")
        self._check_open()
        _, meta = await self._audit_page("-", 1, with_meta=True)
        done = meta.get("exported_id")
        if not done:
            return 0
        ms, seq = id_key(done)
        limit = min((ms, seq + 1), (max(0, math.floor(before.timestamp() * 1000)), 0))
        return await self._trim(f"{limit[0]}-{limit[1]}")

    async def audit(self, *, target: str | None = None, limit: int = 10) -> list[AuditEntry]:
        """Newest entries first, optionally only those for ``target``.

        A filtered read looks at no more than ``audit_scan_cap`` newest entries, so a rare
        target costs a bounded amount of work and may come back short.
        """
        limit = check_limit(limit)
        if target is not None and (not isinstance(target, str) or not target):
            raise ValueError("target must be a non-empty string or None")
        self._check_open()
        return await self._audit(target, limit)

    async def get(self, key: str) -> dict[str, Any] | None:
        """The record at ``key``, or None if absent or expired."""
        check_key(key)
        self._check_open()
        return await self._get(key)

    async def put(self, key: str, value: dict[str, Any], ttl: Ttl = None) -> None:
        """Overwrite unconditionally; see the module docstring for ``ttl``."""
        check_key(key)
        text = encode_record(value)
        ttl_ms = to_ttl_ms(ttl)
        self._check_open()
        await self._put(key, text, ttl_ms)

    async def create(self, key: str, value: dict[str, Any], ttl: float | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent (atomic); True if this call created it."""
        check_key(key)
        text = encode_record(value)
        ttl_ms = to_ttl_ms(ttl)
        if isinstance(ttl_ms, KeepTtl):
            raise ValueError("KEEP_TTL makes no sense when creating a record")
        self._check_open()
        return await self._create(key, text, ttl_ms)

    async def compare_and_set(
        self, key: str, field: str, expected: Expected, value: dict[str, Any], ttl: Ttl = None
    ) -> CasResult:
        """Atomically replace the record with ``value`` iff it exists and ``record[field]`` equals
        ``expected`` (typed comparison, see `Expected`). Never creates a record: use `create`.
        """
        check_key(key)
        check_field(field)
        check_expected(expected)
        text = encode_record(value)
        ttl_ms = to_ttl_ms(ttl)
        self._check_open()
        won, current_text = await self._compare_and_set(key, field, expected, text, ttl_ms)
        if won:
            return CasResult(True, json.loads(text))
        return CasResult(False, None if current_text is None else decode_record(key, current_text))

    async def delete(self, key: str, *, if_field: str | None = None, equals: Expected = None) -> bool:
        """Delete ``key``; with ``if_field`` only when ``record[if_field]`` equals ``equals``
        (a lock is released only by its owner). True if this call deleted it.
        """
        check_key(key)
        if if_field is None:
            if equals is not None:
                raise ValueError("equals needs if_field")
        else:
            check_field(if_field)
            check_expected(equals)
        self._check_open()
        return await self._delete(key, if_field, equals)

    async def scan(self, prefix: str) -> dict[str, dict[str, Any]]:
        """All live records whose key starts with ``prefix`` ("" = all), in key order.

        Not a snapshot: records changed during the scan may appear in either state.
        """
        prefix = check_prefix(prefix)
        self._check_open()
        return await self._scan(prefix)

    async def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The live records among ``keys`` (at most `MAX_INDEX_READ`), in one round trip per
        batch; absent or expired keys are left out."""
        if not isinstance(keys, list | tuple) or len(keys) > MAX_INDEX_READ:
            raise ValueError(f"keys must be a list of at most {MAX_INDEX_READ} keys")
        for key in keys:
            check_key(key)
        self._check_open()
        return await self._get_many(list(dict.fromkeys(keys))) if keys else {}

    async def index_add(self, index: str, member: str, score: float, *, keep: int | None = None) -> None:
        """Put ``member`` in the ordered ``index`` at ``score`` (moving it if already there). With
        ``keep``, only the ``keep`` highest-scored members stay (one atomic step): a bounded
        "newest N". An index never expires; its members name records that may."""
        check_key(index, "index")
        check_key(member, "member")
        score = check_score(score)
        if keep is not None:
            check_count(keep, "keep", MAX_INDEX_READ)
        self._check_open()
        await self._index_add(index, member, score, keep)

    async def index_remove(self, index: str, member: str) -> bool:
        """Take ``member`` out of ``index``; True if it was there."""
        check_key(index, "index")
        check_key(member, "member")
        self._check_open()
        return await self._index_remove(index, member)

    async def index_range(
        self, index: str, limit: int, *, newest_first: bool = True
    ) -> list[tuple[str, float]]:
        """Up to ``limit`` (member, score) of ``index``: highest scores first, or lowest first.
        Ties go by member (reversed when highest first), as Redis orders a sorted set."""
        check_key(index, "index")
        check_count(limit, "limit", MAX_INDEX_READ)
        if not isinstance(newest_first, bool):
            raise ValueError("newest_first must be a bool")
        self._check_open()
        return await self._index_range(index, limit, newest_first)

    async def ttl(self, key: str) -> float | None:
        """Seconds until ``key`` expires; None if it has no expiry or does not exist."""
        check_key(key)
        self._check_open()
        return await self._ttl(key)

    async def close(self) -> None:
        """Release connections; further calls raise `StoreUnavailable`. Idempotent."""
        if not self._closed:
            self._closed = True
            await self._close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"

    # -- backend primitives; inputs are already validated and encoded --------------------------

    @abstractmethod
    async def _ping(self) -> None: ...

    @abstractmethod
    async def _append_chained(self, content: dict[str, str]) -> tuple[str, dict[str, str]]:
        """Atomically append ``content`` + seq/prev/hash after the current tip: (id, fields)."""

    @abstractmethod
    async def _audit_page(
        self, start: str, count: int, *, with_meta: bool
    ) -> tuple[list[tuple[str, dict[str, str]]], dict[str, str]]:
        """Up to ``count`` entries from ``start`` ("-", an id, or "(" + id for after it), oldest
        first, and (read in the same atomic step when ``with_meta``) the chain's metadata:
        tip_*, anchor_*, exported_id."""

    @abstractmethod
    async def _mark_exported(self, first_id: str, last_id: str) -> bool: ...

    @abstractmethod
    async def _trim(self, limit_id: str) -> int:
        """Drop entries with id < ``limit_id``, anchoring at the last one dropped."""

    @abstractmethod
    async def _audit(self, target: str | None, limit: int) -> list[AuditEntry]: ...

    @abstractmethod
    async def _get(self, key: str) -> dict[str, Any] | None: ...

    @abstractmethod
    async def _put(self, key: str, text: str, ttl_ms: int | KeepTtl | None) -> None: ...

    @abstractmethod
    async def _create(self, key: str, text: str, ttl_ms: int | None) -> bool: ...

    @abstractmethod
    async def _compare_and_set(
        self, key: str, field: str, expected: Expected, text: str, ttl_ms: int | KeepTtl | None
    ) -> tuple[bool, str | None]:
        """(won, current JSON text when lost)."""

    @abstractmethod
    async def _delete(self, key: str, if_field: str | None, equals: Expected) -> bool: ...

    @abstractmethod
    async def _scan(self, prefix: str) -> dict[str, dict[str, Any]]: ...

    @abstractmethod
    async def _ttl(self, key: str) -> float | None: ...

    @abstractmethod
    async def _get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]: ...

    @abstractmethod
    async def _index_add(self, index: str, member: str, score: float, keep: int | None) -> None: ...

    @abstractmethod
    async def _index_remove(self, index: str, member: str) -> bool: ...

    @abstractmethod
    async def _index_range(self, index: str, limit: int, newest_first: bool) -> list[tuple[str, float]]: ...

    @abstractmethod
    async def _close(self) -> None: ...
