"""PayFlow's JWT blacklist in a Redis, for tests, benchmarks and `make run`.

PayFlow's auth service blacklists a revoked token until it would have expired: one key per
token id, `token:blacklist:<jti>`, with a TTL equal to the token's remaining life. The
operations guide finds them with `redis-cli keys "*token*"`; the bot must count them with SCAN
instead (KEYS blocks the server for the whole keyspace), so the sandbox fills a Redis with
enough keys for the difference to show, quickly: pipelined SETs, no round trip per key.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

__all__ = ["BLACKLIST_MATCH", "BLACKLIST_PREFIX", "Blacklist", "blacklist_key", "fill_blacklist"]

BLACKLIST_PREFIX = "token:blacklist:"
BLACKLIST_MATCH = BLACKLIST_PREFIX + "*"
MAX_KEYS = 5_000_000


def blacklist_key(jti: str) -> str:
    return BLACKLIST_PREFIX + jti


@dataclass(frozen=True)
class Blacklist:
    """What `fill_blacklist` wrote: `count` keys with TTLs from `min_ttl` to `max_ttl` seconds."""

    count: int
    min_ttl: int
    max_ttl: int


def fill_blacklist(
    client: redis.Redis,
    count: int,
    *,
    max_ttl: int = 6 * 3600,
    min_ttl: int = 60,
    batch: int = 5_000,
    start: int = 0,
) -> Blacklist:
    """Write `count` blacklist keys, token ids `start`..`start+count-1`, TTLs spread evenly over
    [min_ttl, max_ttl] seconds (a stride coprime to the span, so neighbours differ), in
    pipelines of `batch` commands without MULTI. 100,000 keys take about a second."""
    if not 0 <= count <= MAX_KEYS:
        raise ValueError(f"count must be 0..{MAX_KEYS}, got {count}")
    if not 1 <= min_ttl <= max_ttl:
        raise ValueError(f"TTLs must satisfy 1 <= min_ttl <= max_ttl, got {min_ttl}..{max_ttl}")
    if batch < 1:
        raise ValueError("batch must be at least 1")
    span = max_ttl - min_ttl + 1
    stride = next(s for s in (7919, 104729, 1) if span % s or s == 1)
    pipe = client.pipeline(transaction=False)
    for i in range(start, start + count):
        ttl = min_ttl + (i * stride) % span
        # The value is what an auth service records: whose token it was and why it was revoked.
        pipe.set(blacklist_key(f"jti-{i:08d}"), f"user:{i % 9973}:logout", ex=ttl)
        if len(pipe) >= batch:
            pipe.execute()
    pipe.execute()
    return Blacklist(count, min_ttl, max_ttl)
