"""The sandbox's synthetic traffic scraped by a real Prometheus: the bot sees a bad deploy raise
the error rate, and a dependency knocked out through the sandbox's admin endpoint."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from bot.config.catalog import Catalog
from bot.config.settings import Settings
from sandbox.k8s_api import SandboxServer
from sandbox.prometheus import PrometheusServer
from sandbox.traffic import GOOD, rps_of
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
    deadline = time.monotonic() + 30
    while True:
        body = _body(chat.run("metrics api-gateway 1m"))
        if "🔴 error rate" in body or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert "🔴 error rate" in body
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
