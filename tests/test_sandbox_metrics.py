"""The sandbox's synthetic traffic scraped by a real Prometheus: the bot sees a bad deploy raise
the error rate, and a dependency knocked out through the sandbox's admin endpoint."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from bot.config.catalog import Catalog
from bot.config.settings import Settings
from sandbox import business
from sandbox.k8s_api import SandboxServer
from sandbox.local import wait_until
from sandbox.prometheus import PrometheusServer
from sandbox.traffic import GOOD, history, rps_of
from tests.support.prom import with_prometheus, without_digests


@pytest.fixture
def catalog(catalog: Catalog) -> Catalog:
    return without_digests(catalog)


@pytest.fixture
def scraping_prometheus(sandbox: SandboxServer) -> Iterator[PrometheusServer]:
    server = PrometheusServer([sandbox.url], scrape_interval="1s", ca_file=sandbox.ca_file).start()
    server.wait_for('sum(rate(http_requests_total{service="api-gateway"}[1m])) > 0')
    yield server
    server.close()


@pytest.fixture
def settings(settings: Settings, scraping_prometheus: PrometheusServer) -> Settings:
    return with_prometheus(settings, scraping_prometheus.url)


def _body(answer) -> str:
    return "\n".join(
        b["text"]["text"] if "text" in b else " ".join(e.get("text", "") for e in b.get("elements", []))
        for p in answer.posts
        for b in p.get("blocks", [])
    )


def test_the_exposition_follows_the_cluster(cluster, sandbox, k8s_view):  # k8s_view: pods are ready
    first = httpx.get(f"{sandbox.url}/metrics", timeout=5, verify=sandbox.ssl_context())
    assert first.status_code == 200 and first.headers["content-type"].startswith("text/plain; version=0.0.4")
    cluster.traffic.advance(cluster.now() + 10)  # ten more seconds of traffic
    text = httpx.get(f"{sandbox.url}/metrics", timeout=5, verify=sandbox.ssl_context()).text
    line = next(
        x
        for x in text.splitlines()
        if x.startswith('http_requests_total{namespace="payflow",service="api-gateway"')
    )
    assert 'color="blue",status="200"' in line
    assert float(line.rsplit(" ", 1)[1]) >= 10 * rps_of("api-gateway") * (1 - GOOD.error_ratio)
    assert 'pg_up{pod="postgres-0"} 1' in text
    assert text.count("kube_pod_container_resource_limits{") == 4 * 3 * 2  # 4 services × 3 pods × cpu, memory


def test_a_bad_deploy_visibly_raises_the_error_rate(chat, k8s_view, scraping_prometheus):
    healthy = _body(chat.run("metrics api-gateway 1m"))
    assert "✅ error rate" in healthy and "live: 🔵 blue" in healthy

    # the guide's blue-green steps, done to the sandbox directly: a bad version on green, then the switch
    k8s_view.apps.patch_namespaced_deployment(
        "api-gateway-green",
        "payflow",
        {
            "spec": {
                "replicas": 3,
                "template": {
                    "spec": {
                        "containers": [{"name": "api-gateway", "image": "payflow/api-gateway:v1.1.0-bad"}]
                    }
                },
            }
        },
        _request_timeout=5,
    )
    k8s_view.wait_settled()
    k8s_view.net.patch_namespaced_ingress(
        "payflow-ingress",
        "payflow",
        [
            {
                "op": "replace",
                "path": "/spec/rules/0/http/paths/0/backend/service/name",
                "value": "api-gateway-green",
            }
        ],
        _request_timeout=5,
    )

    def red() -> str | None:
        body = _body(chat.run("metrics api-gateway 1m"))
        return body if "🔴 error rate" in body else None

    body = wait_until(red, 30, "the metrics to show the green error rate in red", poll=0.5)
    assert "live: 🟢 green" in body


def test_health_with_one_dependency_down(chat, sandbox, scraping_prometheus, k8s_view):
    resp = httpx.post(
        f"{sandbox.url}/sandbox/dependencies",
        json={"postgres": False},
        headers={"Authorization": f"Bearer {sandbox.token}"},
        timeout=5,
        verify=sandbox.ssl_context(),
    )
    assert resp.json() == {"postgres": False, "redis": True, "rabbitmq": True}
    scraping_prometheus.wait_for("min(pg_up) == 0")
    before = k8s_view.fingerprint()

    answer = chat.run("health")

    [post] = answer.posts
    assert post["text"] == "PayFlow health (production): 1 of 7 need attention"
    body = _body(answer)
    lines = body.split("\n")
    assert lines[1] == "🔴 1 of 7 need attention · worst first"
    assert lines[2:4] == ["🔴 *postgres* _(dependency)_", "      check: DOWN (0)"]
    for name in ("redis", "rabbitmq"):
        assert f"✅ *{name}* _(dependency)_\n      check: up (1)" in body
    assert "✅ *api-gateway*" in body and "blue: /health 200 v1.0.0" in body
    assert k8s_view.fingerprint() == before


def test_the_dependency_knob_refuses_unknown_names(sandbox):
    resp = httpx.post(
        f"{sandbox.url}/sandbox/dependencies",
        json={"mysql": False},
        headers={"Authorization": f"Bearer {sandbox.token}"},
        timeout=5,
        verify=sandbox.ssl_context(),
    )
    assert resp.status_code == 400 and "unknown dependencies ['mysql']" in resp.json()["message"]
    assert (
        httpx.post(
            f"{sandbox.url}/sandbox/dependencies",
            json={"postgres": False},
            timeout=5,
            verify=sandbox.ssl_context(),
        ).status_code
        == 401
    )


def _query(prometheus: PrometheusServer, promql: str, at: float | None = None) -> float:
    params: dict[str, str | float] = {"query": promql}
    if at is not None:
        params["time"] = at
    [sample] = httpx.get(f"{prometheus.url}/api/v1/query", params=params, timeout=5).json()["data"]["result"]
    return float(sample["value"][1])


def test_business_metrics_reach_a_real_prometheus(scraping_prometheus: PrometheusServer):
    completed = 'payflow_transactions_total{service="transaction-service",status="completed"}'
    scraping_prometheus.wait_for(f"{completed} > 0")
    scraping_prometheus.wait_for(
        'payflow_transactions_total{service="transaction-service",status="failed"} > 0'
    )
    value = 'sum(payflow_transaction_value_total{currency="EUR"})'
    ratio = _query(scraping_prometheus, f"{value} / sum({completed})")
    assert ratio == pytest.approx(business.AVERAGE_TICKET_EUR)  # euros per completed transaction
    users = _query(scraping_prometheus, "payflow_active_users")
    assert 0 < users <= business.PEAK_ACTIVE_USERS * 1.1 * max(business.WEEKDAY)


def test_transactions_fail_while_postgres_is_down(cluster, k8s_view):  # k8s_view: pods are ready
    traffic, wall = cluster.traffic, cluster.store.wall_offset
    t0 = cluster.now()
    traffic.advance(t0)
    healthy = (traffic.business.completed, traffic.business.failed)
    traffic.advance(t0 + 60)
    expected = business.transactions_between(t0 + wall, t0 + 60 + wall)
    assert traffic.business.completed - healthy[0] == pytest.approx(expected * (1 - business.FAILED_SHARE))
    assert traffic.business.failed - healthy[1] == pytest.approx(expected * business.FAILED_SHARE)
    traffic.set_dependencies({"postgres": False})
    down = (traffic.business.completed, traffic.business.failed)
    traffic.advance(t0 + 120)
    assert traffic.business.completed == down[0]
    assert traffic.business.failed - down[1] == pytest.approx(
        business.transactions_between(t0 + 60 + wall, t0 + 120 + wall)
    )


def test_the_daily_shape_makes_day_over_day_change():
    start = 1_700_000_000.0  # any stretch of four weeks: the same hour on consecutive days differs
    changes = [
        business.transactions_between(t, t + 3600)
        / business.transactions_between(t - 86400, t - 86400 + 3600)
        - 1
        for t in (start + day * 86400 for day in range(28))
    ]
    assert sum(abs(c) for c in changes) / len(changes) > 0.05
    night, noon = (
        business.activity(start - start % 86400 + 3 * 3600),
        business.activity(start - start % 86400 + 12 * 3600),
    )
    assert noon > 5 * night


def test_backfilled_business_history_gives_yesterday_and_today():
    end = time.time() - 60
    server = PrometheusServer()
    server.backfill(history([], end - 26 * 3600, end, 60.0, with_business=True))
    with server.start():
        completed = 'increase(payflow_transactions_total{status="completed"}[1h]'
        for offset, shift in (("", 0), (" offset 1d", 86400)):
            got = _query(server, f"{completed}{offset})", at=end)
            want = business.transactions_between(end - shift - 3600, end - shift) * (
                1 - business.FAILED_SHARE
            )
            assert got == pytest.approx(want, rel=0.03)
        assert _query(server, "payflow_active_users", at=end) == business.active_users(end)
