"""`payflow-bot serve` as a pod runs it: gets ready without importing what only some commands use,
refuses to start split-brained, stays ready through a Redis blip (reporting it), and in Socket Mode
refuses a rejected token at once, reports the websocket in readiness and closes it with a close
frame on SIGTERM.

Socket Mode runs against a local websocket server standing in for Slack's: the Slack stand-in's
`apps.connections.open` hands out its ws:// URL, as Slack hands out wss:// ones.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox import demo
from sandbox.local import wait_until
from tests.conftest import BOT_TOKEN, SIGNING_SECRET
from tests.support.socket_mode import SocketModeServer

APP_TOKEN = "xapp-1-A0PAYFLOW-test"
DRAIN_BOUND = 45  # seconds from SIGTERM to exit, as the manifest's terminationGracePeriodSeconds assumes


def _catalog(tmp_path: Path) -> Path:
    path = tmp_path / "payflow.yaml"
    demo.demo_catalog_file(path)
    return path


def _settings(slack, kubeconfig: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        "KUBECONFIG": str(kubeconfig),
        "PAYFLOW_CONFIG": str(_catalog(tmp_path)),
        **extra,
    }


# ---------------------------------------------------------------- start-up

# `serve`'s own command line, run by this script instead of `-m bot.shell.cli` (the process is the
# same otherwise): once /readyz answers 200 it writes the web process's sys.modules to stderr.
MODULES_AT_READY = """
import json, sys, threading, time, urllib.request
args = sys.argv[sys.argv.index("bot.shell.cli") + 1 :]
ready = "http://127.0.0.1:%s/readyz" % args[args.index("--port") + 1]
def report():
    while True:
        try:
            if urllib.request.urlopen(ready, timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.02)
    print("modules at ready: " + json.dumps(sorted(sys.modules)), file=sys.stderr, flush=True)
threading.Thread(target=report, daemon=True).start()
from bot.shell.cli import main
sys.exit(main(args))
"""

# What only some commands use is imported by the first of them (in the worker), never by the web
# process on its way to ready: each of these made start-up slower when it was.
NOT_AT_START = {
    "psycopg": "PostgreSQL (db, users)",
    "httpx": "RabbitMQ (mq), Alertmanager silences",
    "matplotlib": "charts",
    "numpy": "charts",
    "prometheus_api_client": "Prometheus queries",
    "kubernetes.client.api.apps_v1_api": "the generated Kubernetes API classes (warmed in the worker)",
    "kubernetes.client.api.core_v1_api": "the generated Kubernetes API classes (warmed in the worker)",
    "websockets": "uvicorn's websocket protocol (serve has no websocket route)",
}


def test_the_web_process_gets_ready_without_what_only_some_commands_use(
    slack, kubeconfig, tmp_path, redis_url, start_serve
):
    unused = "127.0.0.1:9"  # every data store set, so each gateway is built; none is reached
    settings = _settings(
        slack,
        kubeconfig,
        tmp_path,
        REDIS_URL=redis_url,
        DATABASE_URL=f"postgresql://payflow_bot:secret@{unused}/payflow",
        RABBITMQ_API_URL=f"http://monitor:secret@{unused}",
        PAYFLOW_REDIS_URL=f"redis://{unused}/0",
        PROMETHEUS_URL=f"http://{unused}",
        ALERTMANAGER_URL=f"http://{unused}",
    )
    served = start_serve(settings, wrap=(sys.executable, "-c", MODULES_AT_READY))
    prefix = "modules at ready: "
    line = wait_until(
        lambda: next((x for x in served.lines() if x.startswith(prefix)), None), 30, "/readyz to answer 200"
    )
    modules = set(json.loads(line.removeprefix(prefix)))
    # the start-up it saw is serve's: the worker's hand-off, every handler and every gateway
    assert {"bot.shell.server", "bot.shell.worker", "handlers.db", "handlers.mq"} <= modules
    assert {"bot.gateways.postgres", "bot.gateways.rabbitmq", "bot.gateways.charts"} <= modules
    imported = {
        name: why
        for name, why in NOT_AT_START.items()
        if any(m == name or m.startswith(name + ".") for m in modules)
    }
    assert not imported, f"imported by the web process before it was ready: {imported}"
    assert served.http.get("/readyz").json()["ready"] is True


# ---------------------------------------------------------------- replicas and Redis


def test_more_than_one_replica_without_redis_refuses_to_start(slack, kubeconfig, tmp_path, start_serve):
    served = start_serve(_settings(slack, kubeconfig, tmp_path, PAYFLOW_REPLICAS="2"), wait=False)
    assert served.wait_exit(30) == 2
    err = served.text()
    assert "payflow-bot serve cannot start" in err
    assert "PAYFLOW_REPLICAS is 2 but REDIS_URL is not set" in err and "split brain" in err
    assert "Traceback" not in err
    assert slack.calls_to("auth.test") == []  # refused before talking to anyone


@pytest.mark.parametrize("value", ["two", "0", "-1"])
def test_a_bad_replicas_setting_is_refused(slack, kubeconfig, tmp_path, value, redis_url, start_serve):
    settings = _settings(slack, kubeconfig, tmp_path, PAYFLOW_REPLICAS=value, REDIS_URL=redis_url)
    served = start_serve(settings, wait=False)
    assert served.wait_exit(30) == 2
    err = served.text()
    assert "PAYFLOW_REPLICAS must be a whole number of at least 1" in err and "Traceback" not in err


def test_redis_blip_keeps_the_pod_ready_and_users_get_the_bots_own_answer(
    slack, kubeconfig, tmp_path, redis_url, redis_server, k8s_view, start_serve
):
    from sandbox.slack_requests import SlackRequests

    settings = _settings(slack, kubeconfig, tmp_path, PAYFLOW_REPLICAS="2", REDIS_URL=redis_url)
    url = start_serve(settings).url
    ready = httpx.get(url + "/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["redis"] == "ok"
    redis_server.stop()
    try:
        down = httpx.get(url + "/readyz", timeout=10)
        metrics = httpx.get(url + "/metrics", timeout=10).text
        signed = SlackRequests(SIGNING_SECRET, response_url=slack.response_url("blip")).slash(
            "scale api-gateway 5",
            user_id="U0ALICE",
            user_name="alice",
            channel_id=demo.OPS_CHANNEL_ID,
            channel_name="payflow-ops",
        )
        ack = httpx.post(
            url + "/slack/events", content=signed.body.encode(), headers=signed.headers, timeout=5
        )
        said = slack.wait_for(
            lambda s: [r for r in s.responses if "store is unreachable" in json.dumps(r.params)],
            timeout=30,
        )
    finally:
        redis_server.start()
    assert down.status_code == 200, down.text  # still in the Service: it can answer Slack
    body = down.json()
    assert body["ready"] is True and body["jobs"] == "ok" and body["kubernetes"] == "ok"
    assert body["redis"].startswith("unavailable")
    assert 'payflow_dependency_up{dependency="redis"} 0.0' in metrics
    assert 'payflow_dependency_up{dependency="kubernetes"} 1.0' in metrics
    assert ack.status_code == 200
    assert "store is unreachable, so nothing was done" in said[0].params["text"]
    assert k8s_view.replicas("api-gateway-blue") == 3  # nothing done


# ---------------------------------------------------------------- Socket Mode


@pytest.fixture
def socket_server() -> Iterator[SocketModeServer]:
    server = SocketModeServer().start()
    yield server
    server.stop()


def slash_envelope(text: str, envelope_id: str, response_url: str) -> dict[str, Any]:
    return {
        "envelope_id": envelope_id,
        "type": "slash_commands",
        "accepts_response_payload": True,
        "payload": {
            "token": "legacy",
            "team_id": "T0PAYFLOW",
            "team_domain": "payflow",
            "channel_id": demo.OPS_CHANNEL_ID,
            "channel_name": "payflow-ops",
            "user_id": "U0ALICE",
            "user_name": "alice",
            "command": "/payflow",
            "text": text,
            "api_app_id": "A0PAYFLOW",
            "response_url": response_url,
            "trigger_id": "1.2.3",
        },
    }


def test_rejected_app_token_exits_at_once_with_a_clear_message(
    slack, kubeconfig, tmp_path, redis_url, socket_server, start_serve
):
    slack.app_token = APP_TOKEN
    slack.socket_url = socket_server.url
    settings = _settings(slack, kubeconfig, tmp_path, REDIS_URL=redis_url, SLACK_APP_TOKEN="xapp-1-revoked")
    started = time.monotonic()
    served = start_serve(settings, "--socket-mode", wait=False)
    code = served.wait_exit(30)
    err = served.text()
    assert code == 3, err
    assert time.monotonic() - started < 30  # not a retry every 10 s
    assert "payflow-bot serve cannot start: Slack refused SLACK_APP_TOKEN (invalid_auth)" in err
    assert "xapp-1-revoked" not in err and "Traceback" not in err
    assert [c.response["error"] for c in slack.calls_to("apps.connections.open")] == ["invalid_auth"]
    assert socket_server.connections == []


def test_slack_that_never_answers_ends_start_up_within_its_deadline(
    slack, kubeconfig, tmp_path, redis_url, start_serve
):
    """apps.connections.open on a black hole: one connection, one deadline, exit 3 — not a pod
    waiting forever for a socket."""
    from bot.chat.socket_mode import OPEN_TIMEOUT
    from tests.support.blackhole import BlackHole

    with BlackHole() as hole:
        settings = _settings(slack, kubeconfig, tmp_path, REDIS_URL=redis_url, SLACK_APP_TOKEN=APP_TOKEN)
        settings["SLACK_API_URL"] = hole.url + "/api/"
        started = time.monotonic()
        served = start_serve(settings, "--socket-mode")
        assert served.http.get("/readyz", timeout=5).json()["socket"] == "not connected yet"
        code = served.wait_exit(OPEN_TIMEOUT + 20)
        err = served.text()
        took = time.monotonic() - started
        assert code == 3, err
        assert OPEN_TIMEOUT <= took < OPEN_TIMEOUT + 15
        assert "apps.connections.open did not answer (TimeoutError) within 10 s" in err
        assert hole.connections == 1  # no hidden retry


def test_sigterm_while_the_socket_connects_stops_at_once(slack, kubeconfig, tmp_path, redis_url, start_serve):
    """A websocket endpoint that accepts TCP and never completes the handshake; SIGTERM does not
    wait for the connect deadline."""
    from tests.support.blackhole import BlackHole

    with BlackHole() as hole:
        slack.app_token = APP_TOKEN
        slack.socket_url = hole.url.replace("http://", "ws://") + "/link"
        settings = _settings(slack, kubeconfig, tmp_path, REDIS_URL=redis_url, SLACK_APP_TOKEN=APP_TOKEN)
        served = start_serve(settings, "--socket-mode", wait=False)
        wait_until(lambda: served.up() and hole.connections, 30, "serve to try the socket")
        stopping = time.monotonic()
        served.proc.send_signal(signal.SIGTERM)
        code = served.wait_exit(DRAIN_BOUND)
        took = time.monotonic() - stopping
        err = served.text()
    assert code in (0, -signal.SIGTERM), err
    assert took < 10
    assert "Traceback" not in err


def test_socket_mode_ready_acks_over_the_socket_and_closes_cleanly_on_sigterm(
    slack, kubeconfig, tmp_path, redis_url, socket_server, k8s_view, start_serve
):
    slack.app_token = APP_TOKEN
    slack.socket_url = socket_server.url
    settings = _settings(slack, kubeconfig, tmp_path, REDIS_URL=redis_url, SLACK_APP_TOKEN=APP_TOKEN)
    served = start_serve(settings, "--socket-mode")
    url = served.url
    ready = httpx.get(url + "/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["socket"] == "ok", ready.text

    socket_server.send(slash_envelope("scale api-gateway 5", "env-1", slack.response_url("sock")))
    wait_until(lambda: socket_server.acks, 10, "the envelope's ack")
    assert socket_server.acks[0]["envelope_id"] == "env-1"
    post = slack.wait_for(lambda s: s.calls_to("chat.postMessage"), timeout=20)[0]
    assert post.params["text"] == "<@U0ALICE> scaled api-gateway (blue) 3 → 5"
    assert k8s_view.replicas("api-gateway-blue") == 5

    # a command in flight when SIGTERM lands is finished, not dropped: Slack answers slowly, so
    # the job is still talking to it when the signal arrives
    slack.set_latency(1.5)
    socket_server.send(slash_envelope("scale api-gateway 4", "env-2", slack.response_url("sock")))
    wait_until(lambda: len(socket_server.acks) == 2, 10, "the second ack")
    stopping, signalled_at = time.monotonic(), time.time()
    served.proc.send_signal(signal.SIGTERM)
    code = served.wait_exit(DRAIN_BOUND + 5)
    took = time.monotonic() - stopping
    err = served.text()
    assert code in (0, -signal.SIGTERM), err
    assert took < DRAIN_BOUND
    wait_until(lambda: socket_server.close_codes, 5, "the server to see the close")
    assert socket_server.close_codes == [1000]  # a close frame, not 1006
    assert k8s_view.replicas("api-gateway-blue") == 4
    [done] = [c for c in slack.calls_to("chat.postMessage") if "5 → 4" in c.params["text"]]
    assert done.at > signalled_at  # answered after the signal: in flight then, and waited for
    assert "Traceback" not in err


def test_readiness_follows_the_socket(slack, kubeconfig, tmp_path, redis_url, socket_server, start_serve):
    slack.app_token = APP_TOKEN
    slack.socket_url = socket_server.url
    settings = _settings(slack, kubeconfig, tmp_path, REDIS_URL=redis_url, SLACK_APP_TOKEN=APP_TOKEN)
    url = start_serve(settings, "--socket-mode").url
    assert httpx.get(url + "/readyz", timeout=5).json()["socket"] == "ok"
    socket_server.refusing = True  # Slack away: reconnects fail
    socket_server.drop_all()
    wait_until(lambda: httpx.get(url + "/readyz", timeout=5).status_code == 503, 15, "readiness to drop")
    body = httpx.get(url + "/readyz", timeout=5).json()
    assert body["ready"] is False and body["socket"].startswith("websocket not connected")
    assert httpx.get(url + "/healthz", timeout=5).text == "ok"  # alive: the SDK reconnects

    socket_server.refusing = False  # Slack back
    wait_until(lambda: httpx.get(url + "/readyz", timeout=5).status_code == 200, 40, "readiness to return")
