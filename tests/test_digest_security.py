"""The daily digest's Security line from PayFlow's real token blacklist (a private redis-server
holding 100,000 entries), and what it says when that Redis is not configured or not reachable."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.chat.blocks import render
from bot.config.catalog import Catalog
from bot.config.settings import Settings
from bot.domain.views import Figure
from bot.shell.runtime import build_runtime
from handlers.digest import health_digest
from handlers.digest_lines import extra_lines
from tests.support.bot_server import BotServer
from tests.support.datastores import BLACKLIST_KEYS, BlacklistRedis
from tests.test_scale import _texts


@pytest.fixture
def catalog(catalog: Catalog) -> Catalog:
    data = catalog.data
    conf = data.redis.model_copy(update={"scan_budget_seconds": 30.0})  # room to count every key
    return catalog.model_copy(update={"digests": [], "data": data.model_copy(update={"redis": conf})})


@pytest.fixture
def settings(settings: Settings, blacklist_redis: BlacklistRedis) -> Settings:
    return replace(settings, env={"PAYFLOW_REDIS_URL": blacklist_redis.url})


def test_the_daily_digest_has_the_blacklist_size(bot: BotServer):
    deps = bot.runtime.dispatcher.deps
    lines = bot.call(extra_lines(deps, "daily"), timeout=60)
    assert Figure("Security", f"token blacklist {BLACKLIST_KEYS:,} entries", "", "info") in lines
    report = bot.call(health_digest(deps, "1h", "PayFlow digest · production"), timeout=60)
    body = "\n".join(_texts(render(report)))
    assert f"▫️ *Security* token blacklist {BLACKLIST_KEYS:,} entries" in body


def test_without_payflow_redis_the_line_says_what_to_set(settings, catalog, k8s_view):
    server = BotServer(build_runtime(replace(settings, env={}), catalog)).start()
    try:
        lines = server.call(extra_lines(server.runtime.dispatcher.deps, "daily"))
    finally:
        server.stop()
    [line] = [f for f in lines if f.label == "Security"]
    assert line.value == "token blacklist not read: PAYFLOW_REDIS_URL is not set" and line.verdict == "info"
