"""The real `payflow-bot serve` process, configured only through the environment contract:
acks in the web process, work in its worker process, and the worker restarted if it dies."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandbox import demo
from sandbox.local import child_pids, free_port, serve_process, wait_until
from sandbox.slack_requests import SlackRequests
from tests.conftest import BOT_TOKEN, SIGNING_SECRET

ROOT = Path(__file__).resolve().parents[1]


def _worker(pid: int) -> int:
    [worker] = [p for p in child_pids(pid) if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
    return worker


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


@pytest.fixture
def serve(slack, redis_url, kubeconfig, k8s_view, tmp_path) -> Iterator[tuple[subprocess.Popen, str]]:
    port = free_port()
    catalog = tmp_path / "payflow.yaml"
    # the built-in catalog with the demo channel and roles, written as a file like an operator would
    catalog.write_text(
        (ROOT / "payflow.yaml")
        .read_text()
        .replace('commands: ["#payflow-ops"]', f'commands: ["{demo.OPS_CHANNEL_ID}"]')
        .replace("operator: {users: [], groups: []}", "operator: {users: [U0ALICE], groups: []}")
    )
    settings = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        "REDIS_URL": redis_url,
        "KUBECONFIG": str(kubeconfig),
        "PAYFLOW_CONFIG": str(catalog),
    }
    proc = serve_process(port, settings, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(url + "/healthz", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            return False

    wait_until(up, 15, "serve to answer /healthz")
    yield proc, url
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _command(url: str, slack, text: str) -> httpx.Response:
    signed = SlackRequests(SIGNING_SECRET, response_url=slack.response_url("serve")).slash(
        text, user_id="U0ALICE", user_name="alice", channel_id=demo.OPS_CHANNEL_ID, channel_name="payflow-ops"
    )
    return httpx.post(url + "/slack/events", content=signed.body.encode(), headers=signed.headers, timeout=5)


def test_serve_acks_and_its_worker_does_the_work(serve, slack, k8s_view, redis_server):
    proc, url = serve
    ready = httpx.get(url + "/readyz", timeout=5)
    assert ready.json() == {"ready": True, "redis": "ok", "kubernetes": "ok", "jobs": "ok"}

    ack = _command(url, slack, "scale api-gateway 5")
    assert ack.status_code == 200 and ack.content == b""
    post = slack.wait_for(lambda s: s.calls_to("chat.postMessage"), timeout=15)[0]
    assert post.params["text"] == "<@U0ALICE> scaled api-gateway (blue) 3 → 5"
    assert k8s_view.replicas("api-gateway-blue") == 5
    audit = redis_server.client().xrange("payflow:audit")
    assert [(f["actor"], f["action"], f["outcome"]) for _, f in audit] == [("U0ALICE", "scale", "ok")]

    os.kill(_worker(proc.pid), signal.SIGKILL)
    wait_until(lambda: httpx.get(url + "/readyz", timeout=5).status_code == 503, 15, "readyz to report it")
    assert httpx.get(url + "/readyz", timeout=5).json()["jobs"] == "worker process is down"

    _command(url, slack, "scale api-gateway 4")  # the next job starts a new worker
    slack.wait_for(lambda s: len(s.calls_to("chat.postMessage")) == 2, timeout=20)
    assert k8s_view.replicas("api-gateway-blue") == 4
    assert httpx.get(url + "/readyz", timeout=5).json()["jobs"] == "ok"

    worker = _worker(proc.pid)
    proc.send_signal(signal.SIGTERM)  # graceful: the worker finishes its jobs and exits with serve
    assert proc.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after shutdown
    assert _gone(worker)
