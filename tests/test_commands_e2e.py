"""/payflow end to end: signed requests over HTTP to the served bot, the sandbox cluster read
back through the kubernetes client, the Slack stand-in and the real Redis store."""

from __future__ import annotations

import time

import pytest

from sandbox import demo
from sandbox.local import wait_until
from sandbox.slack_requests import SlackRequests
from tests.support.chat import Answer


def _post_texts(answer) -> str:
    return "\n".join(b["text"]["text"] for p in answer.posts for b in p.get("blocks", []) if "text" in b)


def test_status_reports_every_service_from_the_cluster(chat, k8s_view, catalog):
    answer = chat.run("status")

    assert answer.ack_text == ""
    assert len(answer.posts) == 1
    post = answer.posts[0]
    assert post["channel"] == demo.OPS_CHANNEL_ID
    body = _post_texts(answer)
    for service in catalog.services:
        assert f"*{service}* — live: *blue*" in body
    assert body.count("blue *(live)* `v1.0.0` · 3/3 ready · 0 restarts · complete") == 4
    assert body.count("green `v1.0.0` · 0/0 ready · 0 restarts · scaled to zero") == 4
    assert "all 4 service(s) healthy" in post["text"]
    [entry] = chat.audit()
    assert (entry.actor, entry.action, entry.outcome) == ("U0ALICE", "status", "ok")


def test_status_of_one_service_and_problems_stand_out(chat, k8s_view, cluster):
    cluster.set_bad_image("v6.6.6", "CrashLoopBackOff")
    k8s_view.apps.patch_namespaced_deployment(
        "wallet-service-green",
        "payflow",
        {
            "spec": {
                "replicas": 2,
                "template": {
                    "spec": {
                        "containers": [{"name": "wallet-service", "image": "payflow/wallet-service:v6.6.6"}]
                    }
                },
            }
        },
        _content_type="application/strategic-merge-patch+json",
        _request_timeout=5,
    )

    def crashing() -> Answer | None:
        answer = chat.run("status wallet-service")
        return answer if "CrashLoopBackOff" in _post_texts(answer) else None

    answer = wait_until(crashing, 5, "status to show the CrashLoopBackOff", poll=0.05)
    body = _post_texts(answer)
    assert "*wallet-service*" in body and "api-gateway" not in body
    assert "\n🔴 *wallet-service* — live: *blue*\n" in body
    assert "⚠️ green: 2 pods in CrashLoopBackOff" in body
    assert "1 of 1 service(s) need attention" in answer.posts[0]["text"]


def test_scale_end_to_end(chat, k8s_view):
    before = k8s_view.fingerprint()
    answer = chat.run("scale api-gateway 5")

    assert answer.ack_text == ""
    assert answer.replies[0]["text"] == "⏳ Scaling api-gateway to 5 replicas…"
    assert [p["text"] for p in answer.posts] == ["<@U0ALICE> scaled api-gateway (blue) 3 → 5"]
    assert k8s_view.replicas("api-gateway-blue") == 5
    after = k8s_view.fingerprint()
    changed = {k for k in after if after[k] != before[k]}
    assert changed == {"deploy/api-gateway-blue"}
    [entry] = chat.audit()
    assert (entry.actor, entry.action, entry.target, entry.outcome, entry.detail) == (
        "U0ALICE",
        "scale",
        "api-gateway",
        "ok",
        "blue 3 → 5",
    )
    k8s_view.wait_settled()
    assert "blue *(live)* `v1.0.0` · 5/5 ready" in _post_texts(chat.run("status api-gateway"))


def test_scale_to_current_replicas_changes_nothing(chat, k8s_view):
    before = k8s_view.fingerprint()
    answer = chat.run("scale api-gateway 3")
    assert "already runs 3 replicas; nothing to do" in answer.replies[-1]["text"]
    assert answer.posts == []
    assert k8s_view.fingerprint() == before


BAD_INPUT = [
    ("scale api-gatway 5", "Unknown service `api-gatway`. Did you mean `api-gateway`?"),
    ("scale api-gateway -1", "Replicas cannot be negative; api-gateway takes 2–20."),
    ("scale api-gateway abc", "Replicas must be a whole number, got `abc`."),
    ("scale api-gateway 100000", "100000 replicas is out of bounds: api-gateway takes 2–20."),
    ("scale api-gateway 1", "1 replicas is out of bounds: api-gateway takes 2–20."),
    ("scale api-gateway 5 now please", "Too many arguments: `now please` is not understood here."),
    ("scale api-gateway", "Say which service and how many replicas."),
    ("scale api-gateway 5; rm -rf /", "Too many arguments: `rm -rf /` is not understood here."),
    ("scale api-gateway $(reboot)", "Replicas must be a whole number, got `$(reboot)`."),
    ("scale api-gateway `id`", "Replicas must be a whole number, got `'id'`."),
    ("status <!channel>", "Unknown service `&lt;!channel&gt;`."),
    ("scale api‐gateway ５", "Unknown service `api‐gateway`."),
    ("scale ✨💸 5", "Unknown service `✨💸`."),
    ("sacle api-gateway 5", "Unknown command `sacle`. Did you mean `scale`?"),
    ("promote api-gateway v1.2.3", "Unknown command `promote`."),
    ("audit api-gateway 500", "N must be between 1 and 50, got 500."),
    ("x" * 4000, "That is 4000 characters; a command is at most 500. Nothing was done."),
]


@pytest.mark.parametrize(("text", "expected"), BAD_INPUT, ids=[t[:30] for t, _ in BAD_INPUT])
def test_bad_input_gets_a_clear_answer_and_changes_nothing(chat, k8s_view, redis_server, text, expected):
    before = k8s_view.fingerprint()
    answer = chat.run(text)

    assert expected in answer.ack_text
    assert answer.replies == [] and answer.posts == []
    assert k8s_view.fingerprint() == before
    assert redis_server.client().dbsize() == 0  # not even an audit entry: nothing was attempted


def test_user_without_the_role_is_refused_and_audited(chat, k8s_view):
    before = k8s_view.fingerprint()
    answer = chat.run("scale api-gateway 5", user="dave")

    assert answer.posts == []
    [reply] = answer.replies
    assert reply["response_type"] == "ephemeral"
    assert "This needs the *operator* role; you have viewer." in reply["text"]
    assert k8s_view.fingerprint() == before
    [entry] = chat.audit()
    assert (entry.actor, entry.action, entry.outcome) == ("U0DAVE", "scale", "denied")
    assert "operator" in entry.detail


def test_role_through_a_user_group_is_honoured_and_cached(chat, k8s_view, slack):
    chat.run("scale api-gateway 4", user="bob")  # bob is an approver through S0APPROVERS
    chat.run("scale api-gateway 6", user="bob")
    assert k8s_view.replicas("api-gateway-blue") == 6
    assert len(slack.calls_to("usergroups.users.list")) == 1
    assert [e.outcome for e in chat.audit()] == ["ok", "ok"]


def test_command_from_a_channel_not_in_the_catalog_is_refused(chat, k8s_view):
    before = k8s_view.fingerprint()
    answer = chat.run("scale api-gateway 5", channel=("C0RANDOM", "random"))
    assert "/payflow is not enabled here. Use it in C0PAYFLOWOPS." in answer.replies[0]["text"]
    assert answer.posts == []
    assert k8s_view.fingerprint() == before
    assert [e.outcome for e in chat.audit()] == ["denied"]


def test_status_outside_the_allowed_channels_is_refused_too(chat, k8s_view):
    answer = chat.run("status", channel=("D0DIRECT", "directmessage"))
    assert "not enabled here" in answer.replies[0]["text"]
    assert answer.posts == []


@pytest.mark.parametrize("case", ["forged", "stale"])
def test_forged_or_stale_request_is_rejected_before_anything_happens(
    chat, k8s_view, slack, redis_server, case
):
    before = k8s_view.fingerprint()
    if case == "forged":
        response = chat.send("scale api-gateway 9", secret=SlackRequests("not-the-signing-secret"))
    else:
        response = chat.send("scale api-gateway 9", timestamp=int(time.time()) - 6 * 60)
    chat.bot.idle()

    assert response.status_code == 401
    assert slack.calls == [] and slack.responses == []
    assert k8s_view.fingerprint() == before
    assert redis_server.client().dbsize() == 0


def test_locked_service_refuses_scale(chat, k8s_view):
    store = chat.bot.runtime.store
    chat.bot.call(
        store.put("lock:api-gateway", {"by": "U0CAROL", "reason": "incident 42", "since": "09:00 UTC"})
    )
    before = k8s_view.fingerprint()
    answer = chat.run("scale api-gateway 5")
    assert (
        "api-gateway is locked by <@U0CAROL> since 09:00 UTC: incident 42. Nothing was changed."
        in answer.replies[-1]["text"]
    )
    assert k8s_view.fingerprint() == before
    assert [(e.action, e.outcome) for e in chat.audit()] == [("scale", "refused")]


def test_store_down_means_nothing_is_scaled(chat, k8s_view, redis_server):
    before = k8s_view.fingerprint()
    redis_server.stop()
    try:
        answer = chat.run("scale api-gateway 5")
    finally:
        redis_server.start()
    assert "store is unreachable, so nothing was done" in answer.replies[-1]["text"]
    assert k8s_view.fingerprint() == before


def test_audit_lists_the_latest_entries(chat, k8s_view):
    chat.run("scale api-gateway 4")
    chat.run("status wallet-service")
    chat.run("scale api-gateway 5", user="dave")

    answer = chat.run("audit")
    text = answer.replies[0]["text"]
    assert text == "Audit: last 3 entries"
    lines = answer.replies[0]["blocks"][1]["text"]["text"].splitlines()
    assert "<@U0DAVE> `scale api-gateway` *denied*" in lines[0]
    assert "<@U0ALICE> `status wallet-service` *ok*" in lines[1]
    assert "<@U0ALICE> `scale api-gateway` *ok* — blue 3 → 4" in lines[2]

    one = chat.run("audit api-gateway 1")
    assert len(one.replies[0]["blocks"][1]["text"]["text"].splitlines()) == 1


def test_help_lists_only_implemented_commands(chat):
    answer = chat.run("help")
    text = answer.all_text()
    for usage in (
        "/payflow status [service]",
        "/payflow scale <service> <replicas>",
        "/payflow audit [service] [N]",
    ):
        assert usage in text
    for usage in ("/payflow deploy <service> <version> [reason…]", "/payflow rollback <service> [reason…]"):
        assert usage in text
    assert "promote" not in text
    assert "e.g. `/payflow scale api-gateway 5`" in chat.run("help scale").all_text()


def test_health_ready_and_metrics_endpoints(chat, bot, redis_server):
    chat.run("scale api-gateway 4")
    assert bot.get("/healthz").text == "ok"
    ready = bot.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {
        "ready": True,
        "redis": "ok",
        "kubernetes": "ok",
        "jobs": "ok",
    }
    metrics = bot.get("/metrics").text
    assert 'payflow_commands_total{command="scale",outcome="ok"} 1.0' in metrics
    assert "payflow_ack_seconds_count 1.0" in metrics

    redis_server.stop()
    try:
        down = bot.get("/readyz")
    finally:
        redis_server.start()
    # reported, not a 503: a Redis blip must not take every replica out of the Service at once
    assert down.status_code == 200 and down.json()["ready"] is True
    assert down.json()["redis"].startswith("unavailable")


def test_slack_rate_limit_is_retried_and_the_message_lands_once(chat, slack, k8s_view):
    slack.fail_next("chat.postMessage", status=429, retry_after=0)
    answer = chat.run("scale api-gateway 4")
    assert len(answer.posts) == 2  # the refused attempt and the retry
    assert len(slack.messages(demo.OPS_CHANNEL_ID)) == 1
