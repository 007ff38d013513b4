"""The private RabbitMQ node: real AMQP publishers and a consumer (pika) make queue depths,
and the bot's monitoring user reads them from the management API and can change nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from sandbox.local import wait_until
from sandbox.rabbitmq import RabbitNode


@pytest.fixture
def channel(rabbitmq_node: RabbitNode) -> Iterator[BlockingChannel]:
    params = pika.URLParameters(rabbitmq_node.amqp_url + "?connection_attempts=1&socket_timeout=5")
    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()
        channel.confirm_delivery()  # basic_publish returns once the broker has the message
        yield channel
    finally:
        connection.close()


@pytest.fixture
def queues(rabbitmq_node: RabbitNode) -> Iterator[list[str]]:
    """Names for the test's own queues, deleted afterwards so the session's node stays clean."""
    names: list[str] = []
    yield names
    with rabbitmq_node.admin_api() as api:
        for name in names:
            api.delete(f"/api/queues/{quote(rabbitmq_node.vhost, safe='')}/{quote(name, safe='')}")


def queue_stats(node: RabbitNode, name: str) -> dict[str, Any]:
    with node.monitor_api() as api:
        response = api.get(f"/api/queues/{quote(node.vhost, safe='')}/{quote(name, safe='')}")
    response.raise_for_status()
    return response.json()


def settled(node: RabbitNode, name: str, **expected: int) -> dict[str, Any] | None:
    """The queue's stats once the management database shows `expected` (it samples every second)."""
    stats = queue_stats(node, name)
    return stats if all(stats.get(k) == v for k, v in expected.items()) else None


def test_node_is_private_and_not_the_system_broker(rabbitmq_node: RabbitNode) -> None:
    assert rabbitmq_node.nodename.startswith("payflow-") and rabbitmq_node.nodename != "rabbit@localhost"
    assert {rabbitmq_node.amqp_port, rabbitmq_node.management_port}.isdisjoint({5672, 15672})
    with rabbitmq_node.monitor_api() as api:
        overview = api.get("/api/overview").json()
        whoami = api.get("/api/whoami").json()
        listeners = {(entry["protocol"], int(entry["port"])) for entry in overview["listeners"]}
    assert overview["node"] == rabbitmq_node.nodename
    assert listeners == {
        ("amqp", rabbitmq_node.amqp_port),
        ("http", rabbitmq_node.management_port),
        ("clustering", rabbitmq_node.dist_port),
    }
    assert whoami == {"name": rabbitmq_node.monitor_user, "tags": ["monitoring"]}


def test_monitoring_user_sees_ready_unacked_and_consumers(
    rabbitmq_node: RabbitNode, channel: BlockingChannel, queues: list[str]
) -> None:
    backlog, busy = "payments.settlement", "payments.webhooks"
    queues += [backlog, busy]
    for name, count in ((backlog, 5), (busy, 3)):
        channel.queue_declare(name, durable=True)
        for i in range(count):
            channel.basic_publish("", name, f'{{"payment": {i}}}'.encode())
    # A consumer that takes two messages (prefetch 2) and does not acknowledge them yet.
    channel.basic_qos(prefetch_count=2)
    received: list[bytes] = []
    channel.basic_consume(busy, lambda ch, method, props, body: received.append(body), auto_ack=False)
    wait_until(
        lambda: channel.connection.process_data_events(0.05) or len(received) == 2, 10, "two deliveries"
    )

    ready = wait_until(lambda: settled(rabbitmq_node, backlog, messages_ready=5), 20, "backlog stats")
    assert (ready["messages_unacknowledged"], ready["consumers"]) == (0, 0)
    inflight = wait_until(
        lambda: settled(rabbitmq_node, busy, messages_ready=1, messages_unacknowledged=2, consumers=1),
        20,
        "consumer stats",
    )
    assert inflight["messages"] == 3
    with rabbitmq_node.monitor_api() as api:
        listed = {q["name"]: q for q in api.get("/api/queues").json()}
    assert {backlog, busy} <= set(listed)
    assert listed[busy]["vhost"] == rabbitmq_node.vhost


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/api/queues/payflow/made-by-monitor", {"durable": True}),
        ("DELETE", "/api/queues/payflow/payments.locked", None),
        ("DELETE", "/api/queues/payflow/payments.locked/contents", None),
        (
            "POST",
            "/api/exchanges/payflow/amq.default/publish",
            {
                "properties": {},
                "routing_key": "payments.locked",
                "payload": "x",
                "payload_encoding": "string",
            },
        ),
        (
            "POST",
            "/api/queues/payflow/payments.locked/get",
            {"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"},
        ),
        ("PUT", "/api/users/intruder", {"password": "x", "tags": "administrator"}),
    ],
)
def test_monitoring_user_changes_nothing(
    rabbitmq_node: RabbitNode,
    channel: BlockingChannel,
    queues: list[str],
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    queues += ["payments.locked", "made-by-monitor"]
    channel.queue_declare("payments.locked", durable=True)
    channel.basic_publish("", "payments.locked", b"keep me")
    assert channel.queue_declare("payments.locked", passive=True).method.message_count == 1
    with rabbitmq_node.monitor_api() as api:
        response = api.request(method, path, json=body)
    # The publish endpoint reports the broker's refusal as 400 with AMQP's 403 inside.
    assert response.status_code in (401, 403) or (
        response.status_code == 400 and "ACCESS_REFUSED" in response.text
    ), response.text
    with rabbitmq_node.admin_api() as api:
        assert api.get("/api/queues/payflow/made-by-monitor").status_code == 404
        assert api.get("/api/users/intruder").status_code == 404
    assert channel.queue_declare("payments.locked", passive=True).method.message_count == 1


def test_monitoring_user_has_no_amqp_rights(rabbitmq_node: RabbitNode) -> None:
    url = rabbitmq_node.amqp_url.replace(
        f"{rabbitmq_node.admin_user}:{quote(rabbitmq_node.admin_password, safe='')}",
        f"{rabbitmq_node.monitor_user}:{quote(rabbitmq_node.monitor_password, safe='')}",
    )
    connection = pika.BlockingConnection(pika.URLParameters(url + "?connection_attempts=1&socket_timeout=5"))
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            connection.channel().queue_declare("made-by-monitor-amqp")
        assert refused.value.reply_code == 403
    finally:
        connection.close()
    with rabbitmq_node.admin_api() as api:
        assert api.get("/api/queues/payflow/made-by-monitor-amqp").status_code == 404


def test_a_wrong_password_is_refused(rabbitmq_node: RabbitNode) -> None:
    with httpx.Client(
        base_url=rabbitmq_node.management_url, auth=(rabbitmq_node.monitor_user, "wrong"), timeout=5
    ) as api:
        assert api.get("/api/queues").status_code == 401
