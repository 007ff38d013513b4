"""PayFlow's token blacklist in a private redis-server: a SCAN-based count finds every key
without a single KEYS call (the operations guide's `keys "*token*"` blocks the server)."""

from __future__ import annotations

import itertools

import pytest
import redis

from sandbox.payflow_redis import BLACKLIST_MATCH, BLACKLIST_PREFIX, fill_blacklist
from tests.support.datastores import BlacklistRedis
from tests.support.redis_server import RedisServer


def command_calls(client: redis.Redis, command: str) -> int:
    stats = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def test_scan_counts_every_blacklisted_token_without_keys(blacklist_redis: BlacklistRedis) -> None:
    client = blacklist_redis.server.client()
    try:
        client.config_resetstat()
        found = sum(1 for _ in client.scan_iter(match=BLACKLIST_MATCH, count=1000))
        assert found == blacklist_redis.blacklist.count == client.dbsize()
        assert command_calls(client, "scan") > 1  # many bounded steps, not one sweep
        assert command_calls(client, "keys") == 0
        # The guide's pattern finds the same keys.
        assert next(client.scan_iter(match="*token*", count=1000)).startswith(BLACKLIST_PREFIX)
    finally:
        client.close()


def test_ttls_are_spread_over_hours(blacklist_redis: BlacklistRedis) -> None:
    client = blacklist_redis.server.client()
    try:
        keys = list(itertools.islice(client.scan_iter(match=BLACKLIST_MATCH, count=1000), 3000))
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.ttl(key)
        ttls = pipe.execute()
    finally:
        client.close()
    assert all(0 < ttl <= blacklist_redis.blacklist.max_ttl for ttl in ttls)
    assert max(ttls) - min(ttls) > 5 * 3600
    assert len(set(ttls)) > 1000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"count": -1}, "count must be"),
        ({"count": 10, "min_ttl": 0}, "TTLs must satisfy"),
        ({"count": 10, "min_ttl": 100, "max_ttl": 50}, "TTLs must satisfy"),
        ({"count": 10, "batch": 0}, "batch must be"),
    ],
)
def test_bad_fill_arguments_write_nothing(
    redis_server: RedisServer, args: dict[str, int], message: str
) -> None:
    redis_server.flush()
    client = redis_server.client()
    try:
        with pytest.raises(ValueError, match=message):
            fill_blacklist(client, **args)
        assert client.dbsize() == 0
    finally:
        client.close()
