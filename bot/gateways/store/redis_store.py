"""The Redis backend: production, and safe with several bot replicas because every
read-modify-write is one Redis command or one Lua script (`redis_lua`)."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Iterator
from typing import Any, Final, cast
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from bot.gateways.store.audit import GENESIS, AuditEntry, link
from bot.gateways.store.checks import check_key, decode_record
from bot.gateways.store.contract import Store
from bot.gateways.store.redis_lua import LUA_APPEND, LUA_CAS, LUA_DELETE_IF, LUA_MARK_EXPORTED, LUA_TRIM
from bot.gateways.store.values import (
    AUDIT_BATCH,
    AUDIT_SCAN_CAP,
    KEEP_TTL,
    Expected,
    KeepTtl,
    StoreError,
    StoreUnavailable,
)

_SCAN_BATCH: Final = 500
_APPEND_TRIES: Final = 100  # lost tip races before an append gives up (each is one round trip)
_APPEND_BATCH: Final = 100  # entries linked per round trip (group commit)

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


def _expected_args(expected: Expected) -> tuple[str, str]:
    """``expected`` as the (kind, text) pair the Lua `matches` compares with."""
    if expected is None:
        return "null", ""
    if isinstance(expected, bool):
        return "bool", "1" if expected else "0"
    if isinstance(expected, int):
        return "int", str(expected)
    return "str", expected


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
        check_key(prefix, "prefix")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
            raise ValueError("max_connections must be a positive integer")
        self._address, self._secrets = _describe_url(url)
        self._records_ns = f"{prefix}rec:"
        self._index_ns = f"{prefix}idx:"
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
        self._cas_script = self._client.register_script(LUA_CAS)
        self._delete_script = self._client.register_script(LUA_DELETE_IF)
        self._append_script = self._client.register_script(LUA_APPEND)
        self._mark_script = self._client.register_script(LUA_MARK_EXPORTED)
        self._trim_script = self._client.register_script(LUA_TRIM)

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
                linked = link(contents, tip_hash, tip_seq)
                args = [tip_hash, str(tip_seq), GENESIS]
                for fields in linked:
                    args += [str(len(fields)), *(x for kv in fields.items() for x in kv)]
                reply = await self._append_script(keys=keys, args=args)
                if int(reply[0]) == 1:
                    self._tip = (linked[-1]["hash"], tip_seq + len(linked))
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
                page = _entries(await self._client.xrange(self._audit_key, start, "+", count=count))
                return page, {}
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.xrange(self._audit_key, start, "+", count=count)
                pipe.hgetall(self._audit_meta_key)
                raw_page, meta = await pipe.execute()
        return _entries(raw_page), dict(meta)

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
                want = limit - len(found) if target is None else AUDIT_BATCH
                count = min(want, self.audit_scan_cap - scanned)
                batch = _entries(await self._client.xrevrange(self._audit_key, upper, "-", count=count))
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
            text = cast("str | None", await self._client.get(self._rec(key)))  # decode_responses
        return None if text is None else decode_record(key, text)

    async def _put(self, key: str, text: str, ttl_ms: int | KeepTtl | None) -> None:
        with self._errors("put"):
            if ttl_ms is KEEP_TTL:
                await self._client.set(self._rec(key), text, keepttl=True)
            else:
                await self._client.set(self._rec(key), text, px=ttl_ms)

    async def _create(self, key: str, text: str, ttl_ms: int | None) -> bool:
        with self._errors("create"):
            return bool(await self._client.set(self._rec(key), text, px=ttl_ms, nx=True))

    async def _compare_and_set(
        self, key: str, field: str, expected: Expected, text: str, ttl_ms: int | KeepTtl | None
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
                values = cast("list[str | None]", await self._client.mget(chunk))  # decode_responses
                for name, text in zip(chunk, values, strict=True):
                    if text is not None:  # expired or deleted since SCAN saw it
                        texts[name[cut:]] = text
        return {k: decode_record(k, t) for k, t in texts.items()}

    async def _ttl(self, key: str) -> float | None:
        with self._errors("ttl"):
            ms = int(await self._client.pttl(self._rec(key)))
        return None if ms < 0 else ms / 1000

    async def _get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        texts: dict[str, str] = {}
        with self._errors("get_many"):
            for start in range(0, len(keys), _SCAN_BATCH):
                chunk = keys[start : start + _SCAN_BATCH]
                values = await self._client.mget([self._rec(k) for k in chunk])
                texts.update((k, str(t)) for k, t in zip(chunk, values, strict=True) if t is not None)
        return {k: decode_record(k, t) for k, t in texts.items()}

    async def _index_add(self, index: str, member: str, score: float, keep: int | None) -> None:
        name = self._index_ns + index
        with self._errors("index_add"):
            async with self._client.pipeline(transaction=True) as pipe:  # MULTI: one atomic step
                pipe.zadd(name, {member: score})
                if keep is not None:
                    pipe.zremrangebyrank(name, 0, -keep - 1)
                await pipe.execute()

    async def _index_remove(self, index: str, member: str) -> bool:
        with self._errors("index_remove"):
            return bool(await self._client.zrem(self._index_ns + index, member))

    async def _index_range(self, index: str, limit: int, newest_first: bool) -> list[tuple[str, float]]:
        with self._errors("index_range"):
            rows = await self._client.zrange(
                self._index_ns + index, 0, limit - 1, desc=newest_first, withscores=True
            )
        return [(str(row[0]), float(row[1])) for row in rows]

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


def _entries(reply: object) -> list[tuple[str, dict[str, str]]]:
    """XRANGE/XREVRANGE entries as this client answers them (decode_responses=True, RESP2): text.
    redis-py's annotations cover every client setting at once (bytes or text, RESP2 or 3, None)."""
    entries = cast("list[tuple[str, dict[str, str]]] | None", reply)
    return [(str(i), dict(f)) for i, f in entries or []]
