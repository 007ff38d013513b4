"""PayFlow's own Redis (the auth service's token blacklist), not the bot's store: read only, but
for the snapshot `/payflow backup redis` asks for.

Only read commands are sent: SCAN, PTTL, EXISTS and INFO persistence; the one exception is
BGSAVE, which writes an RDB snapshot in a forked child and changes no data. The operations guide's
`redis-cli keys "*token*"` walks the whole keyspace in one command, during which Redis serves no
one else (the auth service included); SCAN walks it in small steps (`scan_count` keys asked per
call, each well under a millisecond), the loop yields between steps, and the walk stops at its
time budget, saying the count is partial. A key may be counted twice while Redis resizes its
table (SCAN's guarantee is "every key at least once"); with a steady keyspace the count is exact.

Each call has one deadline (socket timeout and `asyncio.timeout`) and no retry. URLs may carry
a password: messages name only host:port.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

T = TypeVar("T")

SAMPLE = 2000  # keys whose TTL is read for the spread
PTTL_BATCH = 500  # PTTLs per pipeline: each round trip stays short


class PayflowRedisError(Exception):
    """Redis refused or could not be read; `str()` is fit to show a user (no credentials)."""


@dataclass(frozen=True)
class TtlSpread:
    """PTTLs of a uniform sample of the counted keys, in milliseconds."""

    sampled: int
    min_ms: int | None
    median_ms: int | None
    max_ms: int | None
    no_expiry: int  # sampled keys without a TTL: a blacklist entry that never goes away is a leak
    gone: int  # expired between the SCAN and the PTTL


@dataclass(frozen=True)
class KeyCount:
    pattern: str
    count: int
    complete: bool  # False: the budget ran out first; `count` is a lower bound
    seconds: float
    calls: int  # SCAN calls made
    spread: TtlSpread


@dataclass(frozen=True)
class Persistence:
    """INFO persistence: what the guide's `redis-cli BGSAVE` leaves behind."""

    in_progress: bool  # rdb_bgsave_in_progress
    last_status: str  # rdb_last_bgsave_status: "ok" or "err"
    last_save: int  # rdb_last_save_time, the same clock as LASTSAVE (Unix seconds)
    saves: int | None  # rdb_saves (Redis 7.0+): snapshots attempted since start, failed ones too
    changes: int  # rdb_changes_since_last_save
    last_seconds: int | None  # rdb_last_bgsave_time_sec; None before the first


@dataclass(frozen=True)
class KeyState:
    key: str
    exists: bool
    pttl_ms: int | None  # None: no expiry (or the key does not exist)


def _address(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
        raise ValueError("PayFlow's Redis URL must look like redis://:password@host:6379/0")
    return parts.netloc.rpartition("@")[2] or parts.path


class PayflowRedis:
    def __init__(self, url: str, *, timeout: float = 5.0, max_connections: int = 4):
        if not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        self._where = _address(url)
        self.timeout = timeout
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout,  # waiting for a pooled connection counts against the same deadline
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            decode_responses=False,  # keys are bytes: a key that is not UTF-8 must not break a count
            protocol=2,
        )
        self._client: aioredis.Redis = aioredis.Redis.from_pool(pool)

    def describe(self) -> str:
        return f"PayFlow's Redis at {self._where}"

    async def close(self) -> None:
        await self._client.aclose()

    async def _call(self, what: str, call: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self.timeout):
                return await call
        except (TimeoutError, redis_errors.TimeoutError):
            raise PayflowRedisError(
                f"{self.describe()} did not answer {what} within {self.timeout:g} s"
            ) from None
        except redis_errors.AuthenticationError:
            raise PayflowRedisError(f"{self.describe()} refused the password of the URL") from None
        except redis_errors.ConnectionError as exc:
            reason = type(exc).__name__ if "password" in str(exc).lower() else str(exc)[:120]
            raise PayflowRedisError(f"{self.describe()} is not reachable ({reason})") from None
        except redis_errors.ResponseError as exc:
            raise PayflowRedisError(f"{self.describe()} refused {what}: {str(exc)[:200]}") from None

    async def count(
        self, pattern: str, *, scan_count: int, budget_seconds: float, sample: int = SAMPLE
    ) -> KeyCount:
        """SCAN MATCH `pattern` until the cursor is back at 0 or the budget is spent, then the TTL
        spread of a uniform sample (reservoir) of the keys seen."""
        began = time.monotonic()
        rng = random.Random()
        picked: list[bytes | str] = []
        cursor, count, calls = 0, 0, 0
        complete = False
        while True:
            cursor, keys = await self._call(
                "SCAN", self._client.scan(cursor, match=pattern, count=scan_count)
            )
            calls += 1
            for key in keys:
                count += 1
                if len(picked) < sample:
                    picked.append(key)
                else:
                    slot = rng.randrange(count)
                    if slot < sample:
                        picked[slot] = key
            if cursor == 0:
                complete = True
                break
            if time.monotonic() - began >= budget_seconds:
                break
            await asyncio.sleep(0)  # other work of the bot runs between steps
        seconds = time.monotonic() - began
        return KeyCount(pattern, count, complete, seconds, calls, await self._spread(picked))

    async def _spread(self, keys: list[bytes | str]) -> TtlSpread:
        ttls: list[int] = []
        for start in range(0, len(keys), PTTL_BATCH):
            pipe = self._client.pipeline(transaction=False)
            for key in keys[start : start + PTTL_BATCH]:
                pipe.pttl(key)
            ttls += [int(t) for t in await self._call("PTTL", pipe.execute())]
            await asyncio.sleep(0)
        live = sorted(t for t in ttls if t >= 0)
        return TtlSpread(
            sampled=len(ttls),
            min_ms=live[0] if live else None,
            median_ms=int(statistics.median(live)) if live else None,
            max_ms=live[-1] if live else None,
            no_expiry=sum(1 for t in ttls if t == -1),
            gone=sum(1 for t in ttls if t == -2),
        )

    async def lookup(self, key: str) -> KeyState:
        """EXISTS and PTTL of one key, in one round trip."""
        pipe = self._client.pipeline(transaction=False)
        pipe.exists(key)
        pipe.pttl(key)
        exists, pttl = await self._call("EXISTS/PTTL", pipe.execute())
        pttl = int(pttl)
        if not exists or pttl == -2:  # gone between the two
            return KeyState(key, False, None)
        return KeyState(key, True, pttl if pttl >= 0 else None)

    async def persistence(self) -> Persistence:
        info = await self._call("INFO persistence", self._client.info("persistence"))

        def number(key: str) -> int | None:
            value = info.get(key)
            return (
                int(value)
                if isinstance(value, int | float | str) and str(value).lstrip("-").isdigit()
                else None
            )

        last = number("rdb_last_bgsave_time_sec")
        status = info.get("rdb_last_bgsave_status", "")
        return Persistence(
            in_progress=bool(number("rdb_bgsave_in_progress")),
            last_status=status.decode() if isinstance(status, bytes) else str(status),
            last_save=number("rdb_last_save_time") or 0,
            saves=number("rdb_saves"),
            changes=number("rdb_changes_since_last_save") or 0,
            last_seconds=last if last is not None and last >= 0 else None,
        )

    async def bgsave(self) -> bool:
        """BGSAVE: True when it started, False when a background save was already running."""
        try:
            await self._call("BGSAVE", self._client.bgsave())
        except PayflowRedisError as exc:
            if "already in progress" in str(exc):
                return False
            raise
        return True
