"""Nothing Slack was promised is lost: deliveries survive 5xx, 429 bursts and timeouts within
one explicit deadline, updates of one message stay in order, a job run again never posts twice,
and a delivery that finally fails says so in one log line and in /metrics.

All through the served bot (signed requests over HTTP) against the Slack stand-in answering
like Slack (HTTP 500 `internal_error`, 429 with Retry-After)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import pytest

from bot.chat.blocks import Message
from bot.chat.dispatch import CommandJob, Invocation
from bot.shell.runtime import build_runtime
from handlers import Parsed
from handlers.status import Status
from sandbox import demo
from tests.support.bot_server import BotServer
from tests.support.chat import Chat
from tests.test_alerts import TOKEN, alert, payload, send

OPS = demo.OPS_CHANNEL_ID


def ok_calls(slack, method):
    return [c for c in slack.calls_to(method) if c.status == 200 and c.response.get("ok")]


def test_a_500_from_post_message_is_retried_and_the_answer_lands_once(chat, slack, k8s_view, bot):
    slack.fail_next("chat.postMessage", status=500, times=2)
    answer = chat.run("scale api-gateway 4")
    assert [c.status for c in answer_calls(slack)] == [500, 500, 200]
    [message] = slack.messages(OPS)
    assert message.text == "<@U0ALICE> scaled api-gateway (blue) 3 → 4"
    assert k8s_view.replicas("api-gateway-blue") == 4
    assert answer.ack.status_code == 200
    assert 'payflow_slack_retries_total{method="chat.postMessage"} 2.0' in bot.get("/metrics").text


def answer_calls(slack):
    return slack.calls_to("chat.postMessage")


def test_more_than_two_seconds_of_429_is_waited_out(chat, slack, k8s_view):
    slack.fail_next("chat.postMessage", status=429, retry_after=1, times=3)  # ≥ 3 s of "slow down"
    chat.run("scale api-gateway 5")
    calls = answer_calls(slack)
    assert [c.status for c in calls] == [429, 429, 429, 200]
    assert calls[-1].at - calls[0].at >= 2.9  # Retry-After honoured, not hammered
    assert [m.text for m in slack.messages(OPS)] == ["<@U0ALICE> scaled api-gateway (blue) 3 → 5"]


def test_an_answer_through_response_url_survives_500s(chat, slack):
    seen: list[int] = []
    slack.subscribe(lambda call: seen.append(call.status) if call.method == "response_url" else None)
    slack.fail_next("response_url", status=500, times=2)
    answer = chat.run("help scale")
    assert seen == [500, 500, 200]
    assert len(answer.replies) == 1  # the stand-in records only what it accepted
    assert "e.g. `/payflow scale api-gateway 5`" in answer.all_text()


def test_an_alert_already_answered_200_still_reaches_slack_through_500s(
    settings, catalog, k8s_view, slack, redis_url
):
    server = BotServer(build_runtime(replace(settings, alertmanager_webhook_token=TOKEN), catalog)).start()
    try:
        slack.fail_next("chat.postMessage", status=500, times=3)
        response = send(server, payload("firing", [alert("firing")]))
        assert response.status_code == 200
        server.idle()
    finally:
        server.stop()
    [message] = [m for m in slack.messages() if m.thread_ts is None]
    assert "HighErrorRate" in message.text
    assert [c.status for c in answer_calls(slack)] == [500, 500, 500, 200]


def test_a_delivery_that_keeps_failing_is_given_up_at_its_deadline_in_one_line(
    settings, catalog, k8s_view, slack, caplog
):
    server = BotServer(build_runtime(replace(settings, slack_delivery_seconds=1.5), catalog)).start()
    chat = Chat(server, slack, chat_requests(slack))
    try:
        slack.fail_next("chat.postMessage", status=500, times=1000)
        with caplog.at_level(logging.INFO):
            chat.run("scale api-gateway 2")
        metrics = server.get("/metrics").text
    finally:
        server.stop()
    assert slack.messages(OPS) == []
    attempts = answer_calls(slack)
    assert 2 <= len(attempts) <= 8 and attempts[-1].at - attempts[0].at < 1.5  # bounded, not hammered
    [given_up] = [r for r in caplog.records if "given up" in r.getMessage()]
    assert given_up.levelno == logging.ERROR and given_up.exc_info is None
    assert "\n" not in given_up.getMessage() and "chat.postMessage" in given_up.getMessage()
    assert not [r for r in caplog.records if r.exc_info and "given up" not in r.getMessage()]
    assert 'payflow_slack_delivery_failures_total{method="chat.postMessage"} 1.0' in metrics


def chat_requests(slack):
    from sandbox.slack_requests import SlackRequests
    from tests.conftest import SIGNING_SECRET

    return SlackRequests(SIGNING_SECRET, response_url=slack.response_url("cmd"))


def test_updates_of_one_message_never_overtake_each_other(bot, slack):
    gateway = bot.runtime.slack
    ref = bot.call(gateway.post(OPS, Message("v0")))
    slack.fail_next("chat.update", status=429, retry_after=1)  # the first update is held back 1 s

    async def two_updates() -> None:
        first = asyncio.create_task(gateway.update(ref, Message("v1")))
        await asyncio.sleep(0)  # v1 is asked for first
        await asyncio.gather(first, gateway.update(ref, Message("v2")))

    bot.call(two_updates())
    sent = [c.params["text"] for c in ok_calls(slack, "chat.update")]
    assert sent == ["v1", "v2"]
    [message] = slack.messages(OPS)
    assert message.text == "v2"


def test_a_job_run_again_does_not_post_again(bot, slack, k8s_view):
    """What a rerun after a killed worker does: the outbox returns the first run's ts."""
    job = CommandJob(
        Invocation("U0ALICE", OPS, demo.OPS_CHANNEL_NAME, "status", slack.response_url("x")),
        Parsed("status", Status()),
    )
    jobs = bot.runtime.jobs
    assert bot.call(jobs.run(job, "1700000000000-0")) == "done"
    assert bot.call(jobs.run(job, "1700000000000-0")) == "done"
    assert len(ok_calls(slack, "chat.postMessage")) == 1
    assert bot.call(jobs.run(job, "1700000000001-0")) == "done"  # another job: its own answer
    assert len(ok_calls(slack, "chat.postMessage")) == 2
    assert len(slack.messages(OPS)) == 2


def test_web_api_calls_share_one_kept_alive_connection(bot, slack):
    """slack_sdk opens a session (a new TLS handshake with slack.com) per call unless given one:
    the gateway keeps one per event loop, so posts, updates and uploads reuse a connection."""
    gateway = bot.runtime.slack

    async def calls() -> None:
        ref = await gateway.post(OPS, Message("one"))
        await gateway.update(ref, Message("two"))
        await gateway.upload(OPS, "table.tsv", "a\tb\n", thread_ts=ref.ts)
        await gateway.post(OPS, Message("three"), thread_ts=ref.ts)

    bot.call(calls())  # the first call may open the session's first connection
    before = slack.connections
    bot.call(calls())
    assert len(ok_calls(slack, "chat.postMessage")) == 4
    assert slack.connections == before, "no new connection for 2 posts, an update and an upload"


@pytest.mark.parametrize("status", [400, 404])
def test_a_refusal_is_final_at_once(bot, slack, status):
    """Not Slack's fault: retrying would only repeat it."""
    slack.fail_next("chat.postMessage", status=status)
    with pytest.raises(Exception, match=r"Slack chat\.postMessage failed"):
        bot.call(bot.runtime.slack.post(OPS, Message("x")))
    assert len(answer_calls(slack)) == 1


def test_a_slack_that_accepts_and_never_answers_costs_one_deadline(bot, slack):
    from bot.gateways.slack import DeliveryFailed, DeliveryPolicy, SlackGateway, make_client
    from tests.conftest import BOT_TOKEN

    gateway = SlackGateway(make_client(BOT_TOKEN, slack.api_url), policy=DeliveryPolicy(total_seconds=1.5))
    slack.set_latency(3)

    async def timed() -> float:
        started = asyncio.get_running_loop().time()
        with pytest.raises(DeliveryFailed, match="timed out"):
            await gateway.post(OPS, Message("x"))
        return asyncio.get_running_loop().time() - started

    assert 1.4 <= bot.call(timed()) < 2.0
