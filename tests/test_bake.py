"""The bake watch on a real Prometheus scraping the sandbox's traffic: a clean bake scales the old
color down; a bad version (5xx) fails two checks in a row and the bot requests a rollback that
any approver may approve from the thread."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.runtime import build_runtime
from sandbox import demo
from sandbox.prometheus import PrometheusServer
from tests.support.bot_server import BotServer
from tests.support.chat import Chat
from tests.support.prom import without_digests
from tests.test_deploy import APPROVALS, approval_message, ingress_backend, tuned, wait_progress


@pytest.fixture
def prometheus(sandbox):
    server = PrometheusServer([sandbox.url], scrape_interval="1s").start()
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
