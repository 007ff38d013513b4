"""Session-wide private data stores for the database, queue and token commands' tests.

A pytest plugin (`pytest_plugins` in tests/conftest.py), so any test can ask for:

- `postgres_server`  -> `PayflowDatabase`: `.admin_dsn` (superuser `payflow`), `.bot_dsn`
  (`payflow_bot`, as installed by deploy/sql/payflow-bot.sql), `.seeded` (counts, locked emails);
- `rabbitmq_node`    -> `RabbitNode`: `.amqp_url` (admin on vhost `payflow`), `.management_url`,
  `.monitor_user` / `.monitor_password` (tag `monitoring`, no AMQP rights);
- `blacklist_redis`  -> `BlacklistRedis`: `.url` of a private redis-server holding `.blacklist.count`
  keys `token:blacklist:*` with TTLs over six hours.

Each starts once per session, on free loopback ports in temporary directories, and is torn down
at the end. A missing server binary fails (not skips) with the install hint: skipped tests would
look green while proving nothing. Tests must leave the shared data as they found it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from sandbox.payflow_db import PayflowDatabase
from sandbox.payflow_redis import Blacklist, fill_blacklist
from sandbox.postgres import PostgresServerMissing
from sandbox.rabbitmq import RabbitNode, RabbitServerMissing
from tests.support.redis_server import RedisServer, RedisServerMissing

BLACKLIST_KEYS = 100_000


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PayflowDatabase]:
    try:
        db = PayflowDatabase()
    except PostgresServerMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    with db:
        yield db


@pytest.fixture(scope="session")
def rabbitmq_node() -> Iterator[RabbitNode]:
    try:
        node = RabbitNode()
    except RabbitServerMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    with node:
        yield node


@dataclass(frozen=True)
class BlacklistRedis:
    server: RedisServer
    blacklist: Blacklist

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="session")
def blacklist_redis() -> Iterator[BlacklistRedis]:
    """Apart from `redis_server`, which tests flush: this one keeps its keys all session."""
    try:
        server = RedisServer()
    except RedisServerMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    with server:
        client = server.client()
        try:
            # no key may expire during the session (tests count all of them, and a full run
            # takes minutes): TTLs from 4 h, still spread over 6 h
            blacklist = fill_blacklist(client, BLACKLIST_KEYS, min_ttl=4 * 3600, max_ttl=10 * 3600)
        finally:
            client.close()
        yield BlacklistRedis(server, blacklist)
