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


PAN = "4001630741852961"


def _cut_card(limit: int, before: str = "") -> str:
    """Text whose card number straddles character `limit`: a cut there keeps 14 of its 16 digits,
    which pass no Luhn check, so a redactor after the cut cannot tell them from an order ID."""
    card = "4001 6307 4185 2961"
    pad = limit - len(before) - len("4001 6307 4185 29")
    return before + "x" * pad + card + " declined"


def test_an_alert_whose_card_is_cut_by_a_length_limit_leaves_no_digits_of_it(
    settings, catalog, k8s_view, slack, redis_server
):
    """Alert annotations and labels are bounded before they are stored (summary 300, labels 120)
    and blocks before Slack's limits: a cut never keeps part of a card for the redaction point to miss."""
    from dataclasses import replace

    from bot.shell.runtime import build_runtime
    from tests.support.bot_server import BotServer
    from tests.test_alerts import TOKEN, alert, group_records, payload, send

    doc = payload("firing", [alert("firing")])
    doc["alerts"][0]["annotations"] = {"summary": _cut_card(300)}
    doc["alerts"][0]["labels"] = {**doc["alerts"][0]["labels"], "pod": _cut_card(120, "pod=")}
    doc["commonLabels"] = {k: v for k, v in doc["commonLabels"].items() if k != "pod"}
    server = BotServer(build_runtime(replace(settings, alertmanager_webhook_token=TOKEN), catalog)).start()
    try:
        assert send(server, doc).status_code == 200
        server.idle()
    finally:
        server.stop()
    sent = _everything_sent(slack)
    assert "HighErrorRate" in sent and "xxxx" in sent  # the alert, with its summary, was posted
    digits = "".join(c for c in sent if c.isdigit() or c in '"{},:\n')
    assert PAN[:12] not in digits
    stored = json.dumps(group_records(redis_server))
    assert PAN[:12] not in "".join(c for c in stored if c.isdigit() or c in '"{},:')
