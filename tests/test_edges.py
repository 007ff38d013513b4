"""The bot's edges, on the real `payflow-bot serve` process: what an outsider can send it and
what it logs. Socket Mode serves no Slack route over HTTP; in HTTP mode every request is
verified before it is read; bad input is a 4xx with one escaped, redacted log line, never a
500, a traceback, the body in the log, or a change to the cluster or the store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox import demo
from sandbox.local import wait_until
from sandbox.slack_requests import SignedRequest, SlackRequests
from tests.conftest import BOT_TOKEN, SIGNING_SECRET
from tests.support.served import Served
from tests.support.socket_mode import SocketModeServer

ROOT = Path(__file__).resolve().parents[1]
APP_TOKEN = "xapp-1-A0PAYFLOW-1-socketmodetoken"
WEBHOOK_TOKEN = "alertmanager-webhook-token-for-tests"
CARD = "4111 1111 1111 1111"
OPS = {"channel_id": demo.OPS_CHANNEL_ID, "channel_name": demo.OPS_CHANNEL_NAME}


def catalog_file(tmp_path: Path) -> Path:
    """The built-in catalog with the demo channel and roles, as an operator would write it."""
    path = tmp_path / "payflow.yaml"
    path.write_text(
        (ROOT / "payflow.yaml")
        .read_text()
        .replace('commands: ["#payflow-ops"]', f'commands: ["{demo.OPS_CHANNEL_ID}"]')
        .replace("operator: {users: [], groups: []}", "operator: {users: [U0ALICE], groups: []}")
        .replace("approver: {users: [], groups: []}", "approver: {users: [U0BOB], groups: []}")
    )
    return path


@pytest.fixture
def serve_env(slack, redis_url, kubeconfig, tmp_path) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        "REDIS_URL": redis_url,
        "KUBECONFIG": str(kubeconfig),
        "PAYFLOW_CONFIG": str(catalog_file(tmp_path)),
        "ALERTMANAGER_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "LOG_LEVEL": "INFO",
    }


@pytest.fixture
def http_served(serve_env, k8s_view) -> Iterator[Served]:
    served = Served(serve_env).wait_up()
    yield served
    served.stop()


@pytest.fixture
def socket_served(serve_env, slack, k8s_view) -> Iterator[Served]:
    socket = SocketModeServer().start()  # readiness includes the socket: give it one to open
    slack.app_token, slack.socket_url = APP_TOKEN, socket.url
    served = Served({**serve_env, "SLACK_APP_TOKEN": APP_TOKEN}, "--socket-mode").wait_up()
    # it really is in Socket Mode: it asked the Slack stand-in for a socket URL
    slack.wait_for(lambda s: s.calls_to("apps.connections.open"), timeout=15)
    wait_until(lambda: served.http.get("/readyz").json().get("socket") == "ok", 15, "the socket to open")
    yield served
    served.stop()
    socket.stop()


def store_snapshot(redis_server) -> dict[bytes, bytes | None]:
    client = redis_server.client()
    return {key: client.dump(key) for key in sorted(client.scan_iter())}


def commands_counted(served: Served) -> float:
    """payflow_commands_total summed: a request that reached the dispatcher counted here."""
    total = 0.0
    for line in served.http.get("/metrics").text.splitlines():
        if line.startswith("payflow_commands_total"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def post(served: Served, request: SignedRequest, path: str = "/slack/events") -> httpx.Response:
    return served.http.post(path, content=request.body.encode(), headers=request.headers)


def unsigned(request: SignedRequest) -> SignedRequest:
    headers = {k: v for k, v in request.headers.items() if not k.startswith("x-slack-")}
    return SignedRequest(request.body, headers)


def slack_calls(slack) -> list[str]:
    """What the bot asked of Slack, apart from Socket Mode's attempts to connect."""
    return [c.method for c in slack.calls if c.method != "apps.connections.open"]


def approval_message(chat):
    def find(stub):
        for m in stub.messages("#payflow-approvals"):
            if any(b.get("type") == "actions" for b in m.blocks or []):
                return m
        return None

    return chat.slack.wait_for(find, timeout=20)


def click(requests: SlackRequests, message: Any, label: str, user_id: str) -> SignedRequest:
    for block in message.blocks:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element.get("text", {}).get("text") == label:
                return requests.button(
                    user_id=user_id,
                    channel_id=message.channel,
                    channel_name="payflow-approvals",
                    message={"ts": message.ts, "text": message.text, "blocks": message.blocks},
                    action=element,
                    block_id=block.get("block_id", ""),
                )
    raise AssertionError(f"no {label!r} button")


def ingress_backend(k8s_view) -> str:
    ing = k8s_view.net.read_namespaced_ingress("payflow-ingress", "payflow", _request_timeout=5)
    return next(p.backend.service.name for p in ing.spec.rules[0].http.paths if p.path == "/")


# ---------------------------------------------------------------- issue 7.1: Socket Mode


def test_socket_mode_serves_no_slack_route_over_http(chat, socket_served, slack, k8s_view, redis_server):
    """A real pending approval (asked through another replica in HTTP mode), then every way of
    reaching the Socket Mode replica's HTTP port as Slack would: all 404, nothing moves."""
    assert chat.run("deploy api-gateway v1.2.3").ack.status_code == 200
    message = approval_message(chat)
    chat.bot.idle()
    served = socket_served
    before = (k8s_view.fingerprint(), store_snapshot(redis_server), slack_calls(slack))
    assert ingress_backend(k8s_view) == "api-gateway-blue"

    real = SlackRequests(SIGNING_SECRET)
    forged = SlackRequests("not-the-signing-secret")
    scale = {"user_id": "U0ALICE", "user_name": "alice", **OPS}
    attempts = {
        "unsigned command": unsigned(real.slash("scale api-gateway 6", **scale)),
        "forged command": forged.slash("scale api-gateway 6", **scale),
        "correctly signed command": real.slash("scale api-gateway 6", **scale),
        "unsigned click as the approver": unsigned(click(real, message, "Approve", "U0BOB")),
        "forged click as the approver": click(forged, message, "Approve", "U0BOB"),
        "correctly signed click": click(real, message, "Approve", "U0BOB"),
    }
    for what, request in attempts.items():
        for path in ("/slack/events", "/slack/events/", "/slack/commands", "/slack/actions", "/"):
            assert post(served, request, path).status_code == 404, (what, path)
    assert served.http.get("/slack/events").status_code == 404

    assert served.http.get("/healthz").status_code == 200
    assert served.http.get("/readyz").json()["ready"] is True
    assert "payflow_ack_seconds" in served.http.get("/metrics").text
    # the Alertmanager webhook stays (it authenticates itself): 401 without its token, not 404
    assert served.http.post("/alertmanager", json={}).status_code == 401

    assert commands_counted(served) == 0
    assert ingress_backend(k8s_view) == "api-gateway-blue"
    assert k8s_view.replicas("api-gateway-blue") == 3
    chat.bot.idle()
    assert (k8s_view.fingerprint(), store_snapshot(redis_server), slack_calls(slack)) == before
    assert served.proc.poll() is None


def test_http_mode_cannot_be_built_without_a_signing_secret(settings, catalog, k8s_view):
    from dataclasses import replace

    from bot.runtime import build_runtime
    from bot.server import build_web

    runtime = build_runtime(replace(settings, slack_signing_secret=None), catalog)
    with pytest.raises(ValueError, match="SLACK_SIGNING_SECRET"):
        build_web(runtime)
    build_web(runtime, socket_mode=True)  # Socket Mode needs none: it serves no Slack route


# ---------------------------------------------------------------- issue 8.3: HTTP mode edges


def refusals(served: Served, start: int) -> list[dict[str, Any]]:
    return [r for r in served.records(start) if r["message"].startswith("refused a Slack request")]


def test_unsigned_and_forged_requests_are_refused_in_one_line_each(
    http_served, slack, k8s_view, redis_server
):
    served = http_served
    real = SlackRequests(SIGNING_SECRET)
    # the body an attacker sends: a card number and a forged log line
    text = f"scale api-gateway 6 {CARD}\n2026-01-01 INFO payflow: approved by U0BOB"
    command = real.slash(text, user_id="U0ALICE", **OPS)
    before = (k8s_view.fingerprint(), store_snapshot(redis_server), slack_calls(slack))
    start = len(served.lines())

    cases = [
        (unsigned(command), 401, "missing X-Slack-Signature or X-Slack-Request-Timestamp"),
        (
            SlackRequests("wrong-secret").slash(text, user_id="U0ALICE", **OPS),
            401,
            "signature does not match",
        ),
        (real.slash(text, user_id="U0ALICE", timestamp=1_000_000_000, **OPS), 401, "more than five minutes"),
        (
            SignedRequest(command.body, {**command.headers, "x-slack-request-timestamp": "abc"}),
            400,
            "malformed X-Slack-Request-Timestamp",
        ),
        (
            SignedRequest(command.body, {**command.headers, "x-slack-signature": "v0=zz"}),
            401,
            "malformed X-Slack-Signature",
        ),
        (SignedRequest(command.body + "&x=1", command.headers), 401, "signature does not match"),
    ]
    for request, status, reason in cases:
        response = post(served, request)
        assert (response.status_code, reason in response.text) == (status, True), response.text

    logged = wait_until(
        lambda: len(refusals(served, start)) >= len(cases) and refusals(served, start), 5, "logs"
    )
    assert len(logged) == len(cases)
    for record, (request, _, reason) in zip(logged, cases, strict=True):
        assert record["level"] == "WARNING" and record["logger"] == "bot.server"
        assert reason in record["message"] and "from 127.0.0.1" in record["message"]
        assert record["message"].endswith(f"({len(request.body.encode())} bytes)")
    everything = "\n".join(served.lines(start))
    assert (
        "4111" not in everything and "approved by" not in everything and "scale api-gateway" not in everything
    )
    assert "Traceback" not in everything

    assert commands_counted(served) == 0
    assert (k8s_view.fingerprint(), store_snapshot(redis_server), slack_calls(slack)) == before
    # the same command, signed as Slack signs it, is served: the check refuses only what it must
    ok = post(served, real.slash("scale api-gateway 6", user_id="U0ALICE", **OPS))
    assert ok.status_code == 200
    wait_until(lambda: k8s_view.replicas("api-gateway-blue") == 6, 15, "the signed scale")
