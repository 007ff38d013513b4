"""Durable state for the bot: the audit trail and the small JSON records behind approvals,
blue-green changes, service locks and "post this slot once" claims.

Two backends share one contract so that code (and tests) cannot tell them apart:

* `RedisStore` — production; safe with several bot replicas because every read-modify-write is
  one Redis command or one Lua script, never a Python-side "read, decide, write".
* `MemoryStore` — the embedded store used when ``REDIS_URL`` is unset (console, one replica).

Every public method validates its inputs *before* touching the backend (in `Store`, shared by
both), so a bad call raises the same ``ValueError`` whether or not Redis is reachable.

The audit trail is a hash chain (PCI DSS 10.5: it cannot be altered unnoticed). Each entry is
stored as flat string fields — its content, ``seq`` (1, 2, 3, …) and ``prev`` (the previous
entry's hash; `GENESIS` for #1) — plus ``hash`` = SHA-256 of the canonical serialization of
every stored field except ``hash`` itself (a JSON object, keys sorted, no whitespace, UTF-8:
`chain_hash`). Appends are compare-and-set on the chain's tip (one Lua script in Redis, the
lock in memory), so two replicas appending at once still make one valid chain. Entries leave
for a log pipeline with `Store.export_audit`; `Store.trim_audit` then drops exported entries
older than the window, anchoring the chain at the last dropped entry's hash.

TTL semantics (`put`, `create`, `compare_and_set`): a number is seconds until the record
expires (rounded up to whole milliseconds); ``None`` means "no expiry" and clears any earlier
one, exactly like Redis ``SET``; `KEEP_TTL` keeps whatever expiry the record already had
(``SET ... KEEPTTL``), e.g. to move a pending approval along without extending its life.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Final, Literal, Self
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from bot.base.redact import redact

__all__ = [
    "AUDIT_SCAN_CAP",
    "GENESIS",
    "KEEP_TTL",
    "MAX_AUDIT_LIMIT",
    "AuditEntry",
    "AuditVerdict",
    "CasResult",
    "Expected",
    "MemoryStore",
    "RedisStore",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Ttl",
    "chain_hash",
    "open_store",
]

AUDIT_SCAN_CAP: Final = 10_000
"""Default number of newest audit entries a filtered `Store.audit` looks through at most."""
MAX_AUDIT_LIMIT: Final = 1_000
MAX_KEY_LENGTH: Final = 512
MAX_RECORD_BYTES: Final = 1_000_000
MAX_TTL_SECONDS: Final = 366 * 86_400
_MAX_EXACT_INT: Final = 2**53 - 1  # Lua numbers are doubles: beyond this, equality lies
_AUDIT_BATCH: Final = 500
_SCAN_BATCH: Final = 500
_SWEEP_EVERY: Final = 1_000  # MemoryStore writes between sweeps of expired records
GENESIS: Final = "0" * 64
"""The ``prev`` of the chain's first entry."""
_CHAIN_FIELDS: Final = ("seq", "prev", "hash")
_APPEND_TRIES: Final = 100  # lost tip races before an append gives up (each is one round trip)
_APPEND_BATCH: Final = 100  # entries linked per round trip (group commit)


class StoreError(Exception):
    """The store answered, but not as the contract expects (corrupt record, server-side bug)."""


class StoreUnavailable(StoreError):
    """The store cannot be reached; callers must refuse to act, never assume.

    ``brief`` names the dependency and what happened, fit to show a user (no address, no secret).
    """

    def __init__(self, message: str, *, brief: str = "The bot's store is unreachable"):
        super().__init__(message)
        self.brief = brief


class _KeepTtl(Enum):
    KEEP_TTL = "KEEP_TTL"

    def __repr__(self) -> str:
        return "KEEP_TTL"


KEEP_TTL: Final = _KeepTtl.KEEP_TTL
"""Pass as ``ttl`` to keep the record's current expiry (or lack of one) unchanged."""

Ttl = float | Literal[_KeepTtl.KEEP_TTL] | None
Expected = str | int | bool | None
"""What `compare_and_set` / `delete` may compare a field against.

Floats, lists and dicts are refused: float equality is unreliable, and structures would need a
canonical encoding that Python and Lua agree on. ``None`` matches a field that is JSON ``null``
*or* absent. Types never mix: ``True`` does not match ``1`` and ``"1"`` does not match ``1``
(but ``1`` matches ``1.0``).
Integers must lie within ±(2**53 - 1) because Redis compares them as doubles.
"""


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit trail; immutable once written, never trimmed."""

    actor: str  # Slack user ID, or "payflow-bot"
    action: str  # "scale", "status", "deploy.approve", ...
    outcome: str  # "ok", "denied", "failed", "refused", ...
    target: str | None = None  # service name
    detail: str = ""
    channel: str | None = None
    permalink: str | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))  # tz-aware UTC
    id: str = ""  # stream entry id, filled when read back
    # The chain, filled when read back; not part of equality (a written entry has none yet).
    seq: int = field(default=0, compare=False)
    prev: str = field(default="", compare=False)
    hash: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        # Normalise here so an entry reads back equal to what was written, on both backends.
        for name in ("actor", "action", "outcome"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"audit {name} must be a non-empty string")
        for name in ("target", "channel", "permalink"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"audit {name} must be a string or None")
            if value == "":
                object.__setattr__(self, name, None)  # stored as "" anyway; keep one spelling
        if not isinstance(self.detail, str) or not isinstance(self.id, str):
            raise ValueError("audit detail and id must be strings")
        if not isinstance(self.at, datetime) or self.at.utcoffset() is None:
            raise ValueError("audit 'at' must be a timezone-aware datetime")
        object.__setattr__(self, "at", self.at.astimezone(UTC))
        for name in ("actor", "action", "outcome", "target", "detail", "channel", "permalink", "id"):
            _check_utf8(getattr(self, name) or "", f"audit {name}")

    def _fields(self) -> dict[str, str]:
        return {
            "actor": self.actor,
            "action": self.action,
            "outcome": self.outcome,
            "target": self.target or "",
            "detail": self.detail,
            "channel": self.channel or "",
            "permalink": self.permalink or "",
            "at": self.at.isoformat(),
        }

    @classmethod
    def _from_fields(cls, entry_id: str, fields: dict[str, str]) -> AuditEntry:
        try:
            return cls(
                actor=fields["actor"],
                action=fields["action"],
                outcome=fields["outcome"],
                target=fields.get("target") or None,
                detail=fields.get("detail", ""),
                channel=fields.get("channel") or None,
                permalink=fields.get("permalink") or None,
                at=datetime.fromisoformat(fields["at"]),
                id=entry_id,
                seq=int(fields.get("seq") or 0),
                prev=fields.get("prev", ""),
                hash=fields.get("hash", ""),
            )
        except (KeyError, ValueError) as exc:
            raise StoreError(f"audit entry {entry_id} is malformed: {exc}") from None


def chain_hash(fields: dict[str, str]) -> str:
    """SHA-256 (hex) of an audit entry: every stored field except ``hash``, as a JSON object with
    sorted keys, no whitespace and UTF-8 text. Recompute it from an exported line by dropping
    ``id`` and ``hash``."""
    body = {k: v for k, v in fields.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _chained(content: dict[str, str], prev: str, seq: int) -> dict[str, str]:
    fields = {**content, "seq": str(seq), "prev": prev}
    fields["hash"] = chain_hash(fields)
    return fields


def audit_line(entry_id: str, fields: dict[str, str]) -> str:
    """One exported entry: a JSON object of its id and stored fields, on one line."""
    return json.dumps({"id": entry_id, **fields}, ensure_ascii=False, separators=(",", ":"))


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _link_problem(fields: dict[str, str], prev_hash: str, prev_seq: int, prev_id: str | None) -> str | None:
    """Why this entry does not continue the chain, or None."""
    if any(name not in fields for name in _CHAIN_FIELDS):
        return "it has no seq/prev/hash: it was added or rewritten outside the bot"
    try:
        seq = int(fields["seq"])
    except ValueError:
        return f"its seq {fields['seq']!r} is not a number: it was altered"
    if fields["hash"] != chain_hash(fields):
        return "its content does not match its hash: it was altered"
    if seq > prev_seq + 1:
        missing = seq - prev_seq - 1
        span = f"#{prev_seq + 1}" if missing == 1 else f"#{prev_seq + 1}–#{seq - 1}"
        return f"{missing} entr{'y' if missing == 1 else 'ies'} before it ({span}) are missing: deleted"
    if seq != prev_seq + 1:
        return f"its seq #{seq} does not follow #{prev_seq}: entries were reordered or replayed"
    if fields["prev"] != prev_hash:
        before = f"entry {prev_id}" if prev_id else "the chain's start"
        return f"its prev-hash does not match {before}: one of the two was altered"
    return None


@dataclass(frozen=True)
class AuditVerdict:
    """What `Store.verify_audit` found. ``broken_id`` is the first entry that breaks the chain."""

    ok: bool
    checked: int  # chained entries verified
    broken_id: str | None = None
    problem: str | None = None
    first_seq: int = 0  # where the kept window starts (the anchor's seq + 1)
    last_seq: int = 0
    unchained: int = 0  # entries written before the chain existed (only ever at the start)

    def report(self) -> str:
        if not self.ok:
            return f"audit trail BROKEN at entry {self.broken_id}: {self.problem}"
        if not self.checked:
            text = "audit trail ok: no chained entries"
        else:
            text = f"audit trail ok: {self.checked} entries, #{self.first_seq}–#{self.last_seq}, chain intact"
        if self.unchained:
            text += f" ({self.unchained} older entries predate the chain and are not covered)"
        return text


@dataclass(frozen=True)
class CasResult:
    """Outcome of `Store.compare_and_set`.

    ``won`` — this call replaced the record. ``current`` — the record as it is now: the new value
    if won; if lost, the record that beat us (so a late clicker can be told who approved), or
    ``None`` when there is no record at all. Truthiness is ``won``, so ``if await cas(...)`` is
    safe; never test ``is None`` on it.
    """

    won: bool
    current: dict[str, Any] | None

    def __bool__(self) -> bool:
        return self.won


# ---------------------------------------------------------------------------------------------
# Input validation shared by both backends


def _check_utf8(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid Unicode (lone surrogate?)") from None


def _check_key(key: object, what: str = "key") -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"{what} must be a non-empty string")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"{what} is longer than {MAX_KEY_LENGTH} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in key):
        raise ValueError(f"{what} must not contain whitespace or control characters: {key!r}")
    _check_utf8(key, what)
    return key


def _check_prefix(prefix: object) -> str:
    if prefix == "":
        return ""
    return _check_key(prefix, "prefix")


def _encode_record(value: object) -> str:
    """JSON text of ``value``; refuses anything that would not read back equal."""
    if not isinstance(value, dict):
        raise ValueError(f"record value must be a dict, got {type(value).__name__}")
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        size = len(text.encode("utf-8"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"record value is not JSON-serialisable: {exc}") from None
    if size > MAX_RECORD_BYTES:
        raise ValueError(f"record value is {size} bytes, more than {MAX_RECORD_BYTES}")
    if json.loads(text) != value:
        raise ValueError("record value changes in a JSON round trip (tuples or non-string keys?)")
    return text


def _decode_record(key: str, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise StoreError(f"record {key!r} is not a JSON object")
    return value


def _check_field(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError("field must be a non-empty string")
    _check_utf8(name, "field")
    return name


def _check_expected(expected: object) -> None:
    if expected is None or isinstance(expected, bool):
        return
    if isinstance(expected, str):
        _check_utf8(expected, "expected")
        return
    if isinstance(expected, int):
        if abs(expected) > _MAX_EXACT_INT:
            raise ValueError("expected integer must lie within ±(2**53 - 1)")
        return
    raise ValueError(f"expected must be str, int, bool or None, got {type(expected).__name__}")


def _ttl_ms(ttl: object) -> int | _KeepTtl | None:
    if ttl is None or ttl is KEEP_TTL:
        return None if ttl is None else KEEP_TTL
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise ValueError(f"ttl must be a number of seconds, None or KEEP_TTL, got {ttl!r}")
    if not math.isfinite(ttl) or ttl <= 0 or ttl > MAX_TTL_SECONDS:
        raise ValueError(f"ttl must be > 0 and at most {MAX_TTL_SECONDS} seconds, got {ttl!r}")
    return math.ceil(ttl * 1000)


def _check_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_AUDIT_LIMIT:
        raise ValueError(f"limit must be an integer from 1 to {MAX_AUDIT_LIMIT}")
    return limit


def _matches(record: dict[str, Any], name: str, expected: Expected) -> bool:
    """Typed equality; the Lua `matches` in RedisStore is the same rule, keep them in step."""
    value = record.get(name)
    if expected is None:
        return value is None
    if isinstance(expected, bool):
        return isinstance(value, bool) and value is expected
    if isinstance(expected, int):
        return isinstance(value, int | float) and not isinstance(value, bool) and value == expected
    return isinstance(value, str) and value == expected


def _expected_args(expected: Expected) -> tuple[str, str]:
    if expected is None:
        return "null", ""
    if isinstance(expected, bool):
        return "bool", "1" if expected else "0"
    if isinstance(expected, int):
        return "int", str(expected)
    return "str", expected


# ---------------------------------------------------------------------------------------------
# The contract


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
        page, meta = await self._audit_page("-", _AUDIT_BATCH, with_meta=True)
        try:
            prev_seq, tip_seq = int(meta.get("anchor_seq", 0)), int(meta.get("tip_seq", 0))
        except ValueError:
            problem = "the chain's metadata (anchor/tip seq) is not a number: it was altered"
            return AuditVerdict(False, 0, meta.get("tip_id", "(chain metadata)"), problem)
        prev_hash = meta.get("anchor_hash", GENESIS)
        first_seq = prev_seq + 1
        prev_id: str | None = meta.get("anchor_id")
        checked = unchained = 0
        may_be_unchained = "anchor_hash" not in meta
        while page:
            for entry_id, fields in page:
                if may_be_unchained and not any(name in fields for name in _CHAIN_FIELDS):
                    unchained += 1
                    prev_id = entry_id
                    continue
                may_be_unchained = False
                problem = _link_problem(fields, prev_hash, prev_seq, prev_id)
                if problem:
                    return AuditVerdict(False, checked, entry_id, problem, first_seq, prev_seq, unchained)
                prev_hash, prev_seq, prev_id = fields["hash"], int(fields["seq"]), entry_id
                checked += 1
            if len(page) < _AUDIT_BATCH:
                break
            page, _ = await self._audit_page("(" + page[-1][0], _AUDIT_BATCH, with_meta=False)
        tip_id = meta.get("tip_id", "?")
        if prev_seq < tip_seq:  # entries appended since the tip was read only come after it
            missing = tip_seq - prev_seq
            problem = (
                f"the newest {missing} entr{'y' if missing == 1 else 'ies'} (up to #{tip_seq}) are missing"
            )
            return AuditVerdict(False, checked, tip_id, problem, first_seq, prev_seq, unchained)
        if prev_seq == tip_seq and tip_seq and prev_hash != meta.get("tip_hash"):
            problem = "the newest entry is not the one the chain's tip recorded: it was replaced"
            return AuditVerdict(False, checked, prev_id, problem, first_seq, prev_seq, unchained)
        return AuditVerdict(True, checked, None, None, first_seq, prev_seq, unchained)

    async def export_audit(
        self, *, since: datetime | None = None, batch: int = _AUDIT_BATCH
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
        if _id_key(first_id) > _id_key(last_id):
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
        ms, seq = _id_key(done)
        limit = min((ms, seq + 1), (max(0, math.floor(before.timestamp() * 1000)), 0))
        return await self._trim(f"{limit[0]}-{limit[1]}")

    async def audit(self, *, target: str | None = None, limit: int = 10) -> list[AuditEntry]:
        """Newest entries first, optionally only those for ``target``.

        A filtered read looks at no more than ``audit_scan_cap`` newest entries, so a rare
        target costs a bounded amount of work and may come back short.
        """
        limit = _check_limit(limit)
        if target is not None and (not isinstance(target, str) or not target):
            raise ValueError("target must be a non-empty string or None")
        self._check_open()
        return await self._audit(target, limit)

    async def get(self, key: str) -> dict[str, Any] | None:
        """The record at ``key``, or None if absent or expired."""
        _check_key(key)
        self._check_open()
        return await self._get(key)

    async def put(self, key: str, value: dict[str, Any], ttl: Ttl = None) -> None:
        """Overwrite unconditionally; see the module docstring for ``ttl``."""
        _check_key(key)
        text = _encode_record(value)
        ttl_ms = _ttl_ms(ttl)
        self._check_open()
        await self._put(key, text, ttl_ms)

    async def create(self, key: str, value: dict[str, Any], ttl: float | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent (atomic); True if this call created it."""
        _check_key(key)
        text = _encode_record(value)
        ttl_ms = _ttl_ms(ttl)
        if isinstance(ttl_ms, _KeepTtl):
            raise ValueError("KEEP_TTL makes no sense when creating a record")
        self._check_open()
        return await self._create(key, text, ttl_ms)

    async def compare_and_set(
        self, key: str, field: str, expected: Expected, value: dict[str, Any], ttl: Ttl = None
    ) -> CasResult:
        """Atomically replace the record with ``value`` iff it exists and ``record[field]`` equals
        ``expected`` (typed comparison, see `Expected`). Never creates a record: use `create`.
        """
        _check_key(key)
        _check_field(field)
        _check_expected(expected)
        text = _encode_record(value)
        ttl_ms = _ttl_ms(ttl)
        self._check_open()
        won, current_text = await self._compare_and_set(key, field, expected, text, ttl_ms)
        if won:
            return CasResult(True, json.loads(text))
        return CasResult(False, None if current_text is None else _decode_record(key, current_text))

    async def delete(self, key: str, *, if_field: str | None = None, equals: Expected = None) -> bool:
        """Delete ``key``; with ``if_field`` only when ``record[if_field]`` equals ``equals``
        (a lock is released only by its owner). True if this call deleted it.
        """
        _check_key(key)
        if if_field is None:
            if equals is not None:
                raise ValueError("equals needs if_field")
        else:
            _check_field(if_field)
            _check_expected(equals)
        self._check_open()
        return await self._delete(key, if_field, equals)

    async def scan(self, prefix: str) -> dict[str, dict[str, Any]]:
        """All live records whose key starts with ``prefix`` ("" = all), in key order.

        Not a snapshot: records changed during the scan may appear in either state.
        """
        prefix = _check_prefix(prefix)
        self._check_open()
        return await self._scan(prefix)

    async def ttl(self, key: str) -> float | None:
        """Seconds until ``key`` expires; None if it has no expiry or does not exist."""
        _check_key(key)
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
    async def _put(self, key: str, text: str, ttl_ms: int | _KeepTtl | None) -> None: ...

    @abstractmethod
    async def _create(self, key: str, text: str, ttl_ms: int | None) -> bool: ...

    @abstractmethod
    async def _compare_and_set(
        self, key: str, field: str, expected: Expected, text: str, ttl_ms: int | _KeepTtl | None
    ) -> tuple[bool, str | None]:
        """(won, current JSON text when lost)."""

    @abstractmethod
    async def _delete(self, key: str, if_field: str | None, equals: Expected) -> bool: ...

    @abstractmethod
    async def _scan(self, prefix: str) -> dict[str, dict[str, Any]]: ...

    @abstractmethod
    async def _ttl(self, key: str) -> float | None: ...

    @abstractmethod
    async def _close(self) -> None: ...


# ---------------------------------------------------------------------------------------------
# In-process backend


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

    def _expiry(self, ttl_ms: int | _KeepTtl | None, now: float, old: float | None) -> float | None:
        if ttl_ms is KEEP_TTL:
            return old
        return None if ttl_ms is None else now + ttl_ms / 1000

    async def _ping(self) -> None:
        return None

    async def _append_chained(self, content: dict[str, str]) -> tuple[str, dict[str, str]]:
        with self._lock:  # the lock makes read-tip, link, append one atomic step
            meta = self._audit_meta
            fields = _chained(content, meta.get("tip_hash", GENESIS), int(meta.get("tip_seq", 0)) + 1)
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
                key = _id_key(start.lstrip("("))
                chosen = [
                    (i, dict(f))
                    for i, f in self._audit_log
                    if (_id_key(i) > key if after else _id_key(i) >= key)
                ][:count]
            return [(i, dict(f)) for i, f in chosen], dict(self._audit_meta) if with_meta else {}

    async def _mark_exported(self, first_id: str, last_id: str) -> bool:
        with self._lock:
            done = self._audit_meta.get("exported_id")
            floor = _id_key(done) if done else (-1, -1)
            first = _id_key(first_id)
            if any(floor < _id_key(i) < first for i, _ in self._audit_log):
                return False  # unexported entries before first_id
            if done and _id_key(last_id) <= floor:
                return False
            self._audit_meta["exported_id"] = last_id
            return True

    async def _trim(self, limit_id: str) -> int:
        with self._lock:
            limit = _id_key(limit_id)
            cut = 0
            while cut < len(self._audit_log) and _id_key(self._audit_log[cut][0]) < limit:
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
        return None if item is None else _decode_record(key, item[0])

    async def _put(self, key: str, text: str, ttl_ms: int | _KeepTtl | None) -> None:
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
        self, key: str, field: str, expected: Expected, text: str, ttl_ms: int | _KeepTtl | None
    ) -> tuple[bool, str | None]:
        with self._lock:
            now = self._clock()
            item = self._live(key, now)
            if item is None:
                return False, None
            if not _matches(_decode_record(key, item[0]), field, expected):
                return False, item[0]
            self._records[key] = (text, self._expiry(ttl_ms, now, item[1]))
            return True, None

    async def _delete(self, key: str, if_field: str | None, equals: Expected) -> bool:
        with self._lock:
            item = self._live(key, self._clock())
            if item is None:
                return False
            if if_field is not None and not _matches(_decode_record(key, item[0]), if_field, equals):
                return False
            del self._records[key]
            return True

    async def _scan(self, prefix: str) -> dict[str, dict[str, Any]]:
        with self._lock:
            now = self._clock()
            keys = sorted(k for k in self._records if k.startswith(prefix))
            texts = {k: item[0] for k in keys if (item := self._live(k, now)) is not None}
        return {k: _decode_record(k, t) for k, t in texts.items()}

    async def _ttl(self, key: str) -> float | None:
        with self._lock:
            now = self._clock()
            item = self._live(key, now)
        if item is None or item[1] is None:
            return None
        return max(0.0, math.floor((item[1] - now) * 1000) / 1000)

    async def _close(self) -> None:
        return None


# ---------------------------------------------------------------------------------------------
# Redis backend

# Shared by both scripts. Mirrors `_matches`: typed equality, null matches absent. The stored
# JSON is only decoded to read one field, never re-encoded (cjson would mangle big integers,
# empty arrays and escapes), and the reply carries the raw text.
_LUA_MATCHES = """
local function matches(raw, field, kind, expected)
  local ok, rec = pcall(cjson.decode, raw)
  if not ok or type(rec) ~= 'table' then return false end
  local v = rec[field]
  if kind == 'null' then return v == nil or v == cjson.null end
  if kind == 'bool' then return type(v) == 'boolean' and v == (expected == '1') end
  if kind == 'int' then return type(v) == 'number' and v == tonumber(expected) end
  return type(v) == 'string' and v == expected
end
"""

# KEYS[1] record; ARGV: field, kind, expected, new JSON, ttl mode (none|keep|px), ttl ms.
# Reply: {1} won, {0} absent, {0, current JSON} lost.
_LUA_CAS = (
    _LUA_MATCHES
    + """
local raw = redis.call('GET', KEYS[1])
if not raw then return {0} end
if not matches(raw, ARGV[1], ARGV[2], ARGV[3]) then return {0, raw} end
if ARGV[5] == 'px' then
  redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[6])
elseif ARGV[5] == 'keep' then
  redis.call('SET', KEYS[1], ARGV[4], 'KEEPTTL')
else
  redis.call('SET', KEYS[1], ARGV[4])
end
return {1}
"""
)

# KEYS[1] record; ARGV: field, kind, expected. Reply: 1 deleted, 0 not.
_LUA_DELETE_IF = (
    _LUA_MATCHES
    + """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
if not matches(raw, ARGV[1], ARGV[2], ARGV[3]) then return 0 end
return redis.call('DEL', KEYS[1])
"""
)

# KEYS[1] audit stream, KEYS[2] chain metadata hash; ARGV: expected tip hash, expected tip seq,
# GENESIS, then for each entry its number of fields and its field/value pairs (already linked,
# in order, to that tip and hashed). Reply: {1, id, id, …} appended; {0, tip hash, tip seq} the
# tip moved: link to it and try again.
_LUA_APPEND = """
local tip = redis.call('HGET', KEYS[2], 'tip_hash') or ARGV[3]
local tip_seq = redis.call('HGET', KEYS[2], 'tip_seq') or '0'
if tip ~= ARGV[1] or tip_seq ~= ARGV[2] then return {0, tip, tip_seq} end
local reply, i, hash, seq, id = {1}, 4, nil, nil, nil
while i <= #ARGV do
  local n, fields = tonumber(ARGV[i]), {}
  for j = i + 1, i + 2 * n, 2 do
    fields[#fields + 1] = ARGV[j]
    fields[#fields + 1] = ARGV[j + 1]
    if ARGV[j] == 'hash' then hash = ARGV[j + 1] elseif ARGV[j] == 'seq' then seq = ARGV[j + 1] end
  end
  id = redis.call('XADD', KEYS[1], '*', unpack(fields))
  reply[#reply + 1] = id
  i = i + 1 + 2 * n
end
redis.call('HSET', KEYS[2], 'tip_hash', hash, 'tip_seq', seq, 'tip_id', id)
return reply
"""

_LUA_ID_LESS = """
local function id_less(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
"""

# KEYS[1] stream, KEYS[2] metadata; ARGV: first id exported, last id exported. Reply 1 if the
# watermark moved: only when no entry between the old watermark and the first id is unexported.
_LUA_MARK_EXPORTED = (
    _LUA_ID_LESS
    + """
local done = redis.call('HGET', KEYS[2], 'exported_id')
local from = done and ('(' .. done) or '-'
if done and not id_less(done, ARGV[1]) then
  from = nil
end
if from and #redis.call('XRANGE', KEYS[1], from, '(' .. ARGV[1], 'COUNT', 1) > 0 then return 0 end
if done and not id_less(done, ARGV[2]) then return 0 end
redis.call('HSET', KEYS[2], 'exported_id', ARGV[2])
return 1
"""
)

# KEYS[1] stream, KEYS[2] metadata; ARGV: limit id. Drops entries before it, anchoring the chain
# at the last one dropped (its seq and hash), in one step so `verify` never sees half of it.
_LUA_TRIM = """
local last = redis.call('XREVRANGE', KEYS[1], '(' .. ARGV[1], '-', 'COUNT', 1)
if #last == 0 then return 0 end
local f, hash, seq = last[1][2], nil, nil
for i = 1, #f, 2 do
  if f[i] == 'hash' then hash = f[i + 1] elseif f[i] == 'seq' then seq = f[i + 1] end
end
if hash and seq then
  redis.call('HSET', KEYS[2], 'anchor_hash', hash, 'anchor_seq', seq, 'anchor_id', last[1][1])
else
  redis.call('HSET', KEYS[2], 'anchor_id', last[1][1])
end
return redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1])
"""

# Errors that mean "cannot be used right now" rather than "we sent something wrong".
_UNAVAILABLE_ERRORS = (
    redis_errors.ConnectionError,  # includes auth failures, LOADING, pool exhaustion
    redis_errors.TimeoutError,
    OSError,
    redis_errors.ReadOnlyError,  # talking to a replica mid-failover
    redis_errors.MasterDownError,
    redis_errors.OutOfMemoryError,
)


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "\\*?[]" else ch for ch in text)


class RedisStore(Store):
    """Redis backend; safe to share between bot replicas.

    Records live at ``<prefix>rec:<key>`` as JSON strings and the audit trail is the stream
    ``<prefix>audit``, so records and the stream can never collide. Client-side retries are
    off on purpose: re-sending a CAS, SET NX or XADD whose first attempt did land would report
    a false loss or a duplicate, so a failure surfaces once as `StoreUnavailable` and the pool
    reconnects on the next call.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "payflow:",
        timeout: float = 2.0,
        max_connections: int = 50,
        audit_scan_cap: int = AUDIT_SCAN_CAP,
    ) -> None:
        super().__init__(audit_scan_cap=audit_scan_cap)
        _check_key(prefix, "prefix")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
            raise ValueError("max_connections must be a positive integer")
        self._address, self._secrets = _describe_url(url)
        self._records_ns = f"{prefix}rec:"
        self._audit_key = f"{prefix}audit"
        self._audit_meta_key = f"{prefix}audit:chain"
        self._timeout = timeout
        self._tip = (GENESIS, 0)  # last tip seen; a stale guess costs one extra round trip
        # Group commit: appends from this process queue here and one flusher links them all in
        # one round trip. Racing each other for the tip, 20 concurrent appends starved one
        # another (each round only one wins); replicas still race, and retry on a lost race.
        self._pending: list[tuple[dict[str, str], asyncio.Future[tuple[str, dict[str, str]]]]] = []
        self._flusher: asyncio.Task[None] | None = None
        # A blocking pool queues a burst (50 clicks, a big scan) behind max_connections instead
        # of failing it with "Too many connections"; a long wait for a connection is an outage.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=max(5.0, timeout * 5),
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=max(1, math.ceil(timeout * 5)),
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
            # RESP2 pinned: under RESP3 redis-py enables maintenance notifications, which turns off
            # its check for pooled sockets closed by a server restart (one spurious failure each).
            protocol=2,
        )
        self._client: aioredis.Redis = aioredis.Redis.from_pool(pool)
        self._cas_script = self._client.register_script(_LUA_CAS)
        self._delete_script = self._client.register_script(_LUA_DELETE_IF)
        self._append_script = self._client.register_script(_LUA_APPEND)
        self._mark_script = self._client.register_script(_LUA_MARK_EXPORTED)
        self._trim_script = self._client.register_script(_LUA_TRIM)

    def describe(self) -> str:
        return f"Redis store at {self._address}"

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    @contextlib.contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        """Turn redis-py failures into store errors whose text never carries the password."""
        try:
            yield
        except StoreError:
            raise
        except (*_UNAVAILABLE_ERRORS, redis_errors.RedisError) as exc:
            raw = f"{type(exc).__name__}: {exc}"
            detail = self._scrub(raw)
            where = self.describe()
            if isinstance(exc, _UNAVAILABLE_ERRORS):
                timed_out = isinstance(exc, redis_errors.TimeoutError | TimeoutError)
                brief = (
                    f"Redis (the bot's store) did not answer within {self._timeout:g} s"
                    if timed_out
                    else "The bot's store is unreachable"
                )
                err: StoreError = StoreUnavailable(
                    f"{where} is unavailable ({operation}: {detail})", brief=brief
                )
            else:
                err = StoreError(f"{where} rejected {operation}: {detail}")
            if detail == raw and self._scrub(repr(exc)) == repr(exc):
                raise err from exc
            raise err from None

    def _rec(self, key: str) -> str:
        return self._records_ns + key

    async def _ping(self) -> None:
        with self._errors("ping"):
            await self._client.ping()

    async def _append_chained(self, content: dict[str, str]) -> tuple[str, dict[str, str]]:
        future: asyncio.Future[tuple[str, dict[str, str]]] = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # a cancelled caller's
        self._pending.append((content, future))  # error must not be logged as never retrieved
        if self._flusher is None or self._flusher.done():
            # A task of its own: a caller that is cancelled must not strand the others' entries.
            self._flusher = asyncio.create_task(self._flush(), name="audit-append")
        return await asyncio.shield(future)

    async def _flush(self) -> None:
        """Link and append everything queued, a batch per round trip, until the queue is empty.
        Each batch is bounded by the socket timeout, so an entry waits at most for the batch in
        flight and its own."""
        while self._pending:
            batch, self._pending = self._pending[:_APPEND_BATCH], self._pending[_APPEND_BATCH:]
            try:
                results = await self._append_batch([content for content, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def _append_batch(self, contents: list[dict[str, str]]) -> list[tuple[str, dict[str, str]]]:
        keys = [self._audit_key, self._audit_meta_key]
        with self._errors("append_audit"):
            for _ in range(_APPEND_TRIES):
                tip_hash, tip_seq = self._tip
                linked: list[dict[str, str]] = []
                args = [tip_hash, str(tip_seq), GENESIS]
                prev, seq = tip_hash, tip_seq
                for content in contents:
                    seq += 1
                    fields = _chained(content, prev, seq)
                    linked.append(fields)
                    args += [str(len(fields)), *(x for kv in fields.items() for x in kv)]
                    prev = fields["hash"]
                reply = await self._append_script(keys=keys, args=args)
                if int(reply[0]) == 1:
                    self._tip = (prev, seq)
                    return [
                        (str(entry_id), fields) for entry_id, fields in zip(reply[1:], linked, strict=True)
                    ]
                self._tip = (str(reply[1]), int(reply[2]))  # another writer linked first
        raise StoreError(f"audit append lost the race for the chain's tip {_APPEND_TRIES} times")

    async def _audit_page(
        self, start: str, count: int, *, with_meta: bool
    ) -> tuple[list[tuple[str, dict[str, str]]], dict[str, str]]:
        with self._errors("audit"):
            if not with_meta:
                page = await self._client.xrange(self._audit_key, start, "+", count=count)
                return [(str(i), dict(f)) for i, f in page], {}
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.xrange(self._audit_key, start, "+", count=count)
                pipe.hgetall(self._audit_meta_key)
                page, meta = await pipe.execute()
        return [(str(i), dict(f)) for i, f in page], dict(meta)

    async def _mark_exported(self, first_id: str, last_id: str) -> bool:
        with self._errors("mark_audit_exported"):
            keys = [self._audit_key, self._audit_meta_key]
            return bool(await self._mark_script(keys=keys, args=[first_id, last_id]))

    async def _trim(self, limit_id: str) -> int:
        with self._errors("trim_audit"):
            return int(await self._trim_script(keys=[self._audit_key, self._audit_meta_key], args=[limit_id]))

    async def _audit(self, target: str | None, limit: int) -> list[AuditEntry]:
        found: list[AuditEntry] = []
        scanned, upper = 0, "+"
        with self._errors("audit"):
            while scanned < self.audit_scan_cap and len(found) < limit:
                want = limit - len(found) if target is None else _AUDIT_BATCH
                count = min(want, self.audit_scan_cap - scanned)
                batch = await self._client.xrevrange(self._audit_key, upper, "-", count=count)
                for entry_id, fields in batch:
                    scanned += 1
                    if target is None or fields.get("target") == target:
                        found.append(AuditEntry._from_fields(entry_id, fields))
                        if len(found) == limit:
                            break
                if len(batch) < count:
                    break
                upper = "(" + batch[-1][0]
        return found

    async def _get(self, key: str) -> dict[str, Any] | None:
        with self._errors("get"):
            text = await self._client.get(self._rec(key))
        return None if text is None else _decode_record(key, text)

    async def _put(self, key: str, text: str, ttl_ms: int | _KeepTtl | None) -> None:
        with self._errors("put"):
            if ttl_ms is KEEP_TTL:
                await self._client.set(self._rec(key), text, keepttl=True)
            else:
                await self._client.set(self._rec(key), text, px=ttl_ms)

    async def _create(self, key: str, text: str, ttl_ms: int | None) -> bool:
        with self._errors("create"):
            return bool(await self._client.set(self._rec(key), text, px=ttl_ms, nx=True))

    async def _compare_and_set(
        self, key: str, field: str, expected: Expected, text: str, ttl_ms: int | _KeepTtl | None
    ) -> tuple[bool, str | None]:
        kind, arg = _expected_args(expected)
        if ttl_ms is KEEP_TTL:
            mode, ms = "keep", ""
        elif ttl_ms is None:
            mode, ms = "none", ""
        else:
            mode, ms = "px", str(ttl_ms)
        with self._errors("compare_and_set"):
            reply = await self._cas_script(keys=[self._rec(key)], args=[field, kind, arg, text, mode, ms])
        if int(reply[0]) == 1:
            return True, None
        return False, reply[1] if len(reply) > 1 else None

    async def _delete(self, key: str, if_field: str | None, equals: Expected) -> bool:
        with self._errors("delete"):
            if if_field is None:
                return bool(await self._client.delete(self._rec(key)))
            kind, arg = _expected_args(equals)
            return bool(await self._delete_script(keys=[self._rec(key)], args=[if_field, kind, arg]))

    async def _scan(self, prefix: str) -> dict[str, dict[str, Any]]:
        pattern = _glob_escape(self._records_ns + prefix) + "*"
        cut = len(self._records_ns)
        texts: dict[str, str] = {}
        with self._errors("scan"):
            keys = {k async for k in self._client.scan_iter(match=pattern, count=_SCAN_BATCH)}
            ordered = sorted(keys)
            for start in range(0, len(ordered), _SCAN_BATCH):
                chunk = ordered[start : start + _SCAN_BATCH]
                for name, text in zip(chunk, await self._client.mget(chunk), strict=True):
                    if text is not None:  # expired or deleted since SCAN saw it
                        texts[name[cut:]] = text
        return {k: _decode_record(k, t) for k, t in texts.items()}

    async def _ttl(self, key: str) -> float | None:
        with self._errors("ttl"):
            ms = int(await self._client.pttl(self._rec(key)))
        return None if ms < 0 else ms / 1000

    async def _close(self) -> None:
        with contextlib.suppress(*_UNAVAILABLE_ERRORS, redis_errors.RedisError):
            await self._client.aclose()


def _describe_url(url: object) -> tuple[str, tuple[str, ...]]:
    """(host:port or socket path, secrets to scrub) — the URL itself is never echoed."""
    if not isinstance(url, str) or not url:
        raise ValueError("Redis URL must be a non-empty string")
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("Redis URL must start with redis://, rediss:// or unix://")
    secrets = tuple(s for s in {parts.password or "", unquote(parts.password or "")} if s)
    if parts.scheme == "unix":
        return parts.path or "?", secrets
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError("Redis URL has an invalid port") from None
    host = parts.hostname or "localhost"
    return (f"[{host}]:{port}" if ":" in host else f"{host}:{port}"), secrets


def open_store(redis_url: str | None, *, max_connections: int = 50) -> Store:
    """`RedisStore` when ``redis_url`` is set, else the embedded `MemoryStore`.

    Nothing is contacted here; ``await store.ping()`` at startup to fail fast.
    """
    if redis_url is None or not redis_url.strip():
        return MemoryStore()
    return RedisStore(redis_url.strip(), max_connections=max_connections)
