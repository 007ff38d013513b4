"""A hung dependency costs one deadline, not one per hidden retry, and the user is told which one.

Each dependency in turn is replaced by a black hole: a real TCP server that accepts connections
and never answers (tests/support/blackhole.py). Assertions are on what the user is told and on
how many connections the black hole saw (one per call), never on timing.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from bot.chat.blocks import Message
from bot.config.catalog import Catalog
from bot.config.metrics import Probe
from bot.config.settings import Settings
from bot.gateways.alertmanager import Alertmanager, AlertmanagerError
from bot.gateways.healthcheck import probe_dependency
from bot.gateways.kube import Kube
from bot.gateways.kube_objects import Unreachable
from bot.gateways.prom import Prom, PromUnavailable
from bot.gateways.slack import DeliveryFailed, DeliveryPolicy, SlackGateway, make_client
from bot.gateways.store import AuditEntry, RedisStore, StoreUnavailable
from bot.shell.runtime import build_runtime
from sandbox.local import wait_until
from sandbox.slack_api import SlackApiStub
from sandbox.slack_requests import SlackRequests
from tests.conftest import BOT_TOKEN, SIGNING_SECRET
from tests.support.blackhole import BlackHole
from tests.support.bot_server import BotServer
from tests.support.chat import Chat
from tests.support.loopback import kubeconfig_at
from tests.support.prom import without_digests


@pytest.fixture
def hole() -> Iterator[BlackHole]:
    with BlackHole() as server:
        yield server


# --------------------------------------------------------------------------------------------
# Each gateway on its own: one connection per call, an error that names the dependency


def test_kubernetes_read_costs_one_attempt(hole: BlackHole, tmp_path: Path) -> None:
    kube = Kube.connect("payflow", kubeconfig=str(kubeconfig_at(tmp_path / "kc", hole)), timeout=0.5)
    try:
        with pytest.raises(Unreachable) as info:
            asyncio.run(kube.deployments())
    finally:
        kube.close()
    assert str(info.value) == "Kubernetes API did not answer within 0.5 s"
    assert not info.value.uncertain
    assert hole.connections == 1  # the client's default urllib3 Retry made this up to 4
    assert hole.requests[0].startswith(b"GET /apis/apps/v1/namespaces/payflow/deployments")


def test_kubernetes_service_proxy_costs_one_attempt_within_its_deadline(
    hole: BlackHole, tmp_path: Path
) -> None:
    """`/payflow health`'s probes through the API server (aiohttp, not the official client)."""
    kube = Kube.connect("payflow", kubeconfig=str(kubeconfig_at(tmp_path / "kc", hole)), timeout=0.5)

    async def probe() -> tuple[int, str]:
        try:
            return await kube.proxy_get("api-gateway-blue", 8080, "/health", timeout=0.5)
        finally:
            await kube.aclose()

    started = time.monotonic()
    with pytest.raises(Unreachable) as info:
        asyncio.run(probe())
    took = time.monotonic() - started
    assert str(info.value) == "Kubernetes API did not answer within 0.5 s"
    assert took < 5, "one deadline, not one per phase or per retry"
    assert hole.connections == 1
    assert hole.requests[0].startswith(
        b"GET /api/v1/namespaces/payflow/services/api-gateway-blue:8080/proxy/health"
    )
    assert b"authorization: bearer t0ken" in hole.requests[0].lower()


def test_kubernetes_service_proxy_through_an_http_proxy_stays_with_the_official_client(
    hole: BlackHole, tmp_path: Path
) -> None:
    """A kubeconfig with `proxy-url`: the probes go where the client's other calls go (the
    proxy, here one that never answers), within one deadline, not around it."""
    path = kubeconfig_at(tmp_path / "kc", hole)
    config = yaml.safe_load(path.read_text())
    config["clusters"][0]["cluster"].update(
        server="https://kubernetes.invalid:6443", **{"proxy-url": hole.url}
    )
    path.write_text(yaml.safe_dump(config))
    kube = Kube.connect("payflow", kubeconfig=str(path), timeout=0.5)
    try:
        with pytest.raises(Unreachable) as info:
            asyncio.run(kube.proxy_get("api-gateway-blue", 8080, "/health", timeout=0.5))
    finally:
        kube.close()
    assert str(info.value) == "Kubernetes API did not answer within 0.5 s"
    assert hole.connections == 1
    assert hole.requests[0].startswith(b"CONNECT kubernetes.invalid:6443")


def test_kubernetes_write_is_never_resent_and_said_to_be_uncertain(hole: BlackHole, tmp_path: Path) -> None:
    kube = Kube.connect("payflow", kubeconfig=str(kubeconfig_at(tmp_path / "kc", hole)), timeout=0.5)
    try:
        with pytest.raises(Unreachable) as info:
            asyncio.run(kube.write_scale("api-gateway-blue", 5, expected=3))
    finally:
        kube.close()
    assert info.value.uncertain
    assert "may or may not have been applied" in str(info.value)
    assert hole.connections == 1
    assert hole.requests[0].startswith(b"PATCH ")


def test_redis_call_costs_one_attempt(hole: BlackHole) -> None:
    async def main() -> None:
        async with RedisStore(f"redis://127.0.0.1:{hole.port}/0", timeout=0.5) as store:
            with pytest.raises(StoreUnavailable) as info:
                await store.append_audit(AuditEntry("U1", "scale", "ok"))
            assert info.value.brief == "Redis (the bot's store) did not answer within 0.5 s"
            assert hole.connections == 1
            with pytest.raises(StoreUnavailable):
                await store.get("change:1")
            assert hole.connections == 2  # the failed connection is dropped, a new call opens one

    asyncio.run(main())


def test_prometheus_query_costs_one_attempt(hole: BlackHole, catalog: Catalog) -> None:
    prom = Prom(hole.url, timeout=0.5, catalog=catalog)
    try:
        with pytest.raises(PromUnavailable, match=r"^Prometheus did not answer within 0.5 s$"):
            asyncio.run(prom.vector("up"))
    finally:
        prom.close()
    assert hole.connections == 1
    assert hole.requests[0].startswith(b"GET /api/v1/query?")


def test_alertmanager_silence_costs_one_attempt(hole: BlackHole) -> None:
    now = datetime.now(UTC)
    am = Alertmanager(hole.url, timeout=0.5)
    with pytest.raises(AlertmanagerError, match=r"^Alertmanager did not answer within 0.5 s$"):
        asyncio.run(
            am.create_silence(
                {"alertname": "X"}, starts=now, ends=now + timedelta(hours=1), created_by="U1", comment="c"
            )
        )
    assert hole.connections == 1
    assert hole.requests[0].startswith(b"POST /api/v2/silences")


def test_slack_web_api_call_costs_one_deadline(hole: BlackHole) -> None:
    """A delivery retries a timeout within its one explicit deadline (the outbox's contract), and
    slack_sdk adds no retries of its own: a 2 s deadline with 1 s attempts is two attempts."""
    gateway = SlackGateway(
        make_client(BOT_TOKEN, hole.url + "/api/", timeout=1), policy=DeliveryPolicy(total_seconds=2)
    )
    started = time.monotonic()
    with pytest.raises(DeliveryFailed, match="timed out"):
        asyncio.run(gateway.post("C1", Message("hello")))
    assert time.monotonic() - started < 2.5
    assert hole.connections == 2
    assert all(r.startswith(b"POST /api/chat.postMessage") for r in hole.requests)


def test_http_dependency_probe_costs_one_attempt(hole: BlackHole) -> None:
    result = asyncio.run(probe_dependency(Probe(http=hole.url + "/health", timeout_seconds=0.5)))
    assert (result.ok, result.summary) == (False, "http: no answer within 0.5 s")
    assert hole.connections == 1


# --------------------------------------------------------------------------------------------
# The served bot: the user is told, and other commands are answered meanwhile


def _texts(slack: SlackApiStub) -> list[str]:
    return [json.dumps(c.params, ensure_ascii=False) for c in slack.responses] + [
        json.dumps(c.params, ensure_ascii=False) for c in slack.calls_to("chat.postMessage")
    ]


def _served(settings: Settings, catalog: Catalog, **parts: object) -> BotServer:
    """The bot served with no digest schedules: in the first minutes of every hour the hourly
    digest would ask the hung dependency too, and the counts below would include it."""
    runtime = build_runtime(settings, without_digests(catalog), **parts)  # type: ignore[arg-type]
    return BotServer(runtime).start()


def test_hung_kubernetes_api_status_names_it_and_help_still_answers(
    hole: BlackHole, tmp_path: Path, catalog: Catalog, slack: SlackApiStub, redis_url: str
) -> None:
    kubeconfig = kubeconfig_at(tmp_path / "kc", hole)
    settings = Settings(
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=slack.api_url,
        redis_url=redis_url,
        kubeconfig=str(kubeconfig),
    )
    kube = Kube.connect(catalog.namespace, kubeconfig=str(kubeconfig), timeout=3)
    bot = _served(settings, catalog, kube=kube)
    try:
        chat = Chat(bot, slack, SlackRequests(SIGNING_SECRET, response_url=slack.response_url("cmd")))
        assert chat.send("status").status_code == 200
        wait_until(lambda: hole.connections >= 1, 10, "status to reach the hung API server")
        help_sent = len(slack.responses)
        assert chat.send("help").status_code == 200
        wait_until(lambda: len(slack.responses) > help_sent, 10, "the help answer")
        # help was answered while status still waited on the API server: nothing about it yet
        assert not any("did not answer" in t for t in _texts(slack))
        assert "/payflow status" in json.dumps(slack.responses[help_sent].params)
        bot.idle(timeout=15)
        answers = [t for t in _texts(slack) if "did not answer" in t]
        assert len(answers) == 1
        assert (
            "Kubernetes API did not answer within 3 s; nothing was changed. Try again shortly." in answers[0]
        )
        # status reads the ingresses first (then Services, deployments and pods in parallel):
        # one attempt, and nothing more is asked of an API server that did not answer it
        assert hole.connections == 1
        paths = [r.split(b" ")[1].split(b"?")[0].rsplit(b"/", 1)[-1] for r in hole.requests]
        assert paths == [b"ingresses"]
        entries = bot.call(bot.runtime.store.audit(limit=5))
        assert [(e.action, e.outcome) for e in entries if e.action == "status"] == [("status", "failed")]
    finally:
        bot.stop()


def test_hung_redis_audit_command_names_it_within_one_deadline(
    hole: BlackHole, catalog: Catalog, slack: SlackApiStub, kubeconfig: Path, k8s_view: object
) -> None:
    settings = Settings(
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=slack.api_url,
        kubeconfig=str(kubeconfig),
    )
    store = RedisStore(f"redis://127.0.0.1:{hole.port}/0", timeout=1)
    bot = _served(settings, catalog, store=store)
    try:
        # the change sweep and the backup follow sweep read the store once at start-up (then
        # every 30 s): let both show up, or the later one is counted as the command's
        wait_until(lambda: hole.connections >= 2, 10, "both start-up sweeps to reach the store")
        before = hole.connections
        chat = Chat(bot, slack, SlackRequests(SIGNING_SECRET, response_url=slack.response_url("cmd")))
        answer = chat.run("audit")
        text = answer.all_text()
        assert "Redis (the bot's store) did not answer within 1 s, so nothing was done." in text
        # one call, one connection: the failed command's audit entry is not attempted as well
        assert hole.connections - before == 1
    finally:
        bot.stop()


def test_hung_prometheus_metrics_names_it(
    hole: BlackHole, settings: Settings, catalog: Catalog, slack: SlackApiStub, k8s_view: object
) -> None:
    prom = Prom(hole.url, timeout=1, catalog=catalog)
    bot = _served(settings, catalog, prom=prom)
    try:
        chat = Chat(bot, slack, SlackRequests(SIGNING_SECRET, response_url=slack.response_url("cmd")))
        answer = chat.run("metrics api-gateway")
        text = answer.all_text()
        assert "❔ error rate *unavailable: Prometheus did not answer within 1 s*" in text
        assert "no chart: Prometheus did not answer" in text  # no second deadline for the chart
        # the service's figures and the three business figures asked at once (one deadline for
        # all), and nothing after the first failed: no second deadline for the chart
        assert hole.connections == 4
        assert sum(r.startswith(b"GET /api/v1/query?") for r in hole.requests) >= 1
        assert all(r.startswith(b"GET /api/v1/query") for r in hole.requests)
    finally:
        bot.stop()
