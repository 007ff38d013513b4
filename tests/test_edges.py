"""The bot's edges, on the real `payflow-bot serve` process: what an outsider can send it and
what it logs. Socket Mode serves no Slack route over HTTP; in HTTP mode every request is
verified before it is read; bad input is a 4xx with one escaped, redacted log line, never a
500, a traceback, the body in the log, or a change to the cluster or the store."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from sandbox import demo
from sandbox.local import wait_until
from sandbox.slack_requests import SignedRequest, SlackRequests
from tests.conftest import BOT_TOKEN, SIGNING_SECRET
from tests.support.fuzz import CARD as FUZZ_CARD
from tests.support.fuzz import MARKER, Fuzzer
from tests.support.served import Served
from tests.support.socket_mode import SocketModeServer

APP_TOKEN = "xapp-1-A0PAYFLOW-1-socketmodetoken"
WEBHOOK_TOKEN = "alertmanager-webhook-token-for-tests"
CARD = "4111 1111 1111 1111"
OPS = {"channel_id": demo.OPS_CHANNEL_ID, "channel_name": demo.OPS_CHANNEL_NAME}


def catalog_file(tmp_path: Path) -> Path:
    """The built-in catalog with the demo channel and roles, as an operator would write it."""
    path = tmp_path / "payflow.yaml"
    demo.demo_catalog_file(path, approvers=["U0BOB"])
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
def http_served(serve_env, k8s_view, start_serve) -> Served:
    return start_serve(serve_env)


@pytest.fixture
def socket_endpoint() -> Iterator[SocketModeServer]:
    socket = SocketModeServer().start()
    yield socket
    socket.stop()


@pytest.fixture
def socket_served(serve_env, slack, k8s_view, socket_endpoint, start_serve) -> Served:
    socket = socket_endpoint  # readiness includes the socket: give it one to open
    slack.app_token, slack.socket_url = APP_TOKEN, socket.url
    served = start_serve({**serve_env, "SLACK_APP_TOKEN": APP_TOKEN}, "--socket-mode")
    # it really is in Socket Mode: it asked the Slack stand-in for a socket URL
    slack.wait_for(lambda s: s.calls_to("apps.connections.open"), timeout=15)
    wait_until(lambda: served.http.get("/readyz").json().get("socket") == "ok", 15, "the socket to open")
    served.socket = socket
    return served


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
    reaching the Socket Mode replica's HTTP port as Slack would: all 404, nothing moves. (Both
    replicas keep watching the change meanwhile, so what is compared is what an attack moves.)"""
    assert chat.run("deploy api-gateway v1.2.3").ack.status_code == 200
    message = approval_message(chat)
    chat.bot.idle()
    served = socket_served
    before = gate_state(redis_server)
    assert list(before[0].values()) == ["awaiting_approval"]
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

    assert commands_counted(served) == 0  # nothing reached the dispatcher
    chat.bot.idle()
    assert gate_state(redis_server) == before
    assert ingress_backend(k8s_view) == "api-gateway-blue"
    assert k8s_view.replicas("api-gateway-blue") == 3
    said = json.dumps([(m.text, m.blocks) for m in slack.messages()] + [c.params for c in slack.responses])
    assert "approved by" not in said and "scaled" not in said
    assert served.proc.poll() is None


def gate_state(redis_server) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """Each change's state and the audit trail: what a forged command or click would move."""
    client = redis_server.client()
    changes = {k: json.loads(client.get(k))["state"] for k in client.scan_iter("payflow:rec:change:*")}
    audit = [(f["actor"], f["action"], f["outcome"]) for _, f in client.xrange("payflow:audit")]
    return changes, audit


def test_http_mode_cannot_be_built_without_a_signing_secret(settings, catalog, k8s_view):
    from dataclasses import replace

    from bot.shell.runtime import build_runtime
    from bot.shell.server import build_web

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
        assert record["level"] == "WARNING" and record["logger"] == "bot.shell.server"
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


# ---------------------------------------------------------------- fuzzing every route

FUZZ_REQUESTS = int(os.environ.get("FUZZ_REQUESTS", "600"))
FUZZ_SEED = int(os.environ.get("FUZZ_SEED", "20261130"))


def raw_status(port: int, data: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        head = conn.recv(64)
    return int(head.split()[1]) if head.startswith(b"HTTP/1.1 ") else 0


def test_fuzzed_requests_get_a_clear_answer_and_change_nothing(http_served, slack, k8s_view):
    """Thousands of random and malformed requests (FUZZ_REQUESTS, FUZZ_SEED): never a 5xx,
    every log line one JSON object, no traceback, no body in the log, the cluster unchanged."""
    served = http_served
    fuzzer = Fuzzer(
        FUZZ_SEED, SIGNING_SECRET, int(time.time()), demo.OPS_CHANNEL_ID, slack.response_url("fuzz")
    )
    before = k8s_view.fingerprint()
    start = len(served.lines())
    answers: Counter[tuple[str, int]] = Counter()
    for i in range(FUZZ_REQUESTS):
        request = fuzzer.request()
        headers = {k: v.encode() for k, v in request.headers.items()}  # UTF-8 on the wire, as a proxy may
        response = served.http.request(request.method, request.path, content=request.body, headers=headers)
        assert response.status_code < 500, (
            i,
            request.kind,
            response.status_code,
            request.body[:2000],
            [r for r in served.records(start) if "exc_info" in r][-1:],
        )
        answers[(request.kind, response.status_code)] += 1
    for _ in range(30):  # 0: the request was cut short and the bot just closed the connection
        assert raw_status(served.port, fuzzer.raw()) < 500

    assert served.http.get("/healthz").status_code == 200
    # the jobs of the signed commands run in the worker; one more, then its answer, then look
    sentinel = SlackRequests(SIGNING_SECRET, response_url=slack.response_url("fuzz-end"))
    assert post(served, sentinel.slash("help", user_id="U0EVE", **OPS)).status_code == 200
    slack.wait_for(lambda s: [c for c in s.responses if c.params.get("tag") == "fuzz-end"], timeout=30)
    # signed, well-formed commands were answered (as the viewer); nothing else got a 200
    answered = {kind.removesuffix("/content-type") for (kind, status) in answers if status == 200}
    assert answered <= {"command/signed", "mutated-command/signed", "mutated-click/signed", "other"}
    records = served.records(start)  # every line is one JSON object
    leaked = [r for r in records if MARKER in json.dumps(r) or FUZZ_CARD in json.dumps(r)]
    assert leaked == []
    tracebacks = [r["exc_info"] for r in records if "exc_info" in r]
    assert tracebacks == [], tracebacks[0]
    assert k8s_view.fingerprint() == before
    assert served.proc.poll() is None


# ---------------------------------------------------------------- issue 8.3: signed bad input


def sign_raw(body: bytes, content_type: str = "application/x-www-form-urlencoded") -> dict[str, str]:
    """Slack's signature over raw bytes (slack_sdk's helper only signs UTF-8 text)."""
    ts = str(int(time.time()))
    digest = hmac.new(SIGNING_SECRET.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {
        "content-type": content_type,
        "x-slack-request-timestamp": ts,
        "x-slack-signature": f"v0={digest}",
    }


def click_payload(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": "U0BOB", "name": "bob"},
        "team": {"id": "T0PAYFLOW"},
        "container": {"type": "message", "message_ts": "1.000001", "channel_id": demo.OPS_CHANNEL_ID},
        "channel": {"id": demo.OPS_CHANNEL_ID, "name": demo.OPS_CHANNEL_NAME},
        "response_url": "https://hooks.slack.com/actions/T0PAYFLOW/1/x",
        "actions": [{"action_id": "payflow:approve", "value": "chg-1", "type": "button"}],
    }
    payload.update(changes)
    return payload


def as_form(payload: Any) -> bytes:
    return urlencode({"payload": payload if isinstance(payload, str) else json.dumps(payload)}).encode()


COMMAND = {
    "command": "/payflow",
    "text": "scale api-gateway 6",
    "user_id": "U0ALICE",
    "channel_id": demo.OPS_CHANNEL_ID,
    "channel_name": demo.OPS_CHANNEL_NAME,
    "response_url": "https://hooks.slack.com/commands/T0PAYFLOW/1/x",
}
DEEP = "[" * 100_000 + "]" * 100_000

# (what, body, content type, status, reason in the answer and the log line)
SIGNED_BAD_INPUT = [
    ("payload not JSON", as_form("{not json"), None, 400, "the payload field is not valid JSON"),
    ("payload a JSON list", as_form([click_payload()]), None, 400, "the payload field is not a JSON object"),
    ("payload nested 100,000 deep", as_form(DEEP), None, 400, "the payload field is not valid JSON"),
    (
        "payload nested 40 deep",
        as_form(click_payload(x=json.loads("[" * 40 + "]" * 40))),
        None,
        400,
        "deeper",
    ),
    # fuzz finding: Bolt built middleware arguments from body["actions"][0] and raised (500)
    ("actions a number", as_form(click_payload(actions=0)), None, 400, "actions must be a non-empty list"),
    ("user a string", as_form(click_payload(user="U0BOB")), None, 400, "user.id is missing"),
    ("action_id a number", as_form(click_payload(actions=[{"action_id": 5}])), None, 400, "action_id"),
    ("team a number", as_form(click_payload(team=5)), None, 400, "a payload field has the wrong type"),
    ("authorizations a string", as_form(click_payload(authorizations="x")), None, 400, "wrong type"),
    ("container a list", as_form(click_payload(container=[])), None, 400, "container or channel"),
    # fuzz finding: the worker posted to whatever response_url said, with a traceback
    ("response_url no URL", as_form(click_payload(response_url="W41 i")), None, 400, "response_url"),
    ("another app's button", as_form(click_payload(actions=[{"action_id": "x"}])), None, 400, "buttons"),
    ("a modal submission", as_form(click_payload(type="view_submission")), None, 400, "neither"),
    ("JSON body", json.dumps(COMMAND).encode(), "application/json", 415, "Content-Type must be"),
    ("invalid UTF-8", urlencode(COMMAND).encode() + b"\xff\xfe", None, 400, "not a well-formed UTF-8 form"),
    ("percent-encoded bad UTF-8", urlencode(COMMAND).encode() + b"&x=%ff", None, 400, "UTF-8 form"),
    ("a field without =", urlencode(COMMAND).encode() + b"&junk", None, 400, "not a well-formed"),
    ("a field twice", urlencode(COMMAND).encode() + b"&user_id=U0BOB", None, 400, "more than once"),
    ("empty body", b"", None, 400, "neither a slash command nor"),
    ("another command", urlencode({**COMMAND, "command": "/other"}).encode(), None, 400, "only the /payflow"),
    ("no user_id", urlencode({**COMMAND, "user_id": ""}).encode(), None, 400, "needs user_id"),
    ("response_url no URL", urlencode({**COMMAND, "response_url": "x"}).encode(), None, 400, "response_url"),
    ("2 MB", b"text=" + b"a" * 2_000_000, None, 413, "larger than 1000000 bytes"),
]


def test_signed_bad_input_is_a_4xx_with_one_log_line_and_changes_nothing(
    http_served, slack, k8s_view, redis_server
):
    served = http_served
    before = (k8s_view.fingerprint(), store_snapshot(redis_server), slack_calls(slack))
    start = len(served.lines())
    for what, body, content_type, status, reason in SIGNED_BAD_INPUT:
        mark = len(served.lines())
        headers = sign_raw(body, content_type or "application/x-www-form-urlencoded")
        response = served.http.post("/slack/events", content=body, headers=headers)
        assert (response.status_code, reason in response.text) == (status, True), (what, response.text)
        [record] = wait_until(lambda m=mark: refusals(served, m), 5, f"the log line for {what}")
        assert reason in record["message"] and record["message"].endswith(f"({len(body)} bytes)"), what
    assert served.http.get("/slack/events").status_code == 405
    expected = len(SIGNED_BAD_INPUT) + 1  # the GET's refusal too, read from the pipe a moment later
    wait_until(lambda: len(refusals(served, start)) >= expected, 5, "the GET's refusal line")
    records = served.records(start)
    assert len(refusals(served, start)) == expected
    assert [r for r in records if "exc_info" in r or r["level"] == "ERROR"] == []
    assert commands_counted(served) == 0
    assert (k8s_view.fingerprint(), store_snapshot(redis_server), slack_calls(slack)) == before


def test_command_text_mentioning_payload_is_a_command(http_served, slack):
    """Bolt parses any form body containing "payload" as an interaction: `/payflow help payload`
    used to be an empty request (404). The bot parses the form itself."""
    requests = SlackRequests(SIGNING_SECRET, response_url=slack.response_url("payload"))
    ack = post(http_served, requests.slash("help payload", user_id="U0EVE", **OPS))
    assert ack.status_code == 200
    assert "No command `payload`." in ack.json()["text"]  # the help command read its argument
    assert commands_counted(http_served) == 1


def test_socket_mode_payloads_are_checked_before_any_listener(bot):
    """Over the socket Slack is authenticated, but a payload is still checked before Bolt builds
    listener arguments from it (`body["actions"][0]` on a number raised)."""
    from slack_bolt.request.async_request import AsyncBoltRequest

    for payload in (click_payload(actions=0), click_payload(user=[]), {"command": "/payflow"}, {}):
        request = AsyncBoltRequest(body=payload, mode="socket_mode")
        response = bot.call(bot.runtime.bolt.async_dispatch(request))
        assert (response.status, response.body) == (200, ""), payload  # acked: Slack must not resend
    good = AsyncBoltRequest(body={**COMMAND, "text": "help", "user_id": "U0EVE"}, mode="socket_mode")
    assert bot.call(bot.runtime.bolt.async_dispatch(good)).status == 200


def test_alertmanager_deeply_nested_json_is_400(http_served, slack, redis_server):
    served = http_served
    start = len(served.lines())
    auth = {"authorization": f"Bearer {WEBHOOK_TOKEN}", "content-type": "application/json"}
    for body in (DEEP, '{"a":' * 50_000 + "1" + "}" * 50_000, "[]"):
        response = served.http.post("/alertmanager", content=body.encode(), headers=auth)
        assert response.status_code == 400, response.text
    records = wait_until(
        lambda: len(served.records(start)) >= 3 and served.records(start), 5, "three log lines"
    )
    assert [r["message"].split(":")[0] for r in records] == [
        "malformed Alertmanager notification from 127.0.0.1"
    ] * 3
    assert [r for r in records if "exc_info" in r] == []
    assert slack_calls(slack) == [] and store_snapshot(redis_server) == {}


# ---------------------------------------------------------------- log lines cannot be forged


FORGED = "10.1.2.3\x852026-11-30 INFO payflow: approved by U0BOB\x9b31m"  # NEL, CSI: latin-1 on the wire


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_a_log_line_cannot_be_forged(serve_env, k8s_view, fmt, start_serve):
    """Uvicorn trusts X-Forwarded-For from loopback, so the remote address in a refusal is text
    from outside: a NEL (a line break to `str.splitlines`) and a C1 control stay escaped."""
    served = start_serve({**serve_env, "LOG_FORMAT": fmt})
    start = len(served.lines())
    headers = {"x-forwarded-for": FORGED.encode("latin-1")}
    assert served.http.post("/slack/events", content=b"text=x", headers=headers).status_code == 401
    line = wait_until(lambda: [ln for ln in served.lines(start) if "refused" in ln], 5, "the refusal")[0]
    assert len(line.splitlines()) == 1 and "\x85" not in line and "\x9b" not in line
    if fmt == "json":
        assert json.loads(line)["message"].startswith(f"refused a Slack request from {FORGED}:")
    else:
        assert "refused a Slack request from 10.1.2.3\\x852026-11-30 INFO payflow: approved" in line


def test_socket_mode_refuses_malformed_envelopes_in_one_line(socket_served, slack, k8s_view):
    """Over the real socket: malformed payloads are acked, refused in one log line each, and run
    nothing; a well-formed command next to them still works."""
    served, socket = socket_served, socket_served.socket
    start = len(served.lines())
    command = {**COMMAND, "response_url": slack.response_url("socket")}
    envelopes = [
        ("interactive", click_payload(actions=0)),
        ("interactive", click_payload(user="U0BOB")),
        ("slash_commands", {**command, "response_url": "not a URL"}),
        ("slash_commands", {**command, "command": "/other"}),
        ("slash_commands", {**command, "text": "scale api-gateway 5"}),
    ]
    for i, (kind, payload) in enumerate(envelopes):
        socket.send(
            {"envelope_id": f"env-{i}", "type": kind, "accepts_response_payload": True, "payload": payload}
        )
    wait_until(lambda: len(socket.acks) == len(envelopes), 10, "every envelope acked")
    assert sorted(a["envelope_id"] for a in socket.acks) == [f"env-{i}" for i in range(len(envelopes))]
    wait_until(lambda: k8s_view.replicas("api-gateway-blue") == 5, 15, "the one good command")

    def refused() -> list[str]:
        return sorted(
            r["message"] for r in served.records(start) if "refused a Slack payload" in r["message"]
        )

    wait_until(lambda: len(refused()) >= 4, 5, "four refusals in the log")
    assert refused() == [
        "refused a Slack payload: actions must be a non-empty list of objects",
        "refused a Slack payload: response_url is not an http(s) URL",
        "refused a Slack payload: this app handles only the /payflow command",
        "refused a Slack payload: user.id is missing or not a string",
    ]
    assert [r for r in served.records(start) if "exc_info" in r] == []


def test_a_flood_of_refused_requests_is_not_a_flood_of_log_lines(http_served, k8s_view):
    """Every refused request is either logged or counted in a later line; lines are bounded."""
    served = http_served
    start = len(served.lines())
    sent = 0
    began = time.monotonic()
    for _ in range(400):
        assert served.http.post("/slack/events", content=b"text=x").status_code == 401
        sent += 1
    elapsed = time.monotonic() - began
    wait_until(lambda: len(refusals(served, start)) >= 100, 5, "the first refusal lines")
    assert len(refusals(served, start)) <= 100 + 20 * elapsed + 1

    def accounted() -> bool:
        nonlocal sent
        lines = refusals(served, start)
        left_out = sum(
            int(r["message"].rsplit("; ", 1)[1].split()[0])
            for r in lines
            if "were not logged" in r["message"]
        )
        if len(lines) + left_out == sent:
            return True
        served.http.post("/slack/events", content=b"text=x")  # the next logged line gives the count
        sent += 1
        return False

    wait_until(accounted, 10, "every refusal logged or counted", poll=0.1)


def test_huge_request_headers_are_refused_before_they_are_read_whole(http_served):
    """httptools buffers a header of any size: 20 MB were read into memory. Now 431 past 64 KB."""
    served = http_served
    start = len(served.lines())
    head = b"POST /slack/events HTTP/1.1\r\nHost: x\r\nX-Big: "
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as conn:
        conn.sendall(head + b"a" * 300_000)  # no end of headers yet: the bot stops reading
        answer = conn.recv(200)
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large")
    [line] = wait_until(
        lambda: [r for r in served.records(start) if "headers larger" in r["message"]], 5, "log"
    )
    assert line["message"] == "refused a request from 127.0.0.1: headers larger than 65536 bytes"
    # the bot closes the connection while we are still sending: that is the point
    with (
        socket.create_connection(("127.0.0.1", served.port), timeout=10) as conn,
        contextlib.suppress(OSError),
    ):
        conn.sendall(head + b"a" * 20_000_000)
    assert served.http.get("/healthz").status_code == 200
    # and a request of ordinary size on a kept-alive connection still works after a big one
    ok = served.http.post("/slack/events", content=b"text=x", headers={"x-pad": "a" * 8000})
    assert ok.status_code == 401
