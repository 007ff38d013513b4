"""The real `payflow-bot serve` process, configured only through the environment contract: acks
in the web process, jobs through the Redis stream to its supervised worker process, which is
replaced at once when it dies, and whose unfinished jobs are run again, once."""

from __future__ import annotations

import os
import pickle
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis

from bot.chat.dispatch import CommandJob, Invocation
from bot.gateways.jobs import encode
from handlers import Parsed
from handlers.help import Help
from sandbox import demo
from sandbox.local import child_pids, wait_until
from sandbox.slack_requests import SlackRequests
from tests.conftest import BOT_TOKEN, SIGNING_SECRET
from tests.support.served import Served

STREAM, GROUP = "payflow:jobs", "workers"


def _cmdline(pid: int) -> bytes:
    """A child may exit between being listed and being read: then it has no command line."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _worker(pid: int) -> int:
    [worker] = [p for p in child_pids(pid) if b"spawn_main" in _cmdline(p)]
    return worker


def _worker_other_than(pid: int, old: int) -> int | None:
    try:
        new = _worker(pid)
    except ValueError:
        return None
    return new if new != old else None


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


ServeWith = Callable[..., Served]


@pytest.fixture
def serve_with(start_serve, slack, redis_url, kubeconfig, k8s_view, tmp_path) -> ServeWith:
    """`serve` against this test's Slack stand-in, Redis and sandbox, plus `extra` settings."""
    catalog = tmp_path / "payflow.yaml"
    demo.demo_catalog_file(catalog)

    def start(**extra: str) -> Served:
        settings = {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
            "REDIS_URL": redis_url,
            "KUBECONFIG": str(kubeconfig),
            "PAYFLOW_CONFIG": str(catalog),
            **extra,
        }
        return start_serve(settings)

    return start


@pytest.fixture
def serve(serve_with) -> Served:
    return serve_with()


def _command(url: str, slack, text: str, tag: str = "serve") -> httpx.Response:
    signed = SlackRequests(SIGNING_SECRET, response_url=slack.response_url(tag)).slash(
        text, user_id="U0ALICE", user_name="alice", channel_id=demo.OPS_CHANNEL_ID, channel_name="payflow-ops"
    )
    return httpx.post(url + "/slack/events", content=signed.body.encode(), headers=signed.headers, timeout=5)


def _posted(slack) -> list[str]:
    return [c.params["text"] for c in slack.calls_to("chat.postMessage") if c.response.get("ok")]


def _queue_is_empty(redis_server) -> bool:
    r = redis_server.client()
    return r.xlen(STREAM) == 0 and r.xpending(STREAM, GROUP)["pending"] == 0


def test_serve_acks_and_its_worker_does_the_work(serve, slack, k8s_view, redis_server):
    proc, url = serve.proc, serve.url
    ready = httpx.get(url + "/readyz", timeout=5)
    assert ready.json() == {"ready": True, "redis": "ok", "kubernetes": "ok", "jobs": "ok"}

    ack = _command(url, slack, "scale api-gateway 5")
    assert ack.status_code == 200 and ack.content == b""
    post = slack.wait_for(lambda s: s.calls_to("chat.postMessage"), timeout=15)[0]
    assert post.params["text"] == "<@U0ALICE> scaled api-gateway (blue) 3 → 5"
    assert k8s_view.replicas("api-gateway-blue") == 5
    audit = redis_server.client().xrange("payflow:audit")
    assert [(f["actor"], f["action"], f["outcome"]) for _, f in audit] == [("U0ALICE", "scale", "ok")]
    wait_until(lambda: _queue_is_empty(redis_server), 5, "the job to be acknowledged and deleted")

    # a dead worker is replaced at once, with no job needed to notice; the pod stays ready and live
    first = _worker(proc.pid)
    os.kill(first, signal.SIGKILL)
    second = wait_until(lambda: _worker_other_than(proc.pid, first), 10, "a new worker process")
    assert httpx.get(url + "/readyz", timeout=5).status_code == 200
    assert httpx.get(url + "/healthz", timeout=5).status_code == 200
    assert "payflow_worker_restarts_total 1.0" in httpx.get(url + "/metrics", timeout=5).text

    _command(url, slack, "scale api-gateway 4")
    slack.wait_for(lambda s: len(_posted(s)) == 2, timeout=20)
    assert k8s_view.replicas("api-gateway-blue") == 4
    # the worker's own counters reach the web process's /metrics
    metrics = lambda: httpx.get(url + "/metrics", timeout=5).text  # noqa: E731
    wait_until(lambda: 'payflow_commands_total{command="scale",outcome="ok"} 1.0' in metrics(), 5, "counters")
    # they arrive after the job's answer (the worker reports them on its own beat): waited for
    wait_until(lambda: 'payflow_jobs_total{outcome="done"}' in metrics(), 10, "the worker's job counter")

    proc.send_signal(signal.SIGTERM)  # graceful: the worker finishes its jobs and exits with serve
    assert proc.wait(timeout=45) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after shutdown
    assert _gone(second)


def test_a_worker_killed_mid_job_does_not_lose_the_job_and_it_completes_once(
    serve, slack, k8s_view, redis_server
):
    proc, url = serve.proc, serve.url
    slack.hold("response_url")  # the job's first delivery ("Scaling…") waits: the worker is mid-job
    assert _command(url, slack, "scale api-gateway 6").status_code == 200
    wait_until(lambda: slack.held("response_url") >= 1, 15, "the job to be under way")
    assert k8s_view.replicas("api-gateway-blue") == 3  # not scaled yet
    worker = _worker(proc.pid)
    os.kill(worker, signal.SIGKILL)
    slack.release("response_url", drop=True)  # what was in flight never reached Slack

    slack.wait_for(lambda s: _posted(s), timeout=20)
    wait_until(lambda: _queue_is_empty(redis_server), 10, "the job to be acknowledged")
    assert _worker(proc.pid) != worker
    assert _posted(slack) == ["<@U0ALICE> scaled api-gateway (blue) 3 → 6"]
    assert [r.params["text"] for r in slack.responses] == ["⏳ Scaling api-gateway to 6 replicas…"]
    assert k8s_view.replicas("api-gateway-blue") == 6
    audit = redis_server.client().xrange("payflow:audit")
    assert [(f["action"], f["outcome"], f["detail"]) for _, f in audit] == [("scale", "ok", "blue 3 → 6")]


def test_a_burst_larger_than_the_concurrency_waits_in_the_queue_and_is_answered_in_order(
    serve_with, slack, redis_server
):
    url = serve_with(PAYFLOW_WORKER_CONCURRENCY="2").url
    topics = [
        "status",
        "scale",
        "audit",
        "logs",
        "deploy",
        "rollback",
        "cancel",
        "changes",
        "lock",
        "restart",
    ]
    slack.hold("response_url")
    for i, topic in enumerate(topics):
        assert _command(url, slack, f"help {topic}", tag=f"job{i}").status_code == 200
    wait_until(lambda: slack.held("response_url") == 2, 15, "two jobs under way")
    wait_until(lambda: redis_server.client().xlen(STREAM) == len(topics), 5, "the burst to be queued")
    pending = redis_server.client().xpending(STREAM, GROUP)["pending"]
    assert pending == 2  # the other eight wait in the stream, unread, for any worker
    assert slack.held("response_url") == 2
    slack.release("response_url")

    slack.wait_for(lambda s: len(s.responses) == len(topics), timeout=30)
    wait_until(lambda: _queue_is_empty(redis_server), 10, "every job acknowledged")
    order = [int(r.params["tag"].removeprefix("job")) for r in slack.responses]
    assert sorted(order) == list(range(len(topics)))  # each answered, once
    # two at a time, in queue order: the two first in the queue are answered first, and a job
    # starts only once all but one of those before it have finished
    assert set(order[:2]) == {0, 1}
    assert all(order.index(j) >= j - 1 for j in range(len(topics))), order
    assert all(topics[int(r.params["tag"][3:])] in str(r.params) for r in slack.responses)


def _raw(redis_server) -> redis.Redis:
    """Job bytes are pickles, not text."""
    return redis.Redis.from_url(redis_server.url)


def _ghost_job(redis_server, tag: str, deliveries: int) -> str:
    """A job taken by a worker of a replica that then vanished, after `deliveries` attempts."""
    r = _raw(redis_server)
    job = CommandJob(
        Invocation("U0ALICE", demo.OPS_CHANNEL_ID, "payflow-ops", "help", tag), Parsed("help", Help(None))
    )
    job_id = r.xadd(STREAM, {"job": encode(job)})
    r.xreadgroup(GROUP, "gone-replica:1", {STREAM: ">"}, count=1)
    r.xclaim(STREAM, GROUP, "gone-replica:1", 0, [job_id], retrycount=deliveries)
    return job_id.decode()


def test_a_vanished_replicas_job_is_claimed_and_run_and_a_poison_job_is_dead_lettered(
    serve_with, slack, redis_server
):
    _raw(redis_server).xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    ghost = _ghost_job(redis_server, slack.response_url("ghost"), deliveries=1)
    poison = _ghost_job(redis_server, slack.response_url("poison"), deliveries=3)
    served = serve_with(PAYFLOW_JOB_CLAIM_SECONDS="1", PAYFLOW_JOB_MAX_DELIVERIES="3")

    slack.wait_for(lambda s: s.responses, timeout=20)
    wait_until(lambda: _queue_is_empty(redis_server), 10, "both jobs off the stream")
    assert [r.params["tag"] for r in slack.responses] == ["ghost"]
    [(_, dead)] = _raw(redis_server).xrange("payflow:jobs:dead")
    assert dead[b"id"].decode() == poison and b"4 times" in dead[b"reason"]
    assert ghost != poison
    dead_lettered = "dead-lettered to payflow:jobs:dead: handed out 4 times without finishing"
    wait_until(lambda: dead_lettered in served.text(), 5, "the dead-letter log line")


def test_undecodable_or_hostile_job_bytes_are_dead_lettered_never_run(serve_with, slack, redis_server):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch /tmp/payflow-pwned",))

    r = _raw(redis_server)
    r.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    evil = r.xadd(STREAM, {"job": pickle.dumps(Evil())})
    serve_with()
    wait_until(lambda: r.xlen("payflow:jobs:dead") == 1, 15, "the job to be dead-lettered")
    assert r.xrange("payflow:jobs:dead")[0][1][b"id"] == evil
    assert not Path("/tmp/payflow-pwned").exists()
    assert _queue_is_empty(redis_server)


def test_liveness_fails_when_the_worker_cannot_be_kept_up(serve, slack):
    proc, url = serve.proc, serve.url
    assert httpx.get(url + "/healthz", timeout=5).status_code == 200
    worker = _worker(proc.pid)
    for _ in range(5):  # five quick deaths in a row
        os.kill(worker, signal.SIGKILL)
        worker = wait_until(lambda w=worker: _worker_other_than(proc.pid, w), 30, "the next worker")
    health = httpx.get(url + "/healthz", timeout=5)
    assert health.status_code == 503 and health.text == "worker process keeps dying (5 times in a row)"
    assert "payflow_worker_restarts_total 5.0" in httpx.get(url + "/metrics", timeout=5).text


def test_a_worker_never_outlives_its_web_process(serve):
    proc = serve.proc
    worker = _worker(proc.pid)
    proc.kill()  # no graceful shutdown at all: the worker sees its pipe close and stops
    proc.wait()
    wait_until(lambda: _gone(worker), 45, "the orphaned worker to stop")


def test_a_worker_killed_while_posting_a_new_alert_group_posts_it_once_on_the_rerun(
    serve_with, slack, redis_server
):
    """The rerun of the job finds the group claimed by its own killed first run: that claim is
    the job's, not another replica's, so the rerun posts at once instead of waiting the claim out
    and dropping the alert (Alertmanager already has its 200 and never sends it again)."""
    from tests.test_alerts import TOKEN, alert, group_records, payload, top_level

    served = serve_with(ALERTMANAGER_WEBHOOK_TOKEN=TOKEN)
    proc, url = served.proc, served.url
    slack.hold("chat.postMessage")  # the group's first post waits: the worker is mid-post
    doc = payload("firing", [alert("firing")])
    headers = {"authorization": f"Bearer {TOKEN}"}
    assert httpx.post(url + "/alertmanager", json=doc, headers=headers, timeout=5).status_code == 200
    wait_until(lambda: slack.held("chat.postMessage") >= 1, 15, "the alert's post to be under way")
    worker = _worker(proc.pid)
    os.kill(worker, signal.SIGKILL)
    slack.release("chat.postMessage", drop=True)  # the post in flight never reached Slack

    # well before the claim's TTL: the rerun starts within a second or two
    [message] = slack.wait_for(lambda s: top_level(s), timeout=25)
    assert "FIRING" in message.text and "HighErrorRate" in message.text
    wait_until(lambda: _queue_is_empty(redis_server), 10, "the job to be acknowledged")
    wait_until(lambda: any(r.get("ts") for r in group_records(redis_server).values()), 5, "the record")
    [record] = group_records(redis_server).values()
    assert record["ts"] == message.ts and record["claim"] is None
    assert len(top_level(slack)) == 1
