"""Private Prometheus servers for the tests: one loaded with known history (backfilled with
promtool), or one scraping the sandbox's synthetic traffic."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from bot.config.catalog import Catalog
from bot.config.settings import Settings
from sandbox.prometheus import INSTALL_HINT, PrometheusServer, available
from sandbox.traffic import BAD, GOOD, Stretch, history

# What the history holds: api-gateway healthy on blue, wallet-service broken on green,
# auth-service healthy at a fixed 20 rps, transaction-service has no series at all.
STRETCHES = (
    Stretch("api-gateway", "blue", GOOD),
    Stretch("wallet-service", "green", BAD),
    Stretch("auth-service", "blue", GOOD, rps=20.0),
)
HISTORY_SECONDS = 2 * 3600


def start_history(stretches: tuple[Stretch, ...] = STRETCHES, **dependencies: bool) -> PrometheusServer:
    if not available():
        raise RuntimeError(INSTALL_HINT)
    end = time.time() - 5
    server = PrometheusServer()
    server.backfill(history(stretches, end - HISTORY_SECONDS, end, 15.0, dependencies=dependencies))
    return server.start()


@pytest.fixture(scope="module")
def history_prometheus() -> Iterator[PrometheusServer]:
    server = start_history()
    yield server
    server.close()


def with_prometheus(settings: Settings, url: str) -> Settings:
    return replace(settings, prometheus_url=url)


def without_digests(catalog: Catalog) -> Catalog:
    """Tests that are not about digests must not see a scheduled post land in their channel."""
    return catalog.model_copy(update={"digests": []})
