"""The gate's ownership rules under the real races, with shortened leases and bake intervals:
several bot replicas on one real Redis, the sandbox cluster over HTTP, a real Prometheus counting
the bake's queries. Each race ends with the record and the cluster agreeing, one switch, and
every bake check kept exactly once."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest

from bot.domain.gate.engine import Gate
from bot.domain.gate.phases import planned_checks
from bot.domain.gate.record import PREPARING, Change, Lease
from bot.domain.gate.records import LeaseLost, Records, holding
from bot.gateways.store import RedisStore
from bot.shell.runtime import build_runtime
from sandbox.apiserver.kinds import ApiError
from sandbox.apiserver.wire import Response
from tests.support.bot_server import BotServer
from tests.support.gate import win_approval_and_die
from tests.support.prom import without_digests
from tests.test_bake import prometheus  # noqa: F401  (fixture)
from tests.test_deploy import (
    APPROVALS,
    approval_message,
    change_id_of,
    change_record,
    image,
    ingress_backend,
    ingress_writes,
    set_backend,
    tuned,
    wait_progress,
)

LEASE = 1.0
BAKE, INTERVAL = 4, 0.5
PLANNED = planned_checks(BAKE, INTERVAL)


def fast(catalog, **env):
    timings = {
        "lease_seconds": LEASE,
        "bake_seconds": BAKE,
        "bake_interval_seconds": INTERVAL,
        "bake_window": "5s",
        **env,
    }
    return without_digests(tuned(catalog, **timings))


@pytest.fixture
def replicas(settings, catalog, k8s_view, bot) -> Iterator[list[BotServer]]:
    """Start replicas of the bot on demand, all on the same Redis and cluster."""
    bot.stop()  # the default bot has the default (long) lease
    started: list[BotServer] = []

    def start(prometheus_url: str | None = None, **env) -> BotServer:
        runtime = build_runtime(replace(settings, prometheus_url=prometheus_url), fast(catalog, **env))
        server = BotServer(runtime).start()
        started.append(server)
        return server

    yield start  # type: ignore[misc]
    for server in started:
        if server._thread.is_alive():
            server.stop()


def gate_of(server: BotServer) -> Gate:
    return Gate(server.runtime.dispatcher.deps)


def queries(prometheus_url: str) -> int:
    """Instant queries Prometheus has answered: one per bake check."""
    text = httpx.get(prometheus_url + "/metrics", timeout=5).text
    return sum(
        int(float(m.group(1)))
        for m in re.finditer(
            r'prometheus_http_requests_total\{[^}]*handler="/api/v1/query"[^}]*\} (\S+)', text
        )
    )


def finished(chat, change_id: str, timeout: float = 40) -> dict:
    def done(_):
        record = change_record(chat, change_id)
        return record if record and record["state"] in {"done", "voided", "needs_decision"} else None

    return chat.slack.wait_for(done, timeout=timeout)


def assert_checks_kept_once(record: dict) -> None:
    texts = [c["text"] for c in record["checks"]]
    assert len(texts) == PLANNED, texts
    times = [t.split(" ")[0] for t in texts]
    assert times == sorted(times), texts  # in schedule order, none written twice


def test_approve_while_sweeps_run_switches_once_and_bakes(chat, replicas, k8s_view, cluster):
    """Every replica's sweep runs all through the click: none may touch a change whose apply
    lease the click holds (the old code voided it while the ingress was on the new color)."""
    a, b = replicas(bake_seconds=0), replicas(bake_seconds=0)
    chat.bot = a
    chat.run("deploy api-gateway v1.2.3")
    message = approval_message(chat)
    change_id = change_id_of(message)
    stop = False
    swept = {"a": 0, "b": 0}

    async def sweeping(server: BotServer, name: str) -> None:
        gate = gate_of(server)
        while not stop:
            await gate.sweep()
            swept[name] += 1
            await asyncio.sleep(0)

    running = [asyncio.run_coroutine_threadsafe(sweeping(s, n), s._loop) for s, n in ((a, "a"), (b, "b"))]
    chat.click(message, "Approve", user="bob")
    record = finished(chat, change_id)
    stop = True
    for r in running:
        r.result(timeout=5)
    assert swept["a"] > 5 and swept["b"] > 5  # the sweeps really ran during the click
    assert record["state"] == "done", record.get("error")
    assert ingress_backend(k8s_view) == "api-gateway-green" and ingress_writes(cluster) == 1
    actions = [e.action for e in chat.audit(limit=100)]
    assert actions.count("change.switch") == 1 and "change.voided" not in actions
    assert actions.count("change.done") == 1


def test_a_bake_worker_stalled_past_its_lease_is_replaced_and_writes_nothing(
    chat,
    replicas,
    k8s_view,
    prometheus,  # noqa: F811
):
    a, _b = replicas(prometheus.url), replicas(prometheus.url)
    chat.bot = a
    chat.run("deploy api-gateway v1.2.3")
    message = approval_message(chat)
    change_id = change_id_of(message)
    before = queries(prometheus.url)
    chat.click(message, "Approve", user="bob")  # the bake runs on replica a
    chat.slack.wait_for(lambda _: len(change_record(chat, change_id)["checks"]) >= 2, timeout=20)

    async def stall() -> None:
        time.sleep(LEASE * 2.5)  # the whole worker freezes (GC pause, CPU starvation, SIGSTOP)

    a.call(stall())
    record = finished(chat, change_id)
    assert record["state"] == "done", record["checks"]
    assert_checks_kept_once(record)
    made = queries(prometheus.url) - before
    assert PLANNED <= made <= PLANNED + 1, made  # at most the one check a had in flight
    assert ingress_backend(k8s_view) == "api-gateway-green"
    assert k8s_view.replicas("api-gateway-blue") == 0
    assert [e.action for e in chat.audit(limit=100)].count("change.done") == 1


def test_a_worker_killed_mid_bake_is_resumed_by_exactly_one_of_two_replicas(
    chat,
    replicas,
    k8s_view,
    prometheus,  # noqa: F811
):
    a = replicas(prometheus.url)
    chat.bot = a
    chat.run("deploy api-gateway v1.2.3")
    message = approval_message(chat)
    change_id = change_id_of(message)
    before = queries(prometheus.url)
    chat.click(message, "Approve", user="bob")
    chat.slack.wait_for(lambda _: len(change_record(chat, change_id)["checks"]) >= 1, timeout=20)
    a.stop()  # the worker goes away mid-bake
    b, c = replicas(prometheus.url), replicas(prometheus.url)
    chat.bot = b
    record = finished(chat, change_id)
    assert record["state"] == "done", record["checks"]
    assert_checks_kept_once(record)
    made = queries(prometheus.url) - before
    assert PLANNED <= made <= PLANNED + 1, made  # two sweeping replicas never bake twice
    assert ingress_backend(k8s_view) == "api-gateway-green"
    assert k8s_view.replicas("api-gateway-blue") == 0
    assert image(k8s_view, "api-gateway-green") == "payflow/api-gateway:v1.2.3"
    del c


def test_a_holder_that_lost_its_lease_cannot_write(redis_server, redis_url):
    """The fencing token at the store: a stale holder's write fails, whatever it holds in memory."""

    async def scenario() -> None:
        store = RedisStore(redis_url)
        records = Records(store, lock_ttl=60, lease_seconds=0.3)
        change = Change(
            "chg-0000abcd", "deploy", "api-gateway", "blue", "green", "i:1", "i:2", 3, "U0ALICE", "", "C1"
        )
        assert await records.open(change)
        first = await records.take(change.id, "prepare", "worker-1")
        assert first is not None and await records.take(change.id, "prepare", "worker-2") is None
        await asyncio.sleep(0.35)  # worker-1 stalls past its lease
        second = await records.take(change.id, "prepare", "worker-2")
        assert second is not None
        await second.write(step="rolling out")
        with pytest.raises(LeaseLost):
            await first.write(step="stale")
        current = await records.get(change.id)
        assert current is not None and current.step == "rolling out" and current.lease.owner == "worker-2"
        # a failed renewal stops the holder's task at once
        stopped = asyncio.Event()

        async def phase() -> None:
            async with holding(second):
                await records.write(await records.get(change.id), lease=Lease("prepare", "thief", 1e12))
                await asyncio.sleep(5)  # cancelled by the failed renewal well before this ends
            stopped.set()

        await asyncio.wait_for(phase(), 2)
        assert stopped.is_set() and second.lost
        assert (await records.get(change.id)).state == PREPARING
        await store.close()

    asyncio.run(scenario())


def test_fifty_racing_clicks_across_two_replicas_switch_once(chat, replicas, k8s_view, cluster):
    import threading

    a, b = replicas(bake_seconds=0), replicas(bake_seconds=0)
    chat.bot = a
    chat.run("deploy api-gateway v1.2.3")
    message = approval_message(chat)
    barrier = threading.Barrier(50)

    def click(i: int) -> None:
        barrier.wait()
        (a if i % 2 else b).post(
            chat.requests.button(
                user_id="U0BOB",
                user_name="bob",
                channel_id=message.channel,
                channel_name="payflow-approvals",
                message={"ts": message.ts, "text": message.text, "blocks": message.blocks},
                action=next(
                    e
                    for blk in message.blocks
                    if blk.get("type") == "actions"
                    for e in blk["elements"]
                    if e["text"]["text"] == "Approve"
                ),
                block_id=f"change:{change_id_of(message)}",
            )
        )

    threads = [threading.Thread(target=click, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a.idle(30)
    b.idle(30)
    assert ingress_writes(cluster) == 1 and ingress_backend(k8s_view) == "api-gateway-green"
    clicks = [e for e in chat.audit(limit=200) if e.action == "click:approve"]
    assert [e.outcome for e in clicks].count("ok") == 1
    lost = [e for e in clicks if e.outcome == "lost"]
    assert len(lost) == 49 and all("lost: already approved by U0BOB" in e.detail for e in lost)
    assert [e.action for e in chat.audit(limit=200)].count("change.approve") == 1
    assert len(chat.messages(APPROVALS)) == 1
    wait_progress(chat, "— done")


def _die_mid_switch(server: BotServer, change_id: str) -> None:
    """What a click's worker leaves behind when it dies right after winning the approval: the
    record in `applying`, holding an apply lease nobody renews."""

    server.call(win_approval_and_die(gate_of(server).records, change_id, lease_seconds=LEASE))


@pytest.mark.parametrize("switched", [False, True])
def test_a_worker_killed_mid_switch_is_settled_from_the_cluster(chat, replicas, k8s_view, cluster, switched):
    a = replicas(bake_seconds=0)
    chat.bot = a
    chat.run("deploy api-gateway v1.2.3")
    change_id = change_id_of(approval_message(chat))
    _die_mid_switch(a, change_id)
    if switched:  # it died after its patch landed
        set_backend(k8s_view, "/", "api-gateway-green")
    replicas(bake_seconds=0)  # another replica's sweep takes over once the lease expires
    record = finished(chat, change_id)
    if switched:
        assert record["state"] == "done"
        assert k8s_view.replicas("api-gateway-blue") == 0
    else:
        assert record["state"] == "voided" and "traffic was not switched" in record["error"]
        assert ingress_backend(k8s_view) == "api-gateway-blue"
    assert ingress_writes(cluster) == int(switched)  # a settle never switches by itself


def test_an_approval_request_slack_refused_is_posted_once_by_a_later_sweep(chat, replicas, k8s_view):
    a = replicas(bake_seconds=0)
    chat.bot = a
    chat.run("deploy api-gateway v1.2.3")
    chat.slack.fail_next("chat.postMessage", error="fatal_error")  # final: no retry, the sweep reposts
    message = approval_message(chat, timeout=20)
    time.sleep(LEASE * 1.5)  # more sweeps: still one request
    posted = [
        c for c in chat.slack.calls_to("chat.postMessage") if "Approval needed" in c.params.get("text", "")
    ]
    assert len(posted) == 2  # the refused one and the one that went through
    assert len(chat.messages(APPROVALS)) == 1
    chat.click(message, "Approve", user="bob")
    assert ingress_backend(k8s_view) == "api-gateway-green"


def test_a_switch_whose_answer_never_came_is_settled_from_the_cluster_not_voided(
    chat, replicas, k8s_view, cluster, sandbox
):
    """The API server applies the switch but its answer is lost (the client times out): the
    record must not say "voided, nothing was switched" while the ingress is on the new color."""
    a = replicas(bake_seconds=0)
    chat.bot = a
    chat.run("deploy api-gateway v1.2.3")
    message = approval_message(chat)
    change_id = change_id_of(message)
    app = sandbox._httpd.app
    handle = app.handle

    def applied_then_silent(method, path, headers, body):
        response = handle(method, path, headers, body)
        if method == "PATCH" and "/ingresses/payflow-ingress" in path:
            time.sleep(6)  # past the bot's Kubernetes deadline (5 s): the write landed, no answer
        return response

    app.handle = applied_then_silent
    try:
        chat.click(message, "Approve", user="bob")
    finally:
        app.handle = handle
    assert ingress_backend(k8s_view) == "api-gateway-green" and ingress_writes(cluster) == 1
    reply = chat.slack.responses[-1].params["text"]
    assert "Nothing was switched" not in reply and "may or may not have happened" in reply
    record = finished(chat, change_id)
    assert record["state"] == "done", record.get("error")
    assert k8s_view.replicas("api-gateway-blue") == 0
    actions = [e.action for e in chat.audit(limit=100)]
    assert "change.voided" not in actions and actions.count("change.switch") == 1


def test_a_hung_slack_at_the_click_does_not_void_the_approval(chat, replicas, k8s_view, cluster):
    """The approval request's link could not be read when it was posted; at the click Slack
    accepts and never answers. The click must still switch (within the shortest allowed lease):
    nothing Slack does may eat the time the switch was given."""
    a = replicas(bake_seconds=0, lease_seconds=15)
    chat.bot = a
    chat.slack.fail_next("chat.getPermalink", error="fatal_error")
    chat.run("deploy api-gateway v1.2.3")
    message = approval_message(chat)
    change_id = change_id_of(message)
    assert change_record(chat, change_id)["approval_link"] is None
    chat.slack.hold("chat.getPermalink")
    try:
        chat.click(message, "Approve", user="bob", wait=False)
        chat.slack.wait_for(
            lambda _: change_record(chat, change_id)["state"] not in {"awaiting_approval", "applying"},
            timeout=30,
        )
    finally:
        chat.slack.release("chat.getPermalink", drop=True)
    a.idle(30)
    record = change_record(chat, change_id)
    assert record["state"] in {"verifying", "cleaning_up", "done"}, record.get("error")
    assert ingress_backend(k8s_view) == "api-gateway-green" and ingress_writes(cluster) == 1


def test_a_route_edited_between_the_recheck_and_the_patch_voids_and_keeps_the_edit(
    chat, replicas, k8s_view, cluster, sandbox
):
    """The JSON patch's `test` is the last line: someone's `kubectl edit` of this route lands
    after the click's re-check and just before the switch reaches the API server."""
    a = replicas(bake_seconds=0)
    chat.bot = a
    chat.run("deploy api-gateway v1.2.3")
    message = approval_message(chat)
    app = sandbox._httpd.app
    handle = app.handle

    def edited_first(method, path, headers, body):
        if method == "PATCH" and "/ingresses/payflow-ingress" in path:
            app.handle = handle
            set_backend(k8s_view, "/", "maintenance-page")
        return handle(method, path, headers, body)

    app.handle = edited_first
    try:
        chat.click(message, "Approve", user="bob")
    finally:
        app.handle = handle
    assert "Voided" in chat.slack.responses[-1].params["text"]
    assert ingress_backend(k8s_view) == "maintenance-page" and ingress_writes(cluster) == 1
    assert change_record(chat, change_id_of(message))["state"] == "voided"


@pytest.mark.parametrize(
    ("code", "reason"),
    [(504, "Timeout"), (500, "ServerTimeout")],  # Kubernetes: "may still be processing the request"
)
def test_a_switch_answered_with_a_server_timeout_is_settled_from_the_cluster(
    chat, replicas, k8s_view, cluster, sandbox, code, reason
):
    a = replicas(bake_seconds=0)
    chat.bot = a
    chat.run("deploy api-gateway v1.2.3")
    message = approval_message(chat)
    change_id = change_id_of(message)
    app = sandbox._httpd.app
    handle = app.handle

    def applied_then_timeout(method, path, headers, body):
        response = handle(method, path, headers, body)
        if method == "PATCH" and "/ingresses/payflow-ingress" in path:
            app.handle = handle
            return Response.error(ApiError(code, reason, "the request may still be processing"))
        return response

    app.handle = applied_then_timeout
    try:
        chat.click(message, "Approve", user="bob")
    finally:
        app.handle = handle
    assert ingress_backend(k8s_view) == "api-gateway-green" and ingress_writes(cluster) == 1
    assert "Nothing was switched" not in chat.slack.responses[-1].params["text"]
    record = finished(chat, change_id)
    assert record["state"] == "done", record.get("error")
    assert "change.voided" not in [e.action for e in chat.audit(limit=100)]
