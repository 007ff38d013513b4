"""/payflow mq end to end: signed requests to the served bot, a private RabbitMQ node read through
its management API by the monitoring user, queues made by a real AMQP client (pika)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pika
import pytest

from bot.config.catalog import Catalog, CatalogError, load_catalog, parse_catalog
from bot.config.settings import Settings
from sandbox.local import wait_until
from sandbox.rabbitmq import RabbitNode
from tests.support.blackhole import BlackHole
from tests.support.chat import Chat

BUSY, BACKLOG, IDLE, MISSING = "mqt.busy", "mqt.backlog", "mqt.idle", "mqt.missing"
BACKLOG_WARNING = 20
PREFETCH = 5


def _monitor_url(node: RabbitNode, password: str | None = None) -> str:
    secret = quote(password or node.monitor_password, safe="")
    return node.management_url.replace("://", f"://{quote(node.monitor_user, safe='')}:{secret}@")


def _with_rabbit(catalog: Catalog, **changes: object) -> Catalog:
    data = catalog.data
    rabbit = data.rabbitmq.model_copy(update=changes)
    return catalog.model_copy(update={"data": data.model_copy(update={"rabbitmq": rabbit})})


@pytest.fixture
def catalog(catalog: Catalog) -> Catalog:
    catalog = catalog.model_copy(update={"digests": []})
    return _with_rabbit(
        catalog, vhost="payflow", queues=[BUSY, BACKLOG, IDLE, MISSING], backlog_warning=BACKLOG_WARNING
    )


@pytest.fixture
def settings(settings: Settings, rabbitmq_node: RabbitNode) -> Settings:
    return replace(settings, env={"RABBITMQ_API_URL": _monitor_url(rabbitmq_node)})


def _queue_counts(node: RabbitNode, name: str) -> tuple[int, int, int] | None:
    with node.admin_api() as api:
        resp = api.get(f"/api/queues/payflow/{name}")
        if resp.status_code != 200:
            return None
        q = resp.json()
        return q.get("messages_ready"), q.get("messages_unacknowledged"), q.get("consumers")


@pytest.fixture
def queues(rabbitmq_node: RabbitNode) -> Iterator[None]:
    """BUSY: one consumer holding PREFETCH unacked messages, 3 more ready. BACKLOG: 30 ready, no
    consumer. IDLE: empty, no consumer. Deleted afterwards (the node is shared by the session)."""
    params = pika.URLParameters(rabbitmq_node.amqp_url + "?heartbeat=0")
    publisher = pika.BlockingConnection(params)
    consumer = pika.BlockingConnection(params)
    try:
        pub = publisher.channel()
        for name in (BUSY, BACKLOG, IDLE):
            pub.queue_declare(name)
        for _ in range(30):
            pub.basic_publish("", BACKLOG, b"payment.settled")
        for _ in range(PREFETCH + 3):
            pub.basic_publish("", BUSY, b"payment.created")
        held: list[int] = []
        sub = consumer.channel()
        sub.basic_qos(prefetch_count=PREFETCH)
        sub.basic_consume(BUSY, lambda ch, method, props, body: held.append(method.delivery_tag))
        expected = {BUSY: (3, PREFETCH, 1), BACKLOG: (30, 0, 0), IDLE: (0, 0, 0)}

        def caught_up() -> bool:
            consumer.process_data_events(time_limit=0.1)  # deliveries reach the consumer
            return {n: _queue_counts(rabbitmq_node, n) for n in expected} == expected

        wait_until(caught_up, 30, "the management API to show the queues' counts")
        assert len(held) == PREFETCH  # delivered, never acknowledged
        yield
    finally:
        consumer.close()
        with rabbitmq_node.admin_api() as api:
            for name in (BUSY, BACKLOG, IDLE):
                api.delete(f"/api/queues/payflow/{name}")
        publisher.close()


def _table_lines(answer) -> list[str]:
    [post] = answer.posts
    lines = []
    for block in post["blocks"]:
        for line in block.get("text", {}).get("text", "").splitlines():
            if line.startswith("`") and line.endswith("`"):
                lines.append(line.strip("`"))
    return lines


def test_mq_shows_the_node_and_puts_problem_queues_first(chat: Chat, rabbitmq_node: RabbitNode, queues):
    answer = chat.run("mq", user="dave")  # a viewer may look

    [post] = answer.posts
    body = answer.all_text()
    assert "RabbitMQ: 3 of 4 queues need attention" in post["text"]
    assert f"payflow-{rabbitmq_node.amqp_port}@localhost" in body and "running" in body
    head, *rows = _table_lines(answer)
    assert head.split() == ["queue", "ready", "unacked", "consumers", "publish/s", "deliver/s", "state"]
    names = [row.split()[0] for row in rows]
    assert names == [MISSING, BACKLOG, IDLE, BUSY]  # missing, then backlogs, then the healthy
    cells = {row.split()[0]: row.split() for row in rows}
    assert cells[MISSING][-1] == "missing"
    assert cells[BACKLOG][1:4] == ["30", "0", "0"]
    assert "no consumer, backlog over 20" in rows[1]
    assert cells[IDLE][1:4] == ["0", "0", "0"] and rows[2].endswith("no consumer")
    assert cells[BUSY][1:4] == ["3", str(PREFETCH), "1"] and cells[BUSY][-1] == "ok"
    assert rabbitmq_node.monitor_password not in body
    [entry] = chat.audit()
    assert (entry.action, entry.outcome) == ("mq", "ok")


class TestEveryQueue:
    @pytest.fixture
    def catalog(self, catalog: Catalog) -> Catalog:
        return _with_rabbit(catalog, queues=[])  # the catalog says: every queue of the vhost

    def test_mq_without_a_queue_list_shows_every_queue_of_the_vhost(self, chat: Chat, queues):
        rows = _table_lines(chat.run("mq"))[1:]
        ours = [row.split()[0] for row in rows if row.startswith("mqt.")]
        assert ours == [BACKLOG, IDLE, BUSY]
        assert MISSING not in str(rows)


class TestNotConfigured:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return replace(settings, env={})

    def test_mq_says_which_setting_to_set(self, chat: Chat):
        answer = chat.run("mq")
        assert answer.posts == []
        assert "RabbitMQ is not configured: set `RABBITMQ_API_URL`" in answer.all_text()


@pytest.fixture
def hole() -> Iterator[BlackHole]:
    with BlackHole() as server:
        yield server


class TestOutages:
    @pytest.fixture
    def catalog(self, catalog: Catalog) -> Catalog:
        return catalog.model_copy(update={"data": catalog.data.model_copy(update={"timeout_seconds": 0.5})})

    @pytest.fixture
    def settings(self, settings: Settings, hole: BlackHole) -> Settings:
        url = hole.url.replace("://", "://payflow-monitor:hole-secret-42@")
        return replace(settings, env={"RABBITMQ_API_URL": url})

    def test_a_hung_management_api_costs_one_deadline_per_call(self, chat: Chat, hole: BlackHole):
        answer = chat.run("mq")
        text = answer.all_text()
        assert f"RabbitMQ management API at 127.0.0.1:{hole.port} did not answer within 0.5 s" in text
        assert "hole-secret-42" not in text and "Traceback" not in text
        assert hole.connections == 3  # overview, nodes, queues: one attempt each, no retry
        [entry] = chat.audit()
        assert entry.outcome == "failed"


class TestWrongPassword:
    @pytest.fixture
    def settings(self, settings: Settings, rabbitmq_node: RabbitNode) -> Settings:
        return replace(settings, env={"RABBITMQ_API_URL": _monitor_url(rabbitmq_node, "not-the-password-77")})

    def test_a_wrong_password_is_named_without_echoing_it(self, chat: Chat):
        text = chat.run("mq").all_text()
        assert "refused the user and password of the URL (401)" in text
        assert "not-the-password-77" not in text


def test_the_catalog_refuses_the_prometheus_source_at_load_time():
    data = load_catalog().model_dump(mode="json")
    data["data"]["rabbitmq"]["source"] = "prometheus"
    with pytest.raises(CatalogError) as err:
        parse_catalog(data, "payflow.yaml")
    [problem] = err.value.problems
    assert problem.startswith("data.rabbitmq.source: 'prometheus'")
    assert "not supported yet; use 'api'" in problem


class _Broker(BaseHTTPRequestHandler):
    """A management API that answers every GET the way `mode` says."""

    mode = "endless"

    def do_GET(self) -> None:
        if self.mode == "500":
            self.send_response(500)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if self.mode == "garbage":
            body = b"\x00{not json" * 100
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.end_headers()  # no length: the body ends when the connection does, i.e. never
        chunk = b'{"name": "q", "messages_ready": 1},' * 2000
        with contextlib.suppress(OSError):
            self.wfile.write(b'{"items": [')
            for _ in range(10_000):  # ~700 MB at most, 70 KB a millisecond
                self.wfile.write(chunk)
                time.sleep(0.001)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def broker(request: pytest.FixtureRequest) -> Iterator[ThreadingHTTPServer]:
    handler = type("Broker", (_Broker,), {"mode": request.param})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


class TestBrokenBroker:
    @pytest.fixture
    def catalog(self, catalog: Catalog) -> Catalog:
        return catalog.model_copy(update={"data": catalog.data.model_copy(update={"timeout_seconds": 3})})

    @pytest.fixture
    def settings(self, settings: Settings, broker: ThreadingHTTPServer) -> Settings:
        return replace(settings, env={"RABBITMQ_API_URL": f"http://mon:pw@127.0.0.1:{broker.server_port}"})

    @pytest.mark.parametrize(
        ("broker", "said"),
        [
            ("endless", "too much"),  # read up to the limit, not until the deadline or out of memory
            ("500", "answered 500"),
            ("garbage", "not JSON"),
        ],
        indirect=["broker"],
    )
    def test_a_broken_answer_is_named_and_bounded(self, chat: Chat, said: str) -> None:
        text = chat.run("mq").all_text()
        assert said in text and "did not answer" not in text and "Traceback" not in text
        assert [e.outcome for e in chat.audit()] == ["failed"]
