"""Alertmanager → Slack end to end: a real `prometheus-alertmanager` whose webhook receiver points
at the served bot, so its actual payloads arrive; the real Redis store; the Slack stand-in.
One message per alert group, updated in place; state in the store survives a restart."""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bot.config.catalog import CatalogError, load_catalog, parse_catalog
from bot.domain.gate.record import Change
from bot.domain.gate.records import Records
from bot.shell.runtime import build_runtime
from handlers.alerts import PREFIX, group_id, record_key
from sandbox.local import wait_until
from sandbox.slack_requests import SlackRequests
from tests.conftest import BOT_TOKEN, SIGNING_SECRET
from tests.support.alertmanager import AlertmanagerServer
from tests.support.bot_server import BotServer
from tests.support.chat import Chat

TOKEN = "am-webhook-token-3f9c2a7d1e"
ALERTS = "#payflow-alerts"
LABELS = {
    "alertname": "HighErrorRate",
    "service": "api-gateway",
    "severity": "warning",
    "instance": "10.0.0.7:3000",
}
SUMMARY = {"summary": "5xx above 1% for 5 minutes"}


@pytest.fixture
def alertmanager(tmp_path):
    server = AlertmanagerServer(tmp_path / "alertmanager", token=TOKEN)
    yield server
    server.stop()


@pytest.fixture
def settings(settings, alertmanager):
    """The suite's settings plus the webhook token and where Alertmanager's API is."""
    return replace(settings, alertmanager_webhook_token=TOKEN, alertmanager_url=alertmanager.url)


@pytest.fixture
def am(alertmanager, bot):
    return alertmanager.start(f"{bot.url}/alertmanager")


# --- helpers ---------------------------------------------------------------------------------


def top_level(slack, channel: str = ALERTS) -> list[Any]:
    return [m for m in slack.messages(channel) if m.thread_ts in (None, m.ts)]


def replies(slack, parent, channel: str = ALERTS) -> list[Any]:
    return [m for m in slack.messages(channel) if m.thread_ts == parent.ts and m.ts != parent.ts]


def buttons(message) -> list[tuple[str, str, str]]:
    return [
        (el["text"]["text"], el["action_id"], el.get("value", ""))
        for block in message.blocks
        if block.get("type") == "actions"
        for el in block["elements"]
    ]


def body(message) -> str:
    return message.text + "\n" + str(message.blocks)


def group_records(redis_server) -> dict[str, dict]:
    client = redis_server.client()
    out = {}
    for key in client.keys("*"):
        name = key.decode() if isinstance(key, bytes) else key
        if PREFIX in name:
            raw = client.get(key)
            out[name] = json.loads(raw)
    return out


def wait_message(slack, predicate, timeout: float = 20):
    def find(stub):
        return next((m for m in top_level(stub) if predicate(m)), None)

    return slack.wait_for(find, timeout=timeout)


def payload(
    status: str, alerts: list[dict[str, Any]], group_key: str = '{}:{alertname="HighErrorRate"}'
) -> dict[str, Any]:
    """A version-4 notification shaped like Alertmanager's (for what a real one cannot stage)."""
    common = dict(alerts[0]["labels"])
    for a in alerts[1:]:
        common = {k: v for k, v in common.items() if a["labels"].get(k) == v}
    return {
        "receiver": "payflow-bot",
        "status": status,
        "alerts": alerts,
        "groupLabels": {"alertname": common.get("alertname", "")},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
    }


def alert(
    status: str, labels: dict[str, str] = LABELS, fingerprint: str = "a1b2c3d4e5f60708"
) -> dict[str, Any]:
    starts = "2026-11-26T09:00:00Z"
    ends = "2026-11-26T09:20:00Z" if status == "resolved" else "0001-01-01T00:00:00Z"
    return {
        "status": status,
        "labels": labels,
        "annotations": SUMMARY,
        "startsAt": starts,
        "endsAt": ends,
        "generatorURL": "http://prometheus.example/graph",
        "fingerprint": fingerprint,
    }


def send(bot: BotServer, doc: Any, *, token: str | None = TOKEN, raw: bytes | None = None, **headers: str):
    hdrs = {"content-type": "application/json", **headers}
    if token is not None:
        hdrs["authorization"] = f"Bearer {token}"
    content = raw if raw is not None else httpx.Request("POST", "http://x", json=doc).content
    return bot.http.post(f"{bot.url}/alertmanager", content=content, headers=hdrs)


# --- the real Alertmanager -------------------------------------------------------------------


def test_alert_fire_then_resolve_updates_one_message(am, bot, slack, redis_server, k8s_view):
    am.fire(LABELS, SUMMARY)

    message = wait_message(slack, lambda m: "FIRING" in m.text)
    text = body(message)
    assert "HighErrorRate" in text and "api-gateway" in text and "5xx above 1% for 5 minutes" in text
    assert "`instance=10.0.0.7:3000`" in text
    assert [b[:2] for b in buttons(message)] == [
        ("Metrics", "payflow:alert_metrics"),
        ("Silence 1h", "payflow:alert_silence"),
    ]
    bot.idle()  # the job records the message right after posting it
    [(key, record)] = group_records(redis_server).items()
    assert record["ts"] == message.ts and record["status"] == "firing" and record["version"] == 1
    assert key.endswith(record_key(group_id(record["group_key"])))

    am.resolve(LABELS, SUMMARY)

    resolved = wait_message(slack, lambda m: m.ts == message.ts and "RESOLVED" in m.text)
    bot.idle()  # the thread reply follows the update
    assert "~HighErrorRate~" in body(resolved)
    assert [b[0] for b in buttons(resolved)] == ["Metrics"]  # nothing left to silence
    assert len(top_level(slack)) == 1  # updated in place, never a second message
    posts = [c for c in slack.calls_to("chat.postMessage") if not c.params.get("thread_ts")]
    assert len(posts) == 1
    [reply] = replies(slack, message)
    assert "Resolved: ~HighErrorRate~" in body(reply)
    [(_, record)] = group_records(redis_server).items()
    assert record["status"] == "resolved" and record["version"] == 2


def test_new_alert_in_the_group_fires_in_the_thread_of_the_same_message(am, bot, slack, redis_server):
    am.fire(LABELS, SUMMARY)
    message = wait_message(slack, lambda m: "FIRING" in m.text)
    am.fire({**LABELS, "instance": "10.0.0.8:3000"}, SUMMARY)

    updated = wait_message(slack, lambda m: m.ts == message.ts and "2 firing" in m.text)
    bot.idle()
    text = body(updated)
    assert "instance=10.0.0.7:3000" in text and "instance=10.0.0.8:3000" in text
    [reply] = replies(slack, message)
    assert "Fired: *HighErrorRate* `instance=10.0.0.8:3000`" in body(reply)
    assert len(top_level(slack)) == 1


def test_silence_button_creates_a_silence_through_the_api_and_is_audited(am, bot, chat, slack):
    am.fire(LABELS, SUMMARY)
    message = wait_message(slack, lambda m: "FIRING" in m.text)

    denied = chat.click(message, "Silence 1h", user="dave")
    assert denied.status_code == 200
    assert am.silences() == []

    chat.click(message, "Silence 1h", user="alice")

    [silence] = am.silences()
    assert silence["status"]["state"] == "active"
    assert silence["createdBy"] == "U0ALICE"
    assert "HighErrorRate (api-gateway)" in silence["comment"]
    matchers = {(m["name"], m["value"], m["isRegex"], m.get("isEqual", True)) for m in silence["matchers"]}
    assert matchers == {(k, v, False, True) for k, v in LABELS.items()}
    starts = datetime.fromisoformat(silence["startsAt"].replace("Z", "+00:00"))
    ends = datetime.fromisoformat(silence["endsAt"].replace("Z", "+00:00"))
    assert timedelta(minutes=59) < ends - starts <= timedelta(hours=1, seconds=1)
    updated = next(m for m in top_level(slack) if m.ts == message.ts)
    assert "Silenced by <@U0ALICE>" in body(updated)
    assert "Silence 1h" not in [b[0] for b in buttons(updated)]
    [reply] = replies(slack, message)
    assert f"<@U0ALICE> silenced *HighErrorRate (api-gateway)* for 1 hour (silence `{silence['id']}`)" in (
        body(reply)
    )
    entries = [(e.actor, e.action, e.outcome, e.target) for e in chat.audit()]
    assert ("U0ALICE", "alert.silence", "ok", "api-gateway") in entries
    assert ("U0DAVE", "click:alert_silence", "denied", None) in entries


def test_metrics_button_answers_in_the_alert_thread(am, bot, chat, slack):
    am.fire(LABELS, SUMMARY)
    message = wait_message(slack, lambda m: "FIRING" in m.text)

    chat.click(message, "Metrics", user="dave")

    assert replies(slack, message) or len(top_level(slack)) == 2  # the metrics, in thread or channel
    [entry] = [e for e in chat.audit() if e.action == "click:alert_metrics"]
    assert (entry.actor, entry.outcome, entry.target) == ("U0DAVE", "ok", "api-gateway")


# --- webhook edge: authentication and validation ---------------------------------------------


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer wrong-token",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        "Bearer",
        _basic("am", TOKEN),
        TOKEN,
    ],
    ids=["missing", "wrong", "longer", "shorter", "empty", "basic-not-configured", "no-scheme"],
)
def test_bad_webhook_auth_is_401_and_changes_nothing(bot, slack, redis_server, authorization):
    headers = {"authorization": authorization} if authorization is not None else {}
    response = send(bot, payload("firing", [alert("firing")]), token=None, **headers)
    bot.idle()

    assert response.status_code == 401
    assert response.json() == {"error": "missing or wrong credentials"}
    assert TOKEN not in response.text
    assert slack.calls == []
    assert redis_server.client().dbsize() == 0


MALFORMED = [
    (b"{not json", "body is not JSON"),
    (b"[]", "body must be a JSON object"),
    ({**payload("firing", [alert("firing")]), "version": "3"}, "version: Input should be '4'"),
    (
        {k: v for k, v in payload("firing", [alert("firing")]).items() if k != "groupKey"},
        "groupKey: Field required",
    ),
    (payload("firing", [{**alert("firing"), "status": "burning"}]), "alerts.0.status: Input should be"),
    ({**payload("firing", [alert("firing")]), "alerts": []}, "alerts: List should have at least 1 item"),
    (payload("firing", [{**alert("firing"), "startsAt": "yesterday"}]), "alerts.0.startsAt"),
    (payload("firing", [{**alert("firing"), "labels": {"a": 1}}]), "alerts.0.labels.a"),
]


@pytest.mark.parametrize(("doc", "reason"), MALFORMED, ids=[r.split(":")[0] for _, r in MALFORMED])
def test_malformed_payload_is_400_with_a_reason_and_logged(bot, slack, redis_server, caplog, doc, reason):
    raw = doc if isinstance(doc, bytes) else None
    response = send(bot, doc, raw=raw)
    bot.idle()

    assert response.status_code == 400
    assert reason in response.json()["error"]
    assert "malformed Alertmanager notification" in caplog.text and reason in caplog.text
    assert slack.calls == []
    assert redis_server.client().dbsize() == 0
    assert bot.get("/healthz").text == "ok"  # nothing crashed


def test_basic_auth_from_the_settings_is_accepted(settings, catalog, k8s_view, slack, redis_server):
    basic = replace(
        settings,
        alertmanager_webhook_token=None,
        alertmanager_webhook_user="alertmanager",
        alertmanager_webhook_password="s3cret-pw",
    )
    server = BotServer(build_runtime(basic, catalog)).start()
    try:
        wrong = send(server, payload("firing", [alert("firing")]), token=None, authorization=_basic("x", "y"))
        bearer = send(server, payload("firing", [alert("firing")]))
        assert wrong.status_code == bearer.status_code == 401
        assert redis_server.client().dbsize() == 0
        ok = send(
            server,
            payload("firing", [alert("firing")]),
            token=None,
            authorization=_basic("alertmanager", "s3cret-pw"),
        )
        assert ok.status_code == 200
        wait_message(slack, lambda m: "FIRING" in m.text)
    finally:
        server.stop()


def test_unconfigured_webhook_answers_503_and_says_what_to_set(
    settings, catalog, k8s_view, slack, redis_server
):
    bare = replace(settings, alertmanager_webhook_token=None)
    server = BotServer(build_runtime(bare, catalog)).start()
    try:
        response = send(server, payload("firing", [alert("firing")]))
    finally:
        server.stop()
    assert response.status_code == 503
    assert "ALERTMANAGER_WEBHOOK_TOKEN" in response.json()["error"]
    assert slack.calls == [] and redis_server.client().dbsize() == 0


# --- state in the store: repeats, restarts, replicas, routing --------------------------------


def test_repeats_are_deduplicated_and_a_restarted_bot_updates_the_same_message(
    settings, catalog, k8s_view, slack, redis_server
):
    first = BotServer(build_runtime(settings, catalog)).start()
    try:
        assert send(first, payload("firing", [alert("firing")])).status_code == 200
        message = wait_message(slack, lambda m: "FIRING" in m.text)
        assert send(first, payload("firing", [alert("firing")])).status_code == 200  # repeat_interval
        first.idle()
    finally:
        first.stop()
    assert len(slack.calls_to("chat.postMessage")) == 1 and slack.calls_to("chat.update") == []

    second = BotServer(build_runtime(settings, catalog)).start()  # a new process, the same Redis
    try:
        send(second, payload("firing", [alert("firing")]))
        second.idle()
        assert len(slack.calls_to("chat.postMessage")) == 1 and slack.calls_to("chat.update") == []
        send(second, payload("resolved", [alert("resolved")]))
        second.idle()
        send(second, payload("resolved", [alert("resolved")]))
        second.idle()
        send(second, payload("firing", [alert("firing")]))  # a late retry of the old firing state
        second.idle()
    finally:
        second.stop()
    [update] = slack.calls_to("chat.update")
    assert update.params["ts"] == message.ts
    [only] = top_level(slack)
    assert only.ts == message.ts and "RESOLVED" in only.text
    assert len(replies(slack, message)) == 1


def test_two_replicas_receiving_a_new_group_at_once_post_one_message(
    settings, catalog, k8s_view, slack, redis_server
):
    slack.set_latency(0.2)  # a slow Slack widens the window in which both could post
    replicas = [BotServer(build_runtime(settings, catalog)).start() for _ in range(2)]
    try:
        doc = payload("firing", [alert("firing")])
        answers: list[int] = []
        threads = [
            threading.Thread(target=lambda b=b: answers.append(send(b, doc).status_code)) for b in replicas
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for b in replicas:
            b.idle(20)
    finally:
        for b in replicas:
            b.stop()
    assert answers == [200, 200]
    assert len(top_level(slack)) == 1
    assert len(slack.calls_to("chat.postMessage")) == 1
    [(_, record)] = group_records(redis_server).items()
    assert record["version"] == 1 and record["claim"] is None


def test_roll_back_is_offered_only_after_a_recent_traffic_switch(bot, slack, redis_server):
    now = datetime.now(UTC)
    store = bot.runtime.store
    for change_id, service, state, ago in (
        ("chg-00000001", "api-gateway", "verifying", timedelta(minutes=10)),  # baking now
        ("chg-00000002", "wallet-service", "done", timedelta(hours=2)),
    ):
        record = Change(change_id, "deploy", service, state=state, switched_at=(now - ago).isoformat())
        bot.call(store.put(f"change:{change_id}", record.to_record()))
    # the change indexes, as a worker's start builds them (the gate keeps them from then on)
    bot.call(Records(store, lock_ttl=60, lease_seconds=30).reindex())
    wallet = {**LABELS, "service": "wallet-service"}

    send(bot, payload("firing", [alert("firing")], group_key="g:api"))
    send(bot, payload("firing", [alert("firing", wallet, "f0f0f0f0f0f0f0f0")], group_key="g:wallet"))

    api_msg = wait_message(slack, lambda m: "api-gateway" in m.text)
    wallet_msg = wait_message(slack, lambda m: "wallet-service" in m.text)
    assert ("Roll back", "payflow:rollback", "api-gateway") in buttons(api_msg)
    rollback = next(
        el
        for b in api_msg.blocks
        if b["type"] == "actions"
        for el in b["elements"]
        if el["value"] == "api-gateway" and el["action_id"] == "payflow:rollback"
    )
    assert rollback["style"] == "danger"
    assert "Roll back" not in [b[0] for b in buttons(wallet_msg)]


def test_severity_routes_a_group_to_its_channel(settings, catalog, k8s_view, slack, redis_server):
    routed = catalog.model_copy(
        update={"alerts": catalog.alerts.model_copy(update={"channels": {"critical": "#payflow-incidents"}})}
    )
    server = BotServer(build_runtime(settings, routed)).start()
    try:
        send(
            server,
            payload("firing", [alert("firing", {**LABELS, "severity": "critical"})], group_key="g:crit"),
        )
        send(server, payload("firing", [alert("firing", LABELS, "0123456789abcdef")], group_key="g:warn"))
        server.idle()
    finally:
        server.stop()
    assert [m.text.split(" — ")[0] for m in top_level(slack, "#payflow-incidents")] == [
        "🔥 FIRING: HighErrorRate (api-gateway)"
    ]
    assert len(top_level(slack, ALERTS)) == 1


def test_serve_hands_notifications_to_its_worker_process(
    slack, redis_url, redis_server, kubeconfig, k8s_view, start_serve
):
    """The real `serve`: the web process validates and answers, the worker process posts (the
    job crosses the process boundary as pickled data)."""
    settings = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        "REDIS_URL": redis_url,
        "KUBECONFIG": str(kubeconfig),
        "ALERTMANAGER_WEBHOOK_TOKEN": TOKEN,
    }
    served = start_serve(settings)
    doc = payload("firing", [alert("firing")])
    headers = {"authorization": f"Bearer {TOKEN}"}
    assert served.http.post("/alertmanager", json=doc, headers=headers, timeout=5).status_code == 200
    assert served.http.post("/alertmanager", json=doc, timeout=5).status_code == 401
    message = wait_message(slack, lambda m: "FIRING" in m.text)
    assert "HighErrorRate" in message.text
    # the worker records the message right after posting it
    wait_until(lambda: any(r["ts"] for r in group_records(redis_server).values()), 10, "the group's record")
    [record] = group_records(redis_server).values()
    assert record["ts"] == message.ts
    served.stop()
    assert TOKEN not in served.text()


def test_silence_refused_when_alertmanager_is_down_changes_nothing(am, bot, chat, slack):
    am.fire(LABELS, SUMMARY)
    message = wait_message(slack, lambda m: "FIRING" in m.text)
    am.stop()

    chat.click(message, "Silence 1h", user="alice")

    assert "Alertmanager not reachable" in slack.responses[-1].params["text"]
    assert "Nothing was silenced" in slack.responses[-1].params["text"]
    current = next(m for m in top_level(slack) if m.ts == message.ts)
    assert "Silence 1h" in [b[0] for b in buttons(current)] and "Silenced by" not in body(current)
    assert replies(slack, message) == []
    [entry] = [e for e in chat.audit() if "silence" in e.action]
    assert (entry.action, entry.outcome) == ("click:alert_silence", "refused")


def test_silence_without_alertmanager_url_is_refused(settings, catalog, k8s_view, slack):
    server = BotServer(build_runtime(replace(settings, alertmanager_url=None), catalog)).start()
    try:
        send(server, payload("firing", [alert("firing")]))
        message = wait_message(slack, lambda m: "FIRING" in m.text)
        chat = Chat(server, slack, SlackRequests(SIGNING_SECRET, response_url=slack.response_url("click")))
        chat.click(message, "Silence 1h", user="alice")
    finally:
        server.stop()
    assert "Silencing needs ALERTMANAGER_URL" in slack.responses[-1].params["text"]


def test_catalog_alert_routing_errors_name_the_key():
    data = load_catalog().model_dump(mode="json")
    data["alerts"] = {
        "channels": {"critical": "incidents"},
        "service_label": "app-name",
        "sevirity_label": "x",
    }
    with pytest.raises(CatalogError) as exc:
        parse_catalog(data)
    assert set(exc.value.problems) == {
        "alerts.channels.critical: 'incidents' is neither a channel ID (C…, G…) nor a #channel-name",
        "alerts.service_label: 'app-name' is not a Prometheus label name (letters, digits, '_')",
        "alerts.sevirity_label: unknown key (check the spelling)",
    }


def test_a_thousand_alerts_in_one_group_are_counted_and_their_changes_told_right(
    settings, catalog, k8s_view, slack, redis_server
):
    """One notification of 1,000 firing alerts: the message shows a bounded number of lines but
    counts all 1,000; when 500 of them resolve, the thread says 0 fired, 500 resolved (not that
    the lines that came into view 'fired')."""
    alerts = [
        alert(
            "firing",
            labels={**LABELS, "instance": f"10.0.{i // 250}.{i % 250}:3000"},
            fingerprint=f"{i:016x}",
        )
        for i in range(1000)
    ]
    server = BotServer(build_runtime(replace(settings, alertmanager_webhook_token=TOKEN), catalog)).start()
    try:
        assert send(server, payload("firing", alerts)).status_code == 200
        server.idle()
        [message] = top_level(slack)
        assert "1000 firing, 0 resolved" in message.text
        for a in alerts[:500]:
            a["status"], a["endsAt"] = "resolved", "2026-11-26T09:20:00Z"
        assert send(server, payload("firing", alerts)).status_code == 200
        server.idle()
    finally:
        server.stop()
    [message] = top_level(slack)
    assert "500 firing, 500 resolved" in message.text
    [thread] = replies(slack, message)
    assert thread.text == "0 fired, 500 resolved"
    [(_, record)] = group_records(redis_server).items()
    assert len(json.dumps(record)) < 200_000  # what is stored stays bounded
