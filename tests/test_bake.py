"""The bake watch on a real Prometheus scraping the sandbox's traffic: a clean bake scales the old
color down; a bad version (5xx) fails two checks in a row and the bot requests a rollback that
any approver may approve from the thread."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from bot.shell.runtime import build_runtime
from sandbox import demo
from sandbox.prometheus import PrometheusServer
from tests.support.bot_server import BotServer
from tests.support.chat import Chat
from tests.support.prom import without_digests
from tests.test_deploy import APPROVALS, approval_message, ingress_backend, tuned, wait_progress

BAD_IMAGE = "payflow/api-gateway:v0.9.0-bad"


@pytest.fixture
def prometheus(sandbox):
    server = PrometheusServer([sandbox.url], scrape_interval="1s", ca_file=sandbox.ca_file).start()
    server.wait_for('http_requests_total{service="api-gateway"}')
    yield server
    server.stop()


@pytest.fixture
def baking_bot(settings, catalog, prometheus, k8s_view):
    short = without_digests(tuned(catalog, bake_seconds=6, bake_interval_seconds=1, bake_window="5s"))
    server = BotServer(build_runtime(replace(settings, prometheus_url=prometheus.url), short)).start()
    yield server
    server.stop()


@pytest.fixture
def bake_chat(baking_bot, chat) -> Chat:
    chat.bot = baking_bot
    return chat


def test_clean_bake_scales_the_old_color_down(bake_chat, k8s_view):
    bake_chat.run("deploy api-gateway v1.2.3")
    bake_chat.click(approval_message(bake_chat), "Approve", user="bob")
    assert ingress_backend(k8s_view) == "api-gateway-green"
    wait_progress(bake_chat, "— done", timeout=30)
    done = str(bake_chat.messages(demo.OPS_CHANNEL_ID)[0].blocks)
    assert "✅ Bake passed" in done and "api-gateway-blue scaled to 0" in done
    assert "✓ error rate" in done and "SLO 0.10 %" in done
    assert k8s_view.replicas("api-gateway-blue") == 0


def test_failing_bake_proposes_a_rollback_any_approver_may_approve(bake_chat, k8s_view):
    bake_chat.run("deploy api-gateway v1.2.3-bad")
    bake_chat.click(approval_message(bake_chat), "Approve", user="bob")
    assert ingress_backend(k8s_view) == "api-gateway-green"
    wait_progress(bake_chat, "bake failed, rollback proposed", timeout=30)
    failed = str(bake_chat.messages(demo.OPS_CHANNEL_ID)[0].blocks)
    assert "✗ error rate" in failed
    assert k8s_view.replicas("api-gateway-blue") == 3  # not scaled down: the rollback needs it

    def thread_button(stub):
        for m in stub.messages(demo.OPS_CHANNEL_ID):
            if m.thread_ts and "the bot proposes a rollback" in m.text:
                return m
        return None

    warning = bake_chat.slack.wait_for(thread_button, timeout=30)
    rollback = [m for m in bake_chat.messages(APPROVALS) if "Rollback of *api-gateway* to blue" in m.text]
    assert rollback and "the bot" in str(rollback[0].blocks)  # requested by the bot itself
    bake_chat.click(warning, "Roll back", user="bob")  # bob approved the deploy too: allowed, the bot asked
    assert ingress_backend(k8s_view) == "api-gateway-blue"
    actions = [(e.actor, e.action) for e in bake_chat.audit()]
    assert ("payflow-bot", "change.rollback_proposed") in actions
    assert ("payflow-bot", "change.request") in actions


@pytest.fixture
def blind_chat(settings, catalog, chat, bot, k8s_view):
    """A bot with no Prometheus at all (like `make run` without a prometheus binary)."""
    bot.stop()
    short = without_digests(tuned(catalog, bake_seconds=2, bake_interval_seconds=0.5, lease_seconds=1))
    server = BotServer(build_runtime(settings, short)).start()
    chat.bot = server
    yield chat
    server.stop()


def questions(chat: Chat) -> list:
    return [m for m in chat.messages(APPROVALS) if "bake inconclusive" in m.text]


def test_without_metrics_the_bake_is_inconclusive_and_asks_a_person_once(blind_chat, k8s_view):
    answer = blind_chat.run("deploy api-gateway v1.2.3")
    assert "Prometheus is not configured" in answer.all_text() and "inconclusive" in answer.all_text()
    message = approval_message(blind_chat)
    blind_chat.click(message, "Approve", user="bob")
    assert ingress_backend(k8s_view) == "api-gateway-green"
    asked = blind_chat.slack.wait_for(lambda _: questions(blind_chat), timeout=20)
    time.sleep(1.5)  # sweeps keep running: still one question, no rollback of their own
    assert len(questions(blind_chat)) == 1
    text = str(asked[0].blocks)
    assert "Metrics were unavailable for 4 of 4 checks" in text
    assert [b["text"]["text"] for b in _buttons(asked[0])] == ["Keep v1.2.3", "Roll back"]
    assert not [m for m in blind_chat.messages(APPROVALS) if "Rollback of" in m.text]
    assert k8s_view.replicas("api-gateway-blue") == 3  # nothing cleaned up before a person decides
    listing = blind_chat.run("changes api-gateway").all_text()
    assert "needs decision" in listing
    busy = blind_chat.run("deploy api-gateway v1.2.4").all_text()
    assert "waits for a person to keep it or roll it back" in busy
    assert ("payflow-bot", "change.needs_decision", "inconclusive") in [
        (e.actor, e.action, e.outcome) for e in blind_chat.audit()
    ]

    blind_chat.click(asked[0], "Keep v1.2.3", user="alice")  # an operator may not keep it
    assert "needs the *approver* role" in blind_chat.slack.responses[-1].params["text"]
    blind_chat.click(asked[0], "Keep v1.2.3", user="bob")
    wait_progress(blind_chat, "— done")
    assert k8s_view.replicas("api-gateway-blue") == 0
    assert ingress_backend(k8s_view) == "api-gateway-green"
    decided = next(m for m in blind_chat.messages(APPROVALS) if m.ts == asked[0].ts)
    assert "kept by <@U0BOB>" in decided.text and not _buttons(decided)


def test_roll_back_after_an_inconclusive_bake_is_approval_gated(blind_chat, k8s_view):
    blind_chat.run("deploy api-gateway v1.2.3")
    blind_chat.click(approval_message(blind_chat), "Approve", user="bob")
    asked = blind_chat.slack.wait_for(lambda _: questions(blind_chat), timeout=20)
    blind_chat.click(asked[0], "Roll back", user="carol")
    assert "Rollback" in blind_chat.slack.responses[-1].params["text"]
    assert ingress_backend(k8s_view) == "api-gateway-green"  # nothing switched without an approval

    def rollback_request(stub):
        for m in stub.messages(APPROVALS):
            if "Approval needed: Rollback of *api-gateway* to blue" in m.text:
                return m
        return None

    request = blind_chat.slack.wait_for(rollback_request, timeout=20)
    assert "<@U0CAROL>" in str(request.blocks)  # a person asked: four-eyes applies to carol
    blind_chat.click(request, "Approve", user="carol")
    assert "four-eyes" in blind_chat.slack.responses[-1].params["text"]
    blind_chat.click(request, "Approve", user="bob")
    assert ingress_backend(k8s_view) == "api-gateway-blue"
    # the rollback's own bake has no data either: it asks, it never proposes switching back
    blind_chat.slack.wait_for(
        lambda _: [m for m in questions(blind_chat) if "Rollback of *api-gateway*" in m.text], timeout=20
    )
    time.sleep(1)
    assert len(approval_requests(blind_chat)) == 2  # the deploy's and the rollback's: no third


def test_a_rollback_whose_bake_breaches_never_proposes_a_rollback_of_itself(bake_chat, k8s_view):
    k8s_view.apps.patch_namespaced_deployment(
        "api-gateway-green",
        "payflow",
        {"spec": {"template": {"spec": {"containers": [{"name": "api-gateway", "image": BAD_IMAGE}]}}}},
        _request_timeout=5,
    )
    k8s_view.wait_settled()
    bake_chat.run("rollback api-gateway")
    bake_chat.click(approval_message(bake_chat), "Approve", user="bob")
    assert ingress_backend(k8s_view) == "api-gateway-green"

    def asked(stub):
        return [m for m in stub.messages(APPROVALS) if "SLOs breached after a rollback" in m.text]

    question = bake_chat.slack.wait_for(asked, timeout=30)[0]
    assert "never rolls back a rollback" in str(question.blocks) and "✗ error rate" in str(question.blocks)
    time.sleep(1)
    assert len(approval_requests(bake_chat)) == 1
    assert ingress_backend(k8s_view) == "api-gateway-green"


def test_an_approver_may_cancel_the_bots_own_rollback_an_operator_may_not(bake_chat, k8s_view):
    bake_chat.run("deploy api-gateway v1.2.3-bad")
    bake_chat.click(approval_message(bake_chat), "Approve", user="bob")

    def proposed(stub):
        for m in stub.messages(APPROVALS):
            if "Approval needed: Rollback of *api-gateway*" in m.text:
                return m
        return None

    rollback = bake_chat.slack.wait_for(proposed, timeout=30)
    change_id = rollback.text.split(" ")[2].rstrip(":")
    refused = bake_chat.run(f"cancel {change_id}", user="alice")
    assert "proposed by the bot: only an approver may cancel it" in refused.all_text()
    done = bake_chat.run(f"cancel {change_id}", user="bob")
    assert f"Cancelled {change_id}" in done.all_text()
    assert "cancelled by <@U0BOB>" in str(bake_chat.messages(APPROVALS)[-1].blocks)
    bake_chat.click(rollback, "Approve", user="carol")
    assert ingress_backend(k8s_view) == "api-gateway-green"


def approval_requests(chat: Chat) -> list[str]:
    """Every approval request the bot ever posted (decided ones included)."""
    posts = chat.slack.calls_to("chat.postMessage")
    return [c.params["text"] for c in posts if "Approval needed" in c.params.get("text", "")]


def _buttons(message) -> list:
    return [e for b in message.blocks or [] if b.get("type") == "actions" for e in b["elements"]]


def test_a_question_slack_refused_is_posted_once_by_a_later_sweep(blind_chat, k8s_view):
    blind_chat.run("deploy api-gateway v1.2.3")
    blind_chat.click(approval_message(blind_chat), "Approve", user="bob")
    blind_chat.slack.fail_next("chat.postMessage", error="fatal_error")  # final: no retry, the sweep reposts
    asked = blind_chat.slack.wait_for(lambda _: questions(blind_chat), timeout=20)
    time.sleep(1.5)
    assert len(questions(blind_chat)) == 1
    posted = blind_chat.slack.calls_to("chat.postMessage")
    assert len([c for c in posted if "bake inconclusive" in c.params.get("text", "")]) == 2
    blind_chat.click(asked[0], "Keep v1.2.3", user="bob")
    wait_progress(blind_chat, "— done")
    assert k8s_view.replicas("api-gateway-blue") == 0


def test_keep_is_refused_while_the_service_is_locked(blind_chat, k8s_view):
    """A lock freezes a service (no approval, no scaling): Keep would scale the old color to 0,
    the capacity a rollback needs during the incident the lock is for."""
    blind_chat.run("deploy api-gateway v1.2.3")
    blind_chat.click(approval_message(blind_chat), "Approve", user="bob")
    asked = blind_chat.slack.wait_for(lambda _: questions(blind_chat), timeout=20)
    blind_chat.run("lock api-gateway INC-8 error spike", user="alice")
    blind_chat.click(asked[0], "Keep v1.2.3", user="bob")
    assert "api-gateway is locked by <@U0ALICE>" in blind_chat.slack.responses[-1].params["text"]
    time.sleep(1.5)  # sweeps run: nothing cleans up behind the refusal
    assert k8s_view.replicas("api-gateway-blue") == 3
    assert ingress_backend(k8s_view) == "api-gateway-green"
    assert "needs decision" in blind_chat.run("changes api-gateway").all_text()
