"""Durable state for the bot: the audit trail and the small JSON records behind approvals,
blue-green changes, service locks and "post this slot once" claims.

Two backends share one contract so that code (and tests) cannot tell them apart:

* `RedisStore` — production; safe with several bot replicas because every read-modify-write is
  one Redis command or one Lua script, never a Python-side "read, decide, write".
* `MemoryStore` — the embedded store used when ``REDIS_URL`` is unset (console, one replica).

Every public method validates its inputs *before* touching the backend (in `Store`, shared by
both), so a bad call raises the same ``ValueError`` whether or not Redis is reachable.

TTL semantics (`put`, `create`, `compare_and_set`): a number is seconds until the record
expires (rounded up to whole milliseconds); ``None`` means "no expiry" and clears any earlier
one, exactly like Redis ``SET``; `KEEP_TTL` keeps whatever expiry the record already had
(``SET ... KEEPTTL``), e.g. to move a pending approval along without extending its life.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Final, Literal, Self
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

__all__ = [
    "AUDIT_SCAN_CAP",
    "KEEP_TTL",
    "MAX_AUDIT_LIMIT",
    "AuditEntry",
    "CasResult",
    "Expected",
    "MemoryStore",
    "RedisStore",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Ttl",
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


class StoreError(Exception):
    """The store answered, but not as the contract expects (corrupt record, server-side bug)."""


class StoreUnavailable(StoreError):
    """The store cannot be reached; callers must refuse to act, never assume."""


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
            )
        except (KeyError, ValueError) as exc:
            raise StoreError(f"audit entry {entry_id} is malformed: {exc}") from None


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
        """Append ``entry`` (its ``id`` is ignored) and return the id it was stored under."""
        if not isinstance(entry, AuditEntry):
            raise ValueError("entry must be an AuditEntry")
        self._check_open()
        return await self._append_audit(entry)

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
    async def _append_audit(self, entry: AuditEntry) -> str: ...

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
        self._audit_log: list[AuditEntry] = []
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

    async def _append_audit(self, entry: AuditEntry) -> str:
        with self._lock:
            # Same "ms-seq" shape and monotonicity as a Redis stream id.
            ms, seq = int(time.time() * 1000), 0
            last_ms, last_seq = self._last_id
            if ms <= last_ms:
                ms, seq = last_ms, last_seq + 1
            self._last_id = (ms, seq)
            entry_id = f"{ms}-{seq}"
            self._audit_log.append(replace(entry, id=entry_id))
            return entry_id

    async def _audit(self, target: str | None, limit: int) -> list[AuditEntry]:
        with self._lock:
            newest = self._audit_log[-self.audit_scan_cap :]
        found: list[AuditEntry] = []
        for entry in reversed(newest):
            if target is None or entry.target == target:
                found.append(entry)
                if len(found) == limit:
                    break
        return found

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
                err: StoreError = StoreUnavailable(f"{where} is unavailable ({operation}: {detail})")
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

    async def _append_audit(self, entry: AuditEntry) -> str:
        with self._errors("append_audit"):
            return str(await self._client.xadd(self._audit_key, entry._fields()))

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


def open_store(redis_url: str | None) -> Store:
    """`RedisStore` when ``redis_url`` is set, else the embedded `MemoryStore`.

    Nothing is contacted here; ``await store.ping()`` at startup to fail fast.
    """
    if redis_url is None or not redis_url.strip():
        return MemoryStore()
    return RedisStore(redis_url.strip())
