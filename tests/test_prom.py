"""The Prometheus gateway against a real Prometheus loaded with known series (promtool backfill):
figures match what was loaded, all services come from one aggregated query, and missing data,
NaN and failures are reported as such."""

from __future__ import annotations

import asyncio

import pytest

from bot.config.catalog import load_catalog
from bot.gateways.prom import Prom, PromQueryError, Reading, Scalar
from sandbox.prometheus import PrometheusServer
from sandbox.traffic import BAD, GOOD, rps_of
from tests.support.prom import history_prometheus  # noqa: F401  (fixture)


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def prom(history_prometheus: PrometheusServer) -> Prom:  # noqa: F811
    return Prom(history_prometheus.url, catalog=load_catalog(), timeout=5)


def test_service_figures_are_the_loaded_ones(prom):
    good = run(prom.service_figures("api-gateway", "1h"))
    assert good.rps.value == pytest.approx(rps_of("api-gateway"))
    assert good.error_rate.value == pytest.approx(GOOD.error_ratio)
    assert good.p95_ms.value == pytest.approx(GOOD.quantile(0.95) * 1000)
    assert good.p99_ms.value == pytest.approx(GOOD.quantile(0.99) * 1000)
    assert good.availability.value == pytest.approx(1 - GOOD.error_ratio)

    bad = run(prom.service_figures("wallet-service", "15m"))
    assert bad.error_rate.value == pytest.approx(BAD.error_ratio)
    assert bad.p95_ms.value == pytest.approx(BAD.quantile(0.95) * 1000)
    assert prom.queries == 2  # one query per question


def test_every_service_comes_from_aggregated_queries(prom, history_prometheus):  # noqa: F811
    before = history_prometheus.counter('prometheus_http_requests_total{code="200",handler="/api/v1/query"}')
    overview = run(prom.overview("1h"))
    after = history_prometheus.counter('prometheus_http_requests_total{code="200",handler="/api/v1/query"}')
    assert prom.queries == 2 and after - before == 2  # traffic figures + CPU/memory, for all services
    auth = overview.services["auth-service"]
    assert auth.rps.value == pytest.approx(20.0)
    assert auth.cpu.value == pytest.approx(GOOD.cpu_cores / 0.5)
    assert overview.services["wallet-service"].memory.value == pytest.approx(BAD.memory_bytes / 2**29)
    assert overview.problems == ()


def test_no_data_and_nan_are_never_a_value(prom):
    nothing = run(prom.service_figures("transaction-service", "1h"))
    assert nothing.error_rate == Reading(None, "no data")
    assert nothing.p95_ms == Reading(None, "no data")
    # blue of wallet-service never had traffic: no series for that color at all
    reading = run(prom.color_health("wallet-service", "blue", "5m"))
    assert (reading.error_rate, reading.p95_ms, reading.rps) == (None, None, None)
    assert "no data" in reading.problem
    # 0/0 is NaN in PromQL: reported as NaN, not as 0 % errors
    [nan] = run(prom.vector('sum(rate(http_requests_total{service="nope"}[5m])) or vector(0) / 0'))
    assert Reading.of(nan) == Reading(None, "NaN")


def test_color_health_of_the_bake_watch(prom):
    reading = run(prom.color_health("wallet-service", "green", "5m"))
    assert reading.error_rate == pytest.approx(BAD.error_ratio)
    assert reading.p95_ms == pytest.approx(BAD.quantile(0.95) * 1000)
    assert reading.rps == pytest.approx(rps_of("wallet-service"))
    assert reading.problem is None


def test_dependencies_and_alerts_in_one_query_each(prom):
    assert run(prom.dependencies()) == {
        "postgres": Reading(1.0),
        "redis": Reading(1.0),
        "rabbitmq": Reading(1.0),
    }
    assert run(prom.firing_alerts()) == Reading(0.0)
    assert prom.queries == 2


def test_an_invalid_query_carries_prometheus_own_error(prom):
    with pytest.raises(PromQueryError, match=r"parse error: unclosed left parenthesis"):
        run(prom.instant("sum(rate(http_requests_total[5m])"))
    assert run(prom.instant("1 + 1")) == Scalar(2.0)


def test_an_unreachable_prometheus_is_reported_within_the_timeout():
    stopped = PrometheusServer()
    url = stopped.url  # never started: nothing listens there
    stopped.close()
    prom = Prom(url, catalog=load_catalog(), timeout=2)
    reading = run(prom.color_health("api-gateway", "blue"))
    assert reading == reading.__class__(None, None, None, "Prometheus unreachable (ConnectionError)")
    deps = run(prom.dependencies())
    assert deps["postgres"] == Reading(None, "Prometheus unreachable (ConnectionError)")
    overview = run(prom.overview("1h"))
    assert overview.problems == (
        "traffic figures: Prometheus unreachable (ConnectionError)",
        "CPU/memory: Prometheus unreachable (ConnectionError)",
    )
    assert overview.services["api-gateway"].error_rate.value is None
