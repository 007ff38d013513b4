"""Blue-green deploys end to end: the served bot, signed commands and button clicks, the sandbox
cluster read back through the kubernetes client, the real Redis store. No traffic switch
without an approval by an approver who is not the requester."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest

from bot.config.catalog import FreezeWindow, Members, Smoke
from bot.shell.runtime import build_runtime
from sandbox import demo
from tests.support.bot_server import BotServer
from tests.support.chat import Chat

APPROVALS = "#payflow-approvals"


def tuned(catalog, **env):
    """The demo catalog with fast smoke tests and no bake unless a test asks for one."""
    settings = {"smoke": Smoke(via="apiserver", interval_seconds=0.05), "bake_seconds": 0, **env}
    environment = catalog.env.model_copy(update=settings)
    return catalog.model_copy(update={"environments": {catalog.environment: environment}})


@pytest.fixture
def catalog(catalog):
    return tuned(catalog)


def ingress_backend(k8s_view, path="/") -> str:
    ing = k8s_view.net.read_namespaced_ingress("payflow-ingress", "payflow", _request_timeout=5)
    for p in ing.spec.rules[0].http.paths:
        if p.path == path:
            return p.backend.service.name
    raise AssertionError(path)


def image(k8s_view, name: str) -> str:
    return k8s_view.deployment(name).spec.template.spec.containers[0].image


def approval_message(chat: Chat, timeout: float = 15):
    def find(stub):
        for m in stub.messages(APPROVALS):
            if any(b.get("type") == "actions" for b in m.blocks or []):
                return m
        return None

    return chat.slack.wait_for(find, timeout=timeout)


def progress_text(chat: Chat) -> str:
    return "\n".join(m.text for m in chat.messages(demo.OPS_CHANNEL_ID))


def wait_progress(chat: Chat, fragment: str, timeout: float = 15) -> None:
    chat.slack.wait_for(lambda s: fragment in progress_text(chat), timeout=timeout)


def ingress_writes(cluster) -> int:
    """Writes to the ingress since the sandbox created it."""
    return cluster.writes("Ingress", "payflow", "payflow-ingress") - 1


def test_deploy_approve_switch_bake_and_scale_down(chat, k8s_view, cluster):
    answer = chat.run("deploy api-gateway v1.2.3 fixes PAY-981")
    assert answer.ack_text == "" and answer.replies == []
    message = approval_message(chat)

    text = str(message.blocks)
    assert "Approval needed: Deploy of *api-gateway* `v1.2.3` to green" in message.text
    for expected in (
        "`payflow/api-gateway:v1.2.3`",
        "*Replicas*\\n3",
        "<@U0ALICE>",
        "fixes PAY-981",
        "✓ 200 v1.2.3",
    ):
        assert expected in text, expected
    assert image(k8s_view, "api-gateway-green") == "payflow/api-gateway:v1.2.3"
    assert k8s_view.replicas("api-gateway-green") == 3
    assert ingress_backend(k8s_view) == "api-gateway-blue"  # nothing switched before the click

    chat.click(message, "Approve", user="bob")
    assert ingress_backend(k8s_view) == "api-gateway-green"
    decided = chat.messages(APPROVALS)[-1]
    assert "approved by <@U0BOB>" in decided.text or "approved by <@U0BOB>" in str(decided.blocks)
    assert not any(b.get("type") == "actions" for b in decided.blocks)  # buttons gone
    assert "traffic now on green `v1.2.3` (was blue `v1.0.0`)" in str(decided.blocks)

    wait_progress(chat, "— done")
    assert k8s_view.replicas("api-gateway-blue") == 0  # old color scaled down, deployment kept
    assert image(k8s_view, "api-gateway-blue") == "payflow/api-gateway:v1.0.0"
    actions = [(e.actor, e.action, e.outcome) for e in reversed(chat.audit())]
    assert ("U0ALICE", "change.request", "ok") in actions
    assert ("U0BOB", "change.approve", "ok") in actions
    assert ("U0BOB", "change.switch", "ok") in actions
    assert ("payflow-bot", "change.done", "ok") in actions
    switch = next(e for e in chat.audit() if e.action == "change.switch")
    assert switch.permalink and switch.permalink.startswith("https://payflow.slack.com/archives/")
    assert ingress_writes(cluster) == 1


def test_reject_changes_no_traffic(chat, k8s_view, cluster):
    chat.run("deploy api-gateway v1.2.3")
    message = approval_message(chat)
    chat.click(message, "Reject", user="bob")
    decided = chat.messages(APPROVALS)[-1]
    assert "rejected by <@U0BOB>" in str(decided.blocks)
    assert not any(b.get("type") == "actions" for b in decided.blocks)
    assert ingress_backend(k8s_view) == "api-gateway-blue" and ingress_writes(cluster) == 0
    chat.click(message, "Approve", user="carol")  # a late click on the old buttons
    assert "Already rejected by <@U0BOB>" in chat.slack.responses[-1].params["text"]
    assert ingress_backend(k8s_view) == "api-gateway-blue"


def test_requester_cannot_approve_their_own_change(chat, k8s_view, cluster):
    chat.run("deploy api-gateway v1.2.3", user="carol")  # carol is an admin, and still may not
    message = approval_message(chat)
    chat.click(message, "Approve", user="carol")
    assert "four-eyes" in chat.slack.responses[-1].params["text"]
    assert ingress_backend(k8s_view) == "api-gateway-blue" and ingress_writes(cluster) == 0
    assert [(e.actor, e.outcome) for e in chat.audit() if e.action == "click:approve"] == [
        ("U0CAROL", "refused")
    ]
    chat.click(message, "Approve", user="bob")
    assert ingress_backend(k8s_view) == "api-gateway-green"


def test_an_unreadable_admin_group_does_not_block_approvers_listed_by_id(
    chat, bot, k8s_view, cluster, settings, catalog
):
    """Admins come from a Slack user group, approvers and operators are listed by ID. Slack failing
    to list that group (500) must not deny them what the catalog grants them by ID: during an
    incident the rollback's approval must not hang on an unrelated group."""
    bot.stop()
    roles = catalog.roles.model_copy(
        update={
            "approver": Members(users=["U0BOB"]),
            "admin": Members(groups=["S0ADMINS"]),
        }
    )
    server = BotServer(build_runtime(settings, catalog.model_copy(update={"roles": roles}))).start()
    try:
        chat.bot = server
        chat.slack.fail_next("usergroups.users.list", status=500, times=50)
        chat.run("deploy api-gateway v1.2.3")
        message = approval_message(chat)
        chat.click(message, "Approve", user="bob")
        assert "Traffic now on green" in chat.slack.responses[-1].params["text"]
        assert ingress_backend(k8s_view) == "api-gateway-green" and ingress_writes(cluster) == 1
        chat.click(message, "Approve", user="dave")  # still no role for anyone the catalog does not name
        assert "user group S0ADMINS" in chat.slack.responses[-1].params["text"]
        assert ingress_writes(cluster) == 1
    finally:
        server.stop()


def test_non_approver_is_refused_and_audited(chat, k8s_view, cluster):
    chat.run("deploy api-gateway v1.2.3")
    message = approval_message(chat)
    chat.click(message, "Approve", user="dave")
    assert "This needs the *approver* role; you have viewer." in chat.slack.responses[-1].params["text"]
    chat.click(message, "Approve", user="alice")  # an operator is not an approver either
    assert "you have operator" in chat.slack.responses[-1].params["text"]
    assert ingress_writes(cluster) == 0
    denied = [(e.actor, e.outcome) for e in chat.audit() if e.action == "click:approve"]
    assert sorted(denied) == [("U0ALICE", "denied"), ("U0DAVE", "denied")]


def test_cancel_before_approval(chat, k8s_view, cluster):
    chat.run("deploy api-gateway v1.2.3")
    message = approval_message(chat)
    change_id = message.text.split(" ")[2].rstrip(":")
    refused = chat.run(f"cancel {change_id}", user="bob")  # neither requester nor admin
    assert "Only the requester (<@U0ALICE>) or an admin" in refused.replies[-1]["text"]
    done = chat.run(f"cancel {change_id}")
    assert f"Cancelled {change_id}" in done.replies[-1]["text"]
    assert "cancelled by <@U0ALICE>" in str(chat.messages(APPROVALS)[-1].blocks)
    chat.click(message, "Approve", user="bob")
    assert ingress_writes(cluster) == 0
    listing = chat.run("changes api-gateway").all_text()
    assert change_id in listing and "cancelled" in listing


def test_approval_expires(chat, bot, k8s_view, cluster, settings, catalog):
    bot.stop()
    short = tuned(catalog, approval_ttl_seconds=2)
    server = BotServer(build_runtime(settings, short)).start()
    try:
        chat.bot = server
        chat.run("deploy api-gateway v1.2.3")
        message = approval_message(chat)
        chat.slack.wait_for(lambda s: "expired" in str(s.messages(APPROVALS)[-1].blocks), timeout=15)
        assert not any(b.get("type") == "actions" for b in chat.messages(APPROVALS)[-1].blocks)
        chat.click(message, "Approve", user="bob")
        assert "expired" in chat.slack.responses[-1].params["text"]
        assert ingress_writes(cluster) == 0 and ingress_backend(k8s_view) == "api-gateway-blue"
    finally:
        server.stop()


def test_bad_image_never_reaches_approval(chat, k8s_view, cluster):
    cluster.set_bad_image("v6.6.6", "ImagePullBackOff")
    chat.run("deploy api-gateway v6.6.6")
    wait_progress(chat, "— failed")
    text = str(chat.messages(demo.OPS_CHANNEL_ID)[-1].blocks)
    assert "ImagePullBackOff" in text and "payflow/api-gateway:v6.6.6" in text
    assert chat.messages(APPROVALS) == []
    assert ingress_backend(k8s_view) == "api-gateway-blue" and ingress_writes(cluster) == 0
    # the lock was released: the next deploy may start
    chat.run("deploy api-gateway v1.2.4")
    assert approval_message(chat)


def test_crash_looping_version_never_reaches_approval(chat, k8s_view, cluster):
    cluster.set_bad_image("v6.6.7", "CrashLoopBackOff")
    chat.run("deploy wallet-service v6.6.7")
    wait_progress(chat, "— failed")
    assert "CrashLoopBackOff" in str(chat.messages(demo.OPS_CHANNEL_ID)[-1].blocks)
    assert chat.messages(APPROVALS) == []


def test_fifty_simultaneous_clicks_switch_once(chat, bot, k8s_view, cluster):
    chat.run("deploy api-gateway v1.2.3")
    message = approval_message(chat)
    barrier = threading.Barrier(50)
    statuses = []

    def click() -> None:
        barrier.wait()
        statuses.append(chat.click(message, "Approve", user="bob", wait=False).status_code)

    threads = [threading.Thread(target=click) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bot.idle(timeout=30)
    assert statuses == [200] * 50
    assert ingress_writes(cluster) == 1
    assert ingress_backend(k8s_view) == "api-gateway-green"
    texts = [r.params["text"] for r in chat.slack.responses]
    assert sum("Traffic now on green" in t for t in texts) == 1
    assert sum("Already approved by <@U0BOB>" in t for t in texts) == 49
    trail = chat.audit(limit=200)
    assert len([e for e in trail if e.action == "change.switch"]) == 1
    clicks = [e for e in trail if e.action == "click:approve"]
    assert [e.outcome for e in clicks].count("ok") == 1  # an auditor finds exactly one approval
    assert [e.outcome for e in clicks].count("lost") == 49
    assert all(e.detail.startswith("lost: already approved by U0BOB") for e in clicks if e.outcome == "lost")


def set_backend(k8s_view, path: str, backend: str) -> None:
    """`kubectl edit` of one path's backend in the shared ingress, behind the bot's back."""
    ing = k8s_view.net.read_namespaced_ingress("payflow-ingress", "payflow", _request_timeout=5)
    j = next(j for j, p in enumerate(ing.spec.rules[0].http.paths) if p.path == path)
    k8s_view.net.patch_namespaced_ingress(
        "payflow-ingress",
        "payflow",
        [{"op": "replace", "path": f"/spec/rules/0/http/paths/{j}/backend/service/name", "value": backend}],
        _content_type="application/json-patch+json",
        _request_timeout=5,
    )


def annotate_ingress(k8s_view) -> None:
    k8s_view.net.patch_namespaced_ingress(
        "payflow-ingress",
        "payflow",
        {"metadata": {"annotations": {"edited-by": "someone-with-kubectl"}}},
        _content_type="application/merge-patch+json",
        _request_timeout=5,
    )


def change_record(chat: Chat, change_id: str) -> dict:
    """The change as the store holds it."""
    return chat.bot.call(chat.bot.runtime.store.get(f"change:{change_id}"))


def change_id_of(message) -> str:
    return message.text.split(" ")[2].rstrip(":")


def test_this_services_route_changed_behind_the_bots_back_voids_the_change(chat, k8s_view, cluster):
    chat.run("deploy api-gateway v1.2.3")
    message = approval_message(chat)
    set_backend(k8s_view, "/", "maintenance-page")
    writes = ingress_writes(cluster)
    chat.click(message, "Approve", user="bob")
    reply = chat.slack.responses[-1].params["text"]
    assert "Voided: payflow-ingress now points api-gateway at `maintenance-page`" in reply
    assert ingress_writes(cluster) == writes and ingress_backend(k8s_view) == "maintenance-page"
    assert "voided" in str(chat.messages(APPROVALS)[-1].blocks)
    assert change_record(chat, change_id_of(message))["state"] == "voided"


def test_another_services_route_or_an_annotation_does_not_void_the_change(chat, k8s_view, cluster):
    """The ingress is shared: only this service's own route is the precondition."""
    chat.run("deploy api-gateway v1.2.3")
    message = approval_message(chat)
    annotate_ingress(k8s_view)
    set_backend(k8s_view, "/wallet", "wallet-service-green")
    chat.click(message, "Approve", user="bob")
    assert "Traffic now on green `v1.2.3`" in chat.slack.responses[-1].params["text"]
    assert ingress_backend(k8s_view) == "api-gateway-green"
    assert ingress_backend(k8s_view, "/wallet") == "wallet-service-green"  # untouched by the switch
    ing = k8s_view.net.read_namespaced_ingress("payflow-ingress", "payflow", _request_timeout=5)
    assert ing.metadata.annotations["edited-by"] == "someone-with-kubectl"


def test_two_approved_switches_on_the_shared_ingress_both_apply(chat, k8s_view, cluster):
    chat.run("deploy api-gateway v1.2.3")
    chat.run("deploy wallet-service v2.1.0")

    def pending(service):
        def find(stub):
            for m in stub.messages(APPROVALS):
                if f"*{service}*" in m.text and any(b.get("type") == "actions" for b in m.blocks or []):
                    return m
            return None

        return chat.slack.wait_for(find, timeout=20)

    gateway, wallet = pending("api-gateway"), pending("wallet-service")
    chat.click(wallet, "Approve", user="bob")
    chat.click(gateway, "Approve", user="bob")
    texts = [r.params["text"] for r in chat.slack.responses[-2:]]
    assert all("Traffic now on green" in t for t in texts), texts
    assert ingress_backend(k8s_view) == "api-gateway-green"
    assert ingress_backend(k8s_view, "/wallet") == "wallet-service-green"
    assert ingress_writes(cluster) == 2


def test_store_down_at_click_means_no_switch(chat, k8s_view, cluster, redis_server):
    chat.run("deploy api-gateway v1.2.3")
    message = approval_message(chat)
    redis_server.stop()
    try:
        chat.click(message, "Approve", user="bob")
    finally:
        redis_server.start()
    assert "store is unreachable, so nothing was done" in chat.slack.responses[-1].params["text"]
    assert ingress_writes(cluster) == 0 and ingress_backend(k8s_view) == "api-gateway-blue"


def test_rollback_after_scale_down_brings_the_old_color_back_first(chat, k8s_view, cluster):
    chat.run("deploy api-gateway v1.2.3")
    chat.click(approval_message(chat), "Approve", user="bob")
    wait_progress(chat, "— done")
    assert k8s_view.replicas("api-gateway-blue") == 0

    chat.run("rollback api-gateway p95 doubled")
    chat.slack.wait_for(
        lambda s: len([m for m in s.messages(APPROVALS) if "Rollback" in m.text]) == 1, timeout=20
    )
    message = next(m for m in chat.messages(APPROVALS) if "Rollback" in m.text)
    assert k8s_view.replicas("api-gateway-blue") == 3  # scaled back up and ready before asking
    assert "Rollback of *api-gateway* to blue `v1.0.0`" in message.text
    chat.click(message, "Approve", user="bob")
    assert ingress_backend(k8s_view) == "api-gateway-blue"


def test_lock_refuses_deploy_and_scale_and_changes_nothing(chat, k8s_view, cluster):
    locked = chat.run("lock api-gateway INC-42 ledger drift")
    assert "🔒 <@U0ALICE> locked *api-gateway*: INC-42 ledger drift" in locked.posts[0]["text"]
    before = k8s_view.fingerprint()
    for text in (
        "deploy api-gateway v1.2.3",
        "scale api-gateway 5",
        "rollback api-gateway",
        "restart api-gateway",
    ):
        answer = chat.run(text, user="carol")
        assert "api-gateway is locked by <@U0ALICE>" in answer.replies[-1]["text"], text
    assert k8s_view.fingerprint() == before
    assert (
        "Only <@U0ALICE>, who locked api-gateway, or an admin"
        in chat.run("unlock api-gateway", user="bob").all_text()
    )
    assert "unlocked *api-gateway*" in chat.run("unlock api-gateway", user="carol").posts[0]["text"]
    chat.run("deploy api-gateway v1.2.3")
    assert approval_message(chat)


def test_freeze_window_and_break_glass(chat, bot, k8s_view, settings, catalog):
    bot.stop()
    now = datetime.now(UTC)
    window = FreezeWindow(
        start=now - timedelta(hours=1), end=now + timedelta(hours=1), reason="year-end freeze"
    )
    frozen = tuned(catalog, freeze_windows=[window])
    server = BotServer(build_runtime(settings, frozen)).start()
    try:
        chat.bot = server
        before = k8s_view.fingerprint()
        refused = chat.run("deploy api-gateway v1.2.3")
        assert (
            "change freeze until" in refused.replies[-1]["text"]
            and "year-end freeze" in refused.replies[-1]["text"]
        )
        not_admin = chat.run("deploy api-gateway v1.2.3 --break-glass INC-9 card auth down")
        assert "Only an admin may use `--break-glass`" in not_admin.replies[-1]["text"]
        assert k8s_view.fingerprint() == before
        chat.run("deploy api-gateway v1.2.3 --break-glass INC-9 card auth down", user="carol")
        assert approval_message(chat)
        announced = chat.messages("#payflow-audit")
        assert len(announced) == 1 and "Break-glass: <@U0CAROL>" in announced[0].text
        assert any(e.action == "change.break_glass" for e in chat.audit())
    finally:
        server.stop()


def test_pending_approval_survives_a_bot_restart(chat, bot, k8s_view, settings, catalog):
    chat.run("deploy api-gateway v1.2.3")
    message = approval_message(chat)
    bot.stop()  # the process goes away with its watcher; the record stays in Redis
    server = BotServer(build_runtime(settings, catalog)).start()
    try:
        chat.bot = server
        chat.click(message, "Approve", user="bob")
        assert ingress_backend(k8s_view) == "api-gateway-green"
    finally:
        server.stop()


def test_a_service_locked_after_the_request_cannot_be_approved(chat, k8s_view, cluster):
    chat.run("deploy api-gateway v1.2.3")
    message = approval_message(chat)
    chat.run("lock api-gateway INC-7 investigating", user="alice")
    chat.click(message, "Approve", user="bob")
    assert "api-gateway is locked by <@U0ALICE>" in chat.slack.responses[-1].params["text"]
    assert ingress_backend(k8s_view) == "api-gateway-blue" and ingress_writes(cluster) == 0
    assert change_record(chat, change_id_of(message))["state"] == "awaiting_approval"


def test_a_deploy_requested_before_a_freeze_cannot_be_approved_during_it(
    chat, bot, k8s_view, cluster, settings, catalog
):
    """The freeze is checked at the request; it must hold at the approval too, or a deploy asked
    for a minute before the year-end freeze switches traffic inside it without a break-glass."""
    chat.run("deploy api-gateway v1.2.3")
    message = approval_message(chat)
    bot.stop()
    now = datetime.now(UTC)
    window = FreezeWindow(start=now - timedelta(minutes=1), end=now + timedelta(hours=1), reason="year-end")
    server = BotServer(build_runtime(settings, tuned(catalog, freeze_windows=[window]))).start()
    try:
        chat.bot = server
        chat.click(message, "Approve", user="bob")
        reply = chat.slack.responses[-1].params["text"]
        assert "change freeze" in reply and "year-end" in reply, reply
        assert ingress_backend(k8s_view) == "api-gateway-blue" and ingress_writes(cluster) == 0
        assert change_record(chat, change_id_of(message))["state"] == "awaiting_approval"
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("deploy api-gateway 1.2.3", "`1.2.3` is not a version. Use a tag like `v1.2.3`"),
        ("deploy api-gateway latest", "`latest` is not a version"),
        ("deploy api-gateway sha256:abc", "`sha256:abc` is not a version"),
        ("deploy api-gateway v1.2.3;rm", "is not a version"),
        ("deploy api-gateway", "Say which service and which version."),
        ("deploy payments v1.2.3", "Unknown service `payments`."),
        ("deploy api-gateway v1.2.3 --force", "Unknown option `--force`"),
        ("deploy api-gateway v1.2.3 --break-glass", "`--break-glass` needs a reason"),
        ("cancel 42", "`42` is not a change ID"),
        ("lock api-gateway", "Say which service and why"),
    ],
)
def test_bad_change_requests_change_nothing(chat, k8s_view, redis_server, text, expected):
    before = k8s_view.fingerprint()
    answer = chat.run(text)
    assert expected in answer.ack_text
    assert k8s_view.fingerprint() == before
    assert redis_server.client().dbsize() == 0


def test_refusals_before_anything_is_written(chat, k8s_view, redis_server):
    before = k8s_view.fingerprint()
    live = chat.run("deploy api-gateway v1.0.0")
    assert "already runs `v1.0.0` on the live color (blue)" in live.replies[-1]["text"]
    assert (
        chat.run("deploy api-gateway v1.2.3", user="dave").replies[-1]["text"].startswith("⛔ This needs the")
    )
    assert k8s_view.fingerprint() == before
    assert not [k for k in redis_server.client().keys("*") if "change" in k]
    chat.run("deploy api-gateway v1.2.3")
    approval_message(chat)
    second = chat.run("deploy api-gateway v1.2.4")
    assert "is in flight: awaiting approval" in second.replies[-1]["text"]


def test_restart_asks_to_confirm_then_rolls_the_live_color(chat, k8s_view):
    answer = chat.run("restart auth-service")
    [reply] = [r for r in answer.replies if r.get("blocks")]
    assert "Restart *auth-service* (blue)?" in reply["text"]
    before = k8s_view.deployment("auth-service-blue").metadata.generation
    message = type(
        "M",
        (),
        {"channel": demo.OPS_CHANNEL_ID, "ts": "1.0", "text": reply["text"], "blocks": reply["blocks"]},
    )
    chat.click(message, "Restart auth-service", user="alice")
    assert k8s_view.deployment("auth-service-blue").metadata.generation == before + 1
    chat.slack.wait_for(lambda s: "done" in progress_text(chat), timeout=20)
    assert "♻️ <@U0ALICE> restarted *auth-service* (blue)" in progress_text(chat)


def test_a_rollout_interrupted_by_a_bot_restart_is_resumed(chat, bot, k8s_view, cluster, settings, catalog):
    cluster.ready_delay = 1.5  # pods take a while, so the bot goes away mid-rollout
    chat.run("deploy api-gateway v1.2.3")
    wait_progress(chat, "— rolling out")
    bot.stop()
    server = BotServer(build_runtime(settings, catalog)).start()  # resumes changes at start
    try:
        chat.bot = server
        message = approval_message(chat, timeout=30)
        assert len([m for m in chat.messages(APPROVALS) if "Approval needed" in m.text]) == 1
        chat.click(message, "Approve", user="bob")
        assert ingress_backend(k8s_view) == "api-gateway-green"
    finally:
        server.stop()


def test_traffic_through_a_service_selector(chat, bot, k8s_view, settings, catalog, cluster):
    """The catalog may name a Service whose selector picks the color instead of an ingress."""
    bot.stop()
    spec = catalog.services["wallet-service"]
    selector = spec.model_copy(
        update={"traffic": spec.traffic.model_copy(update={"kind": "service", "name": "wallet"})}
    )
    by_selector = catalog.model_copy(update={"services": {**catalog.services, "wallet-service": selector}})
    cluster.create(
        "Service",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "wallet", "namespace": "payflow"},
            "spec": {"selector": {"app": "wallet-service", "color": "blue"}, "ports": [{"port": 3002}]},
        },
    )
    server = BotServer(build_runtime(settings, by_selector)).start()
    try:
        chat.bot = server
        assert "*wallet-service* — live: *blue*" in str(chat.run("status wallet-service").posts)
        health = str(chat.run("health").posts)  # its probe waits for the Services, the others don't
        assert health.count(": /health 200 v") == len(catalog.services), health
        assert "no live color" not in health, health
        health = str(chat.run("health wallet-service").posts)
        assert "blue (live) v" in health and "blue: /health 200 v" in health, health
        chat.run("deploy wallet-service v2.1.0")
        chat.click(approval_message(chat), "Approve", user="bob")
        svc = k8s_view.core.read_namespaced_service("wallet", "payflow", _request_timeout=5)
        assert svc.spec.selector == {"app": "wallet-service", "color": "green"}
        health = str(chat.run("health wallet-service").posts)
        assert "green (live) v2.1.0" in health and "green: /health 200 v2.1.0" in health, health
        assert (
            ingress_backend(k8s_view, "/wallet") == "wallet-service-blue"
        )  # the ingress is not this service's
    finally:
        server.stop()


def test_a_tampered_button_value_is_refused_plainly(chat, k8s_view, cluster, redis_server):
    chat.run("deploy api-gateway v1.2.3")
    message = approval_message(chat)
    keys_before = sorted(redis_server.client().keys("*"))
    for tampered in ("x" * 1900, "chg-../../etc", "chg-0000000g", ""):
        blocks = json.loads(json.dumps(message.blocks))
        for block in blocks:
            for el in block.get("elements", []) if block.get("type") == "actions" else []:
                el["value"] = tampered
        forged = type(
            "M", (), {"channel": message.channel, "ts": message.ts, "text": message.text, "blocks": blocks}
        )
        chat.click(forged, "Approve", user="bob")
        text = chat.slack.responses[-1].params["text"]
        assert "That is not a change ID" in text and "Something went wrong" not in text, tampered[:20]
    assert ingress_writes(cluster) == 0 and ingress_backend(k8s_view) == "api-gateway-blue"
    assert change_record(chat, change_id_of(message))["state"] == "awaiting_approval"
    refused = [e for e in chat.audit() if e.action == "click:approve"]
    assert [e.outcome for e in refused] == ["refused"] * 4
    assert all(len(e.detail) < 200 for e in refused)  # the 1,900 characters are not echoed
    assert sorted(redis_server.client().keys("*")) == keys_before


def test_rollback_when_both_colors_run_the_same_version_is_refused(chat, k8s_view, redis_server):
    k8s_view.apps.patch_namespaced_deployment(
        "api-gateway-green",
        "payflow",
        {
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "api-gateway", "image": "payflow/api-gateway:v1.0.0"}]}
                }
            }
        },
        _request_timeout=5,
    )
    k8s_view.wait_settled()
    before = k8s_view.fingerprint()
    answer = chat.run("rollback api-gateway")
    assert "Both colors of api-gateway run `v1.0.0`: a rollback would change nothing" in answer.all_text()
    assert k8s_view.fingerprint() == before
    assert not [k for k in redis_server.client().keys("*") if "change" in k]
    assert chat.messages(APPROVALS) == []
