"""/payflow logs end to end: real-looking log lines with card numbers, JWTs and passwords are put
into the sandbox pods' logs, read back by the bot through the kubernetes client, and must reach
the Slack stand-in redacted, with ordinary numbers untouched."""

from __future__ import annotations

import json
import re

import pytest

from bot.base.redact import redact
from sandbox import demo

JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6InBmLTEifQ.eyJzdWIiOiJ1c2VyLTQyIiwic2NvcGUiOiJwYXkifQ.aGVsbG8tc2lnbmF0dXJl"

# (log line, the value that must not be posted)
SENSITIVE = [
    ("ERROR [wallet] charge failed card=4111111111111111 amount=12.50 EUR", "4111111111111111"),
    ("ERROR [wallet] 3ds failed for card 4111 1111 1111 1111 order 991", "4111 1111 1111 1111"),
    ("WARN  [wallet] retry pan=5500-0000-0000-0004 exp=12/29", "5500-0000-0000-0004"),
    ("INFO  [wallet] amex 378282246310005 authorised", "378282246310005"),
    ("INFO  [wallet] tokenised 6011000990139424 -> tok_1", "6011000990139424"),
    ("ERROR [txn] txn 42 4111 1111 1111 1111 declined", "1111 1111 1111"),
    (f"DEBUG [gw] upstream headers Authorization: Bearer {JWT}", JWT),
    (f"INFO  [auth] session jwt={JWT} user=42", JWT),
    ("ERROR [auth] login failed user=bob password=hunter2!", "hunter2!"),
    ('INFO  [cfg] settings {"db_password": "Sup3rS3cret", "region": "eu"}', "Sup3rS3cret"),
    ("ERROR [db] connect postgres://payflow:Sup3rS3cret@postgres-0:5432/payflow failed", "Sup3rS3cret"),
    ("WARN  [cache] redis://:r3disPass@redis:6379/0 timeout", "r3disPass"),
    ("INFO  [3ds] GET /3ds/return?token=tok_live_abc123&status=ok 302", "tok_live_abc123"),
    ("DEBUG [psp] X-Api-Key: sk_live_51Habc123", "sk_live_51Habc123"),
    ("DEBUG [cfg] webhook secret: whsec_abc123xyz", "whsec_abc123xyz"),
    ("INFO  [s3] AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMIK7MDENG", "wJalrXUtnFEMIK7MDENG"),
    ("WARN  [psp] Authorization: Basic cGF5ZmxvdzpodW50ZXIy", "cGF5ZmxvdzpodW50ZXIy"),
]

HARMLESS = [
    "INFO  [txn] order 4111111111111112 settled",  # 16 digits, fails the Luhn check: an order ID
    "INFO  [txn] txn 1234567890123 took 12 ms",
    "INFO  [api] GET /api/v1/payments/550e8400-e29b-41d4-a716-446655440000 200 3ms",
    "INFO  [api] amount=1500000 cents merchant=4242 phone +1 415 555 0100",
    "INFO  [batch] 20261126 processed 1048576 rows in 1764147600 ms",
    "WARN  [auth] password reset requested for user_id=1234567",
    "INFO  [llm] max_tokens=100 retries=3",
    "INFO  [db] postgres://payflow@postgres-0:5432/payflow pool=10",
]


@pytest.mark.parametrize(("line", "secret"), SENSITIVE, ids=[s for _, s in SENSITIVE])
def test_corpus_sensitive_values_are_redacted(line, secret):
    out = redact(line)
    assert secret not in out and "[REDACTED" in out
    assert redact(out) == out  # redacting twice (handler, then gateway) changes nothing more


@pytest.mark.parametrize("line", HARMLESS)
def test_corpus_ordinary_numbers_are_untouched(line):
    assert redact(line) == line


def _blue_pods(k8s_view, service="api-gateway", color="blue") -> list[str]:
    pods = k8s_view.core.list_namespaced_pod(
        "payflow", label_selector=f"app={service},color={color}", _request_timeout=5
    ).items
    return sorted(p.metadata.name for p in pods)


def _inject(cluster, pod: str, lines: list[str], ago: float = 0.0) -> None:
    cluster.add_log_lines("payflow", pod, lines, ago=ago)


def _code(answer) -> list[str]:
    """The log lines of an inline answer (inside its code fences): private, never in the channel."""
    assert answer.posts == []
    lines: list[str] = []
    for reply in answer.replies:
        assert reply.get("response_type") == "ephemeral"
        for block in reply.get("blocks", []):
            text = (block.get("text") or {}).get("text", "")
            if text.startswith("```"):
                lines += text.strip("`").strip("\n").splitlines()
    return lines


def _uploaded(slack) -> tuple[str, dict]:
    [complete] = slack.calls_to("files.completeUploadExternal")
    [content] = slack.uploads.values()
    return content.decode(), complete.params


def test_logs_of_the_live_color_are_posted_redacted_and_long_output_is_a_file(chat, k8s_view, cluster, slack):
    pods = _blue_pods(k8s_view)
    assert len(pods) == 3
    _inject(cluster, pods[0], [line for line, _ in SENSITIVE[:9]])
    _inject(cluster, pods[1], [line for line, _ in SENSITIVE[9:]] + HARMLESS)
    before = k8s_view.fingerprint()

    answer = chat.run("logs api-gateway --lines 1000")

    text, params = _uploaded(slack)
    # the file goes into a thread under a one-line note, never onto the channel itself
    [parent] = answer.posts
    assert parent["channel"] == demo.OPS_CHANNEL_ID
    assert "the excerpt is in this thread" in parent["text"]
    assert "ERROR" not in json.dumps(parent)
    assert params["channel_id"] == demo.OPS_CHANNEL_ID
    [thread] = [m for m in slack.messages(demo.OPS_CHANNEL_ID) if m.files]
    assert thread.thread_ts is not None and thread.thread_ts != thread.ts
    [reply] = answer.replies
    assert reply["response_type"] == "ephemeral"
    assert "the file is in the thread of <https://" in reply["text"]
    assert "api-gateway (blue)" in params["initial_comment"]
    assert f"{len(SENSITIVE)} line(s) redacted" in params["initial_comment"]
    for _, secret in SENSITIVE:
        assert secret not in text
    for line in HARMLESS:
        assert line in text  # verbatim: no ordinary number was taken for a card
    labels = {line.split(" ", 1)[0] for line in text.splitlines()}
    assert labels == {p.removeprefix("api-gateway-blue-") for p in pods}  # every live pod, no other
    stamps = [re.search(r"\d{4}-\d\d-\d\dT[\d:.]+Z", line)[0] for line in text.splitlines()]
    assert stamps == sorted(stamps)  # merged across pods in time order
    assert k8s_view.fingerprint() == before
    [entry] = chat.audit()
    assert (entry.actor, entry.action, entry.target, entry.outcome) == (
        "U0ALICE",
        "logs",
        "api-gateway",
        "ok",
    )
    assert "as a file in a thread" in entry.detail


def test_errors_keeps_only_error_lines_inline_and_redacted(chat, k8s_view, cluster):
    pods = _blue_pods(k8s_view)
    _inject(cluster, pods[2], [line for line, _ in SENSITIVE] + HARMLESS)
    errors = [line for line, _ in SENSITIVE if "ERROR" in line]

    answer = chat.run("logs api-gateway --errors")

    lines = _code(answer)
    assert len(lines) == len(errors) == 5
    assert all("ERROR" in line for line in lines)
    for line, want in zip(lines, errors, strict=True):
        assert line.endswith(redact(want).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))
    posted = answer.all_text()
    for _, secret in SENSITIVE:
        assert secret not in posted
    assert "5 line(s) had card numbers, tokens or passwords redacted" in posted
    assert "only you see this: logs can hold customer data" in posted


def test_lines_bounds_what_is_shown_to_the_newest(chat, k8s_view, cluster):
    pods = _blue_pods(k8s_view)
    _inject(cluster, pods[0], [f"INFO  [t] marker {i}" for i in range(8)])

    lines = _code(chat.run("logs api-gateway --lines 5"))

    assert len(lines) == 5
    assert lines[-1].endswith("INFO  [t] marker 7")
    assert "marker 0" not in "\n".join(lines)


def test_since_leaves_out_older_lines(chat, k8s_view, cluster):
    pods = _blue_pods(k8s_view)
    _inject(cluster, pods[0], ["ERROR [t] an hour old"], ago=3600)
    _inject(cluster, pods[0], ["ERROR [t] just now"])

    recent = "\n".join(_code(chat.run("logs api-gateway --errors --since 10m")))
    everything = "\n".join(_code(chat.run("logs api-gateway --errors")))

    assert "just now" in recent and "an hour old" not in recent
    assert "just now" in everything and "an hour old" in everything


def test_logs_follow_the_live_color(chat, k8s_view, cluster):
    k8s_view.apps.patch_namespaced_deployment_scale(
        "api-gateway-green", "payflow", {"spec": {"replicas": 2}}, _request_timeout=5
    )
    k8s_view.wait_settled()
    ingress = k8s_view.net.read_namespaced_ingress("payflow-ingress", "payflow", _request_timeout=5)
    for rule in ingress.spec.rules:
        for path in rule.http.paths:
            if path.backend.service.name == "api-gateway-blue":
                path.backend.service.name = "api-gateway-green"
    k8s_view.net.replace_namespaced_ingress("payflow-ingress", "payflow", ingress, _request_timeout=5)
    green = _blue_pods(k8s_view, color="green")
    _inject(cluster, green[0], ["ERROR [t] from green"])
    _inject(cluster, _blue_pods(k8s_view)[0], ["ERROR [t] from blue"])

    answer = chat.run("logs api-gateway --errors")

    text = answer.all_text()
    assert "api-gateway (green): 1 ERROR lines, 2 pods" in text
    assert "from green" in text and "from blue" not in text


def test_a_service_without_errors_says_so_privately(chat, k8s_view):
    answer = chat.run("logs wallet-service --errors")
    assert answer.posts == []
    assert "No ERROR lines from wallet-service (blue) in that window." in answer.replies[-1]["text"]


BAD_INPUT = [
    ("logs api-gateway --lines 0", "`--lines` must be between 1 and 1000, got 0."),
    ("logs api-gateway --lines 100000", "`--lines` must be between 1 and 1000, got 100000."),
    ("logs api-gateway --lines abc", "`--lines` must be a whole number, got `abc`."),
    ("logs api-gateway --lines -5", "`--lines` must be a whole number, got `-5`."),
    ("logs api-gateway --lines", "`--lines` needs a value, e.g. `--lines 50`."),
    ("logs api-gateway --since 99d", "`--since` must be more than 0 and at most 24h, got `99d`."),
    ("logs api-gateway --since 0s", "`--since` must be more than 0 and at most 24h, got `0s`."),
    ("logs api-gateway --since soon", "`--since` takes a duration like `30s`, `10m` or `2h`, got `soon`."),
    ("logs api-gateway --eror", "Unknown option `--eror`. Did you mean `--errors`?"),
    ("logs api-gateway --follow", "Unknown option `--follow`."),
    ("logs api-gateway --errors --errors", "`--errors` is given twice."),
    ("logs api-gateway --errors=yes", "`--errors` takes no value."),
    ("logs api-gatewy", "Unknown service `api-gatewy`. Did you mean `api-gateway`?"),
    ("logs", "Say which service, e.g. `/payflow logs api-gateway --errors`."),
    ("logs api-gateway wallet-service", "Too many arguments: `wallet-service` is not understood here."),
    ("logs api-gateway | grep ERROR", "Too many arguments: `| grep ERROR` is not understood here."),
]


@pytest.mark.parametrize(("text", "expected"), BAD_INPUT, ids=[t for t, _ in BAD_INPUT])
def test_bad_input_gets_a_clear_answer_and_changes_nothing(
    chat, k8s_view, slack, redis_server, text, expected
):
    before = k8s_view.fingerprint()
    answer = chat.run(text)

    assert expected in answer.ack_text
    assert "/payflow logs <service> [--errors] [--lines N] [--since 10m]" in json.dumps(answer.ack.json())
    assert answer.replies == [] and answer.posts == []
    assert slack.uploads == {}
    assert k8s_view.fingerprint() == before
    assert redis_server.client().dbsize() == 0


def test_viewer_may_not_read_logs(chat, k8s_view, cluster, slack):
    _inject(cluster, _blue_pods(k8s_view)[0], ["ERROR [t] customer data"])
    answer = chat.run("logs api-gateway --errors", user="dave")

    assert answer.posts == [] and slack.uploads == {}
    assert "This needs the *operator* role; you have viewer." in answer.replies[0]["text"]
    assert "customer data" not in answer.all_text()
    [entry] = chat.audit()
    assert (entry.actor, entry.action, entry.outcome) == ("U0DAVE", "logs", "denied")
