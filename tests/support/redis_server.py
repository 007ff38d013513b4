"""The sandbox's private `redis-server` as a pytest fixture: ``redis_server = redis_server_fixture()``
in a test module (or conftest) gives a session-wide server; call ``redis_server.flush()`` between
tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import pytest

from sandbox.redis_server import RedisServer, RedisServerMissing, find_redis_server

__all__ = ["RedisServer", "RedisServerMissing", "find_redis_server", "redis_server_fixture"]


def redis_server_fixture(
    scope: Literal["session", "package", "module", "class", "function"] = "session", **server_kwargs: Any
) -> Any:
    """Build a pytest fixture yielding a started `RedisServer`; assign it to a module name.

    A missing binary fails the tests (not skips them) with the install hint: a skipped store
    test suite would look green while proving nothing.
    """

    @pytest.fixture(scope=scope)
    def _fixture() -> Iterator[RedisServer]:
        try:
            server = RedisServer(**server_kwargs)
        except RedisServerMissing as exc:
            pytest.fail(str(exc), pytrace=False)
        with server:
            yield server

    return _fixture
