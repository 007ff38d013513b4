"""Digests: on demand, on schedule exactly once with two bots racing on one real Redis, a missed
slot posted late once, and a digest still posted (saying what is unavailable) with Prometheus down."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.config.catalog import Catalog
from bot.config.metrics import DigestSchedule
from bot.config.settings import Settings
from bot.gateways.store import open_store
from bot.shell.runtime import build_runtime
from handlers.digest import Scheduler, last_key, slot_key
from sandbox.local import wait_until
from sandbox.prometheus import PrometheusServer
from sandbox.slack_api import SlackApiStub
from tests.support.bot_server import BotServer
from tests.support.prom import history_prometheus, start_history, with_prometheus, without_digests  # noqa: F401


def _hourly_slot_ten_minutes_ago(name: str, kind: str) -> tuple[DigestSchedule, datetime]:
    """An hourly schedule whose latest slot is surely not "on time" any more for a running bot."""
    slot = (datetime.now(UTC) - timedelta(minutes=10)).replace(second=0, microsecond=0)
    cron = f"{slot.minute} * * * *"
    return DigestSchedule(name=name, kind=kind, cron=cron, channel="#payflow-ops"), slot


def _texts(slack: SlackApiStub, channel: str = "#payflow-ops") -> list[str]:
    return [
        c.params["text"] for c in slack.calls_to("chat.postMessage") if c.params.get("channel") == channel
    ]


def _blocks(call) -> str:
    return "\n".join(
        b["text"]["text"] if "text" in b else " ".join(e.get("text", "") for e in b.get("elements", []))
        for b in call.params.get("blocks", [])
    )


@pytest.fixture
def catalog(catalog: Catalog) -> Catalog:
    return without_digests(catalog)


@pytest.fixture
def settings(settings: Settings, history_prometheus: PrometheusServer) -> Settings:  # noqa: F811
    return with_prometheus(settings, history_prometheus.url)


def test_digest_now_posts_the_checklist_worst_first(chat, slack):
    answer = chat.run("digest now", user="dave")
    [post] = answer.posts
    assert post["text"].startswith("PayFlow digest · production: Needs attention — 2 of 4 service(s)")
    [call] = slack.calls_to("chat.postMessage")
    body = _blocks(call)
    lines = body.split("\n")
    assert lines[1].startswith(
        "🔴 *Needs attention* — 2 of 4 service(s): wallet-service, transaction-service"
    )
    assert lines[2].startswith(
        "🔴 *wallet-service* 🔵 blue `v1.0.0` · 3/3 ready · requests 48.0/s · error rate 60.0 % 🔴"
    )
    assert "❔ *transaction-service*" in lines[3] and "error rate no data ❔" in lines[3]
    assert "✅ *api-gateway* 🔵 blue `v1.0.0` · 3/3 ready" in body and "CPU 24 %" in body
    assert (
        "*Dependencies* ✅ postgres check: up (1) · ✅ redis check: up (1) · ✅ rabbitmq check: up (1)"
        in body
    )
    assert "*Alerts* ✅ 0 firing" in body


def test_an_on_time_slot_is_posted_exactly_once_by_two_racing_bots(settings, catalog, k8s_view, slack):
    """Four schedulers race for one on-time slot on one real Redis: the two replicas' own
    background schedulers and two more ticking at the same instant. All run on the real clock, so
    none can take another's fresh claim for an abandoned one; exactly one digest is posted."""
    now = datetime.now(UTC)
    slot = now.replace(second=0, microsecond=0)
    schedule = DigestSchedule(
        name="hourly-errors", kind="errors", cron=f"{slot.minute} * * * *", channel="#payflow-ops"
    )
    catalog = catalog.model_copy(update={"digests": [schedule]})
    bots = [BotServer(build_runtime(settings, catalog)).start() for _ in range(2)]
    try:
        schedulers = [Scheduler(b.runtime.dispatcher.deps, clock=lambda: now) for b in bots]
        with ThreadPoolExecutor(2) as pool:
            results = list(
                pool.map(lambda pair: pair[0].call(pair[1].tick()), zip(bots, schedulers, strict=True))
            )
        key = slot_key("hourly-errors", slot)
        wait_until(lambda: _texts(slack), 15, "the digest's post", poll=0.05)
        for bot in bots:
            bot.idle()
        record = bots[0].call(bots[0].runtime.store.get(key))
        # later ticks of either replica post nothing more
        again = [b.call(s.tick()) for b, s in zip(bots, schedulers, strict=True)]
    finally:
        for bot in bots:
            bot.stop()
    assert sorted(results, key=len) in ([[], []], [[], [key]])  # a background scheduler may have won
    [text] = _texts(slack)
    assert text.startswith("PayFlow error rates · production: Needs attention (over the SLO: wallet-service)")
    assert record["state"] == "posted" and record["late"] is False
    assert again == [[], []]
    assert len(_texts(slack)) == 1


def test_a_slot_missed_while_down_is_posted_late_once(settings, catalog, k8s_view, slack):
    schedule, latest = _hourly_slot_ten_minutes_ago("hourly-errors", "errors")

    async def last_posted_three_hours_earlier() -> None:
        store = open_store(settings.redis_url)
        await store.put(last_key("hourly-errors"), {"slot": (latest - timedelta(hours=3)).isoformat()})
        await store.close()

    asyncio.run(last_posted_three_hours_earlier())
    catalog = catalog.model_copy(update={"digests": [schedule]})
    servers = [BotServer(build_runtime(settings, catalog)).start() for _ in range(2)]  # both schedulers run
    try:
        wait_until(lambda: _texts(slack), 15, "the late digest's post", poll=0.05)
        for server in servers:
            server.idle()
        record = servers[0].call(servers[0].runtime.store.get(slot_key("hourly-errors", latest)))
    finally:
        for server in servers:
            server.stop()
    [text] = _texts(slack)
    stamp = latest.strftime("%Y-%m-%d %H:%M UTC")
    assert f"(posted late: the {stamp} slot was missed while the bot was down; 2 earlier slot(s)" in text
    assert record["state"] == "posted" and record["late"] is True


def test_with_prometheus_down_the_digest_is_still_posted_saying_what_is_unavailable(
    settings, catalog, k8s_view, slack
):
    down = start_history()
    url = down.url
    down.close()  # Prometheus stops
    schedule, slot = _hourly_slot_ten_minutes_ago("hourly-health", "health")
    catalog = catalog.model_copy(update={"digests": [schedule]})
    server = BotServer(build_runtime(replace(settings, prometheus_url=url), catalog)).start()
    try:
        posted = server.call(Scheduler(server.runtime.dispatcher.deps, clock=lambda: slot).tick())
    finally:
        server.stop()
    assert posted == [slot_key("hourly-health", slot)]
    [call] = [c for c in slack.calls_to("chat.postMessage") if c.params["channel"] == "#payflow-ops"]
    assert call.params["text"].startswith("PayFlow daily checklist · production: Not known to be healthy")
    body = _blocks(call)
    assert "❔ unavailable — traffic figures: Prometheus unreachable (ConnectionError)" in body
    assert "❔ unavailable — CPU/memory: Prometheus unreachable (ConnectionError)" in body
    assert "❔ unavailable — firing alerts: Prometheus unreachable (ConnectionError)" in body
    assert "❔ postgres check: Prometheus unreachable (ConnectionError)" in body
    assert "✅" not in body.split("\n")[1]  # the verdict at the top is not "all good"
    assert "🔵 blue `v1.0.0` · 3/3 ready" in body  # what Kubernetes says is still there
