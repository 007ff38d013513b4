"""The redaction corpus through the real served bot: pods of the sandbox log every sensitive line
(a PEM key one line per record), `/payflow logs` reads them through the kubernetes client, and
nothing of it may reach the Slack stand-in — message text, blocks, file content, file comment —
while harmless lines arrive verbatim. Usage errors that echo a card number are redacted in the ack."""

from __future__ import annotations

import json

import pytest

from tests.support.redact_corpus import HARMLESS, SENSITIVE


def _pods(k8s_view, service: str = "api-gateway") -> list[str]:
    pods = k8s_view.core.list_namespaced_pod(
        "payflow", label_selector=f"app={service},color=blue", _request_timeout=5
    ).items
    return sorted(p.metadata.name for p in pods)


def _everything_sent(slack) -> str:
    calls = [c.params for c in slack.calls] + [c.params for c in slack.responses]
    files = [data.decode("utf-8", errors="replace") for data in slack.uploads.values()]
    return json.dumps(calls, ensure_ascii=False) + "\n".join(files)


def test_the_corpus_in_pod_logs_never_reaches_slack(chat, k8s_view, cluster, slack):
    pods = _pods(k8s_view)
    logged = [part for line, _ in SENSITIVE for part in line.split("\n")]  # a key: one record per line
    cluster.add_log_lines("payflow", pods[0], logged)
    cluster.add_log_lines("payflow", pods[1], HARMLESS, ago=30)
    before = k8s_view.fingerprint()

    chat.run("logs api-gateway --lines 1000")

    [content] = slack.uploads.values()
    text = content.decode()
    sent = _everything_sent(slack)
    leaked = sorted({secret for _, secret in SENSITIVE if secret in sent})
    assert leaked == []
    for line in HARMLESS:
        assert line in text  # verbatim: nothing harmless was taken for a secret
    [complete] = slack.calls_to("files.completeUploadExternal")
    assert "line(s) redacted" in json.dumps(complete.params)
    assert k8s_view.fingerprint() == before


ERRORS = [
    "ERROR [psp] declined PAN4001630741852961 glued",
    "ERROR [psp] declined order-5300000000000006 dashed",
    "ERROR [psp] declined card_last=5300000000000006EUR",
    "ERROR [psp] settle 4001.6307.4185.2961 dotted",
    "ERROR [api] body %22pan%22%3A%224001630741852961%22",
    "ERROR [pos] swipe %B4001630741852961^DOE/JOHN^2512101000000000000000?",
    "ERROR [pos] swipe ;4001630741852961=25121010000000000000?",
    "ERROR [gw] Authorization: Token 9f8e7d6c5b4a39281706",
    "ERROR [job] exec migrate --password hunter2 --verbose",
    "ERROR [soap] <Password>hunter2</Password>",
    "ERROR [slack] xapp-1-A0123456789-1234567890123-abcdef0123456789",
    "ERROR [slack] https://hooks.slack.com/services/T0ABC1234/B0DEF5678/AbCdEfGhIjKlMnOpQrStUvWx",
    "ERROR [psp] sk_live_4eC39HqLyjWDarjtT1zdp7dc rk_live_51Habcdefghij0123",
    "ERROR [s3] AKIAIOSFODNN7EXAMPLE wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "ERROR [boot] -----BEGIN PRIVATE KEY-----",
    "ERROR [boot] MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi6Ze2HKm2QeJYaGR5cP1C8iH3o",
    "ERROR [boot] -----END PRIVATE KEY-----",
]
SECRETS = [
    "4001630741852961",
    "5300000000000006",
    "4001.6307.4185.2961",
    "DOE/JOHN",
    "25121010000000000000",
    "9f8e7d6c5b4a39281706",
    "hunter2",
    "xapp-1-A0123456789",
    "AbCdEfGhIjKlMnOpQrStUvWx",
    "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "rk_live_51Habcdefghij0123",
    "AKIAIOSFODNN7EXAMPLE",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "MIIEpAIBAAKCAQEA3Tz2mr7",
]


def test_error_lines_answered_inline_carry_no_secret(chat, k8s_view, cluster, slack):
    cluster.add_log_lines("payflow", _pods(k8s_view)[2], ERRORS)

    answer = chat.run("logs api-gateway --errors")

    assert len(answer.replies) == 1 and slack.uploads == {}
    blocks = json.dumps(answer.replies[0]["blocks"], ensure_ascii=False)
    assert "[REDACTED card]" in blocks and "[REDACTED private key]" in blocks
    sent = _everything_sent(slack)
    assert [s for s in SECRETS if s in sent] == []
    assert f"{len(ERRORS)} line(s) had card numbers, tokens or passwords redacted" in answer.all_text()


@pytest.mark.parametrize(
    "text",
    [
        "logs api-gateway --lines 4111111111111111",
        "logs api-gateway --lines 4111-1111-1111-1111",
        "logs 4111111111111111",
        "audit api-gateway 4111111111111111",
        "logs api-gateway --since abcdefghijklmnopqrstuvwxyz-4111111111111111",  # cut at 40 characters
        "scale api-gateway 4111111111111111",
    ],
)
def test_usage_errors_never_echo_a_card_number(chat, k8s_view, slack, redis_server, text):
    before = k8s_view.fingerprint()

    answer = chat.run(text)

    ack = answer.ack.content.decode()
    assert answer.ack_text  # a usage error, answered in the ack
    assert "4111" not in ack and "1111-1111" not in ack
    assert answer.replies == [] and answer.posts == [] and slack.uploads == {}
    assert k8s_view.fingerprint() == before
    assert redis_server.client().dbsize() == 0
