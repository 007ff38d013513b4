"""The web → worker hand-off as the web process sees it: /alertmanager answers 200 only once the
notification is in the Redis stream (503 when it cannot be, so Alertmanager retries); a slash
command is acked without touching Redis and, if its job cannot be queued, the user is told;
with the embedded store the same bounded, in-order queue lives in the process."""

from __future__ import annotations

from dataclasses import replace

import pytest
import redis

from bot.gateways.jobs import QueuedJobs, StreamQueue, decode
from bot.shell.runtime import build_runtime
from handlers.alerts import AlertNotification
from sandbox import demo
from sandbox.local import wait_until
from sandbox.slack_requests import SlackRequests
from tests.conftest import SIGNING_SECRET
from tests.support.bot_server import BotServer
from tests.support.chat import Chat
from tests.test_alerts import TOKEN, alert, payload, send


@pytest.fixture
def web(settings, catalog, k8s_view, redis_url):
    """The web process alone (no worker reads the stream), as in `serve`."""

    def start(max_len: int = 10_000) -> BotServer:
        jobs = QueuedJobs(StreamQueue(redis_url, max_len=max_len))
        runtime = build_runtime(replace(settings, alertmanager_webhook_token=TOKEN), catalog, jobs=jobs)
        server = BotServer(runtime).start()
        servers.append(server)
        return server

    servers: list[BotServer] = []
    yield start
    for server in servers:
        server.stop()


def _stream(redis_url: str) -> list:
    return redis.Redis.from_url(redis_url).xrange("payflow:jobs")


def test_alertmanager_gets_200_only_once_the_notification_is_queued(web, redis_url, redis_server, slack):
    server = web()
    doc = payload("firing", [alert("firing")])
    response = send(server, doc)
    assert response.status_code == 200 and response.json() == {"status": "accepted", "alerts": 1}
    [(_, fields)] = _stream(redis_url)
    job = decode(fields[b"job"])
    assert isinstance(job, AlertNotification) and job.payload.group_key == doc["groupKey"]

    redis_server.stop()
    try:
        down = send(server, doc)
    finally:
        redis_server.start()
    assert down.status_code == 503 and "retry" in down.json()["error"]
    assert slack.calls_to("chat.postMessage") == []  # the web process never posts


def test_a_full_queue_refuses_instead_of_dropping(web, redis_url):
    server = web(max_len=1)
    assert send(server, payload("firing", [alert("firing")])).status_code == 200
    full = send(server, payload("firing", [alert("firing")], group_key="{}:other"))
    assert full.status_code == 503 and "full" in full.json()["error"]
    assert len(_stream(redis_url)) == 1


def test_a_command_that_cannot_be_queued_is_acked_and_the_user_told(web, redis_server, slack, k8s_view):
    server = web()
    chat = Chat(server, slack, SlackRequests(SIGNING_SECRET, response_url=slack.response_url("cmd")))
    before = k8s_view.fingerprint()
    redis_server.stop()
    try:
        ack = chat.send("scale api-gateway 5")
        assert ack.status_code == 200 and ack.content == b""  # the ack never waits for Redis
        reply = slack.wait_for(lambda s: s.responses, timeout=15)[0]
    finally:
        redis_server.start()
    assert "store is unreachable, so nothing was done" in reply.params["text"]
    assert k8s_view.fingerprint() == before
    assert 'payflow_jobs_total{outcome="refused"} 1.0' in server.get("/metrics").text


def test_embedded_store_runs_a_burst_n_at_a_time_in_order(settings, catalog, k8s_view, slack):
    runtime = build_runtime(replace(settings, redis_url=None, worker_concurrency=2), catalog)
    server = BotServer(runtime).start()
    try:
        slack.hold("response_url")
        for i in range(8):
            signer = SlackRequests(SIGNING_SECRET, response_url=slack.response_url(f"job{i}"))
            signed = signer.slash(
                "help",
                user_id="U0ALICE",
                user_name="alice",
                channel_id=demo.OPS_CHANNEL_ID,
                channel_name=demo.OPS_CHANNEL_NAME,
            )
            assert server.post(signed).status_code == 200
        wait_until(lambda: slack.held("response_url") == 2, 10, "two jobs under way")
        wait_until(lambda: runtime.jobs.waiting == 6, 5, "the other six to wait in the queue")
        assert slack.held("response_url") == 2
        slack.release("response_url")
        server.idle()
    finally:
        server.stop()
    order = [int(r.params["tag"].removeprefix("job")) for r in slack.responses]
    assert sorted(order) == list(range(8))
    assert set(order[:2]) == {0, 1} and all(order.index(j) >= j - 1 for j in range(8)), order
