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

Modules, each for what it holds: `values` (errors, limits, argument types), `checks` (input
validation), `audit` (entries and the hash chain), `contract` (`Store`), `memory` and
`redis_store` (the backends), `redis_lua` (the scripts behind Redis's atomic steps).
"""

from __future__ import annotations

from bot.gateways.store.audit import GENESIS, AuditEntry, AuditVerdict, audit_line, chain_hash
from bot.gateways.store.contract import Store
from bot.gateways.store.memory import MemoryStore
from bot.gateways.store.redis_store import RedisStore
from bot.gateways.store.values import (
    AUDIT_SCAN_CAP,
    KEEP_TTL,
    MAX_AUDIT_LIMIT,
    CasResult,
    Expected,
    StoreError,
    StoreUnavailable,
    Ttl,
)

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
    "audit_line",
    "chain_hash",
    "open_store",
]


def open_store(redis_url: str | None, *, max_connections: int = 50) -> Store:
    """`RedisStore` when ``redis_url`` is set, else the embedded `MemoryStore`.

    Nothing is contacted here; ``await store.ping()`` at startup to fail fast.
    """
    if redis_url is None or not redis_url.strip():
        return MemoryStore()
    return RedisStore(redis_url.strip(), max_connections=max_connections)
