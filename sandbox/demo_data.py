"""The data stores behind `make run`: PayFlow's PostgreSQL (seeded, slow statements run), its
Redis with a token blacklist, and a RabbitMQ node with a few PayFlow queues: each private (free
loopback ports, a temporary directory), each only when its server is installed here.

They start in background threads, so the console's prompt does not wait for them (RabbitMQ alone
takes 3–8 s); the console asks `news()` for what became ready and hands `settings()` to the bot.
`close()` stops all of them, a half-started one too, and removes their directories.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from bot.config.catalog import Catalog
from sandbox.local import wait_until
from sandbox.payflow_db import PayflowDatabase
from sandbox.payflow_redis import fill_blacklist
from sandbox.postgres import PostgresServerMissing
from sandbox.rabbitmq import RabbitNode, RabbitServerMissing
from sandbox.redis_server import RedisServer, RedisServerMissing

# The demo's own AMQP traffic (pika) is not the bot's: a connection the node drops at exit is
# expected, and must not reach the console as an error with a traceback.
logging.getLogger("pika").setLevel(logging.CRITICAL)

__all__ = ["BACKLOG", "BLACKLISTED", "QUEUES", "DemoData", "DemoStore"]

BLACKLISTED = 20_000  # enough keys for SCAN to take several steps
SETTLE, EMAIL, DEAD = "payments.settle", "notifications.email", "payments.dead-letter"
QUEUES = (SETTLE, EMAIL, DEAD)
BACKLOG = 1_500  # notifications.email: over the catalog's backlog_warning (1,000), and no consumer
DEAD_LETTERS = 3
SETTLE_PER_SECOND = 5
START_SECONDS = 120.0  # one store's start, setup included: then it is reported as failed
STOP_SECONDS = 150.0  # waiting for a starting store's thread at exit (its own deadlines are shorter)


@dataclass
class DemoStore:
    """One data store of the demo and where its start stands. `state` moves once from
    "starting" to "ready" or "failed"; "absent" when its server is not installed."""

    name: str
    setting: str  # the bot's setting that points at it, set once it is ready
    commands: tuple[str, ...]  # the /payflow commands that need it
    holds: str  # what the demo puts in it, said at start
    state: str = "starting"
    reason: str = ""  # why absent or failed
    value: str | None = None  # the setting's value once ready
    began: float = field(default_factory=time.monotonic)  # reset by start()
    took: float = 0.0
    told: bool = False  # the console has said how its start ended

    @property
    def first_command(self) -> str:
        return f"/payflow {self.commands[0]}"

    def needed_by(self, args: str) -> bool:
        words = args.split()
        return any(words[: len(c.split())] == c.split() for c in self.commands)

    @property
    def unconfigured(self) -> str:
        return f"{self.first_command} will say it is not configured"

    def start_line(self) -> str:
        if self.state == "absent":
            return f"{self.name}: not started ({self.reason}); {self.unconfigured}"
        return f"{self.name}: starting in the background ({self.holds}); {self.setting} is set once ready"

    def end_line(self) -> str:
        if self.state == "ready":
            cmds = ", ".join(f"/payflow {c}" for c in self.commands)
            return f"{self.name} ready in {self.took:.1f} s, {self.setting} set: {cmds}"
        return f"{self.name}: could not start ({self.reason}); {self.unconfigured}"

    def still_starting(self) -> str:
        waited = time.monotonic() - self.began
        return (
            f"{self.name} is still starting (the demo's private server, {waited:.0f} s so far); "
            f"try again once the console says it is ready. Nothing was sent to the bot."
        )


class DemoData:
    """Probes for the servers at once (cheap: no process starts), starts them on `start()`."""

    def __init__(self, catalog: Catalog) -> None:
        data = catalog.data
        self.stores: list[DemoStore] = []
        self._threads: list[threading.Thread] = []
        self._closers: list[Callable[[], None]] = []
        self._interrupts: list[Callable[[], None]] = []
        self._starters: dict[str, Callable[[], str]] = {}
        self._stop = threading.Event()
        self._consumer: threading.Thread | None = None
        self._probe(
            DemoStore(
                "PostgreSQL",
                data.postgres.url_setting,
                ("db", "db slow", "db sizes", "db activity", "users locked", "users unlock"),
                "a private server; users (7 locked), 20,000 transactions, slow statements run",
            ),
            self._postgres,
            (PostgresServerMissing,),
            "initdb not found",
        )
        self._probe(
            DemoStore(
                "PayFlow's Redis",
                data.redis.url_setting,
                ("tokens", "backup redis"),
                f"a private redis-server; {BLACKLISTED:,} blacklisted tokens",
            ),
            self._redis,
            (RedisServerMissing,),
            "redis-server not found",
        )
        self._probe(
            DemoStore(
                "RabbitMQ",
                data.rabbitmq.url_setting,
                ("mq",),
                f"a private node; {SETTLE} consumed, {EMAIL} with {BACKLOG:,} waiting, no consumer; {DEAD}",
            ),
            self._rabbitmq,
            (RabbitServerMissing,),
            "rabbitmq-server not found",
        )

    def _probe(
        self,
        store: DemoStore,
        make: Callable[[], Callable[[], str]],
        missing: tuple[type[Exception], ...],
        reason: str,
    ) -> None:
        self.stores.append(store)
        try:
            self._starters[store.name] = make()
        except missing as exc:
            store.state, store.reason = "absent", reason
            if "root" in str(exc):  # PostgreSQL as root needs the postgres OS user
                store.reason = str(exc)

    def start(self) -> list[str]:
        """Start every store that is installed, each in its own thread; one line per store."""
        for store in self.stores:
            if store.state == "starting":
                store.began = time.monotonic()
                thread = threading.Thread(
                    target=self._run, args=(store,), name=f"demo-{store.setting}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
        return [store.start_line() for store in self.stores]

    def _run(self, store: DemoStore) -> None:
        try:
            value = self._starters[store.name]()
        except Exception as exc:  # said by the console; the store's commands say not configured
            store.reason = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
            store.state = "failed"
            return
        store.took = time.monotonic() - store.began
        store.value = value
        store.state = "ready"

    def news(self) -> list[DemoStore]:
        """The stores whose start ended since last asked."""
        done = [s for s in self.stores if s.state in ("ready", "failed") and not s.told]
        for store in done:
            store.told = True
        return done

    def settings(self) -> dict[str, str]:
        """The bot's settings for the stores that are ready."""
        return {s.setting: s.value for s in self.stores if s.state == "ready" and s.value}

    def starting_for(self, args: str) -> DemoStore | None:
        """The store a `/payflow <args>` needs, if it is still starting."""
        return next((s for s in self.stores if s.state == "starting" and s.needed_by(args)), None)

    def close(self) -> None:
        """Stop everything started, half-started stores too, and remove their directories."""
        self._stop.set()
        for interrupt in self._interrupts:
            interrupt()
        for thread in self._threads:
            thread.join(STOP_SECONDS)
        if self._consumer is not None:
            self._consumer.join(STOP_SECONDS)
        for close in reversed(self._closers):
            close()

    # -- the stores -------------------------------------------------------------------------------

    def _postgres(self) -> Callable[[], str]:
        db = PayflowDatabase()  # raises PostgresServerMissing before anything is created
        self._closers.append(db.close)

        def start() -> str:
            db.start()
            return db.bot_dsn

        return start

    def _redis(self) -> Callable[[], str]:
        server = RedisServer(startup_timeout=START_SECONDS)
        self._closers.append(server.close)

        def start() -> str:
            server.start()
            client = server.client()
            try:
                fill_blacklist(client, BLACKLISTED)
            finally:
                client.close()
            return server.url

        return start

    def _rabbitmq(self) -> Callable[[], str]:
        node = RabbitNode(startup_timeout=START_SECONDS)
        self._closers.append(node.close)
        self._interrupts.append(node.kill)  # a boot still waiting for the node gives up at once

        def start() -> str:
            if self._stop.is_set():
                raise RuntimeError("the console is closing")
            node.start()
            self._queues(node)
            auth = f"{quote(node.monitor_user, safe='')}:{quote(node.monitor_password, safe='')}"
            return f"http://{auth}@{node.host}:{node.management_port}"

        return start

    def _queues(self, node: RabbitNode) -> None:
        """The queues as PayFlow's services leave them: settlement consumed as it comes, e-mail
        notifications piling up with their worker gone, a few dead letters."""
        import pika  # type: ignore[import-untyped]  # the sandbox extra; loaded only once needed

        params = pika.URLParameters(node.amqp_url)
        params.socket_timeout = params.blocked_connection_timeout = 10
        connection = pika.BlockingConnection(params)
        try:
            channel = connection.channel()
            for name in QUEUES:
                channel.queue_declare(name, durable=True)
            for n in range(BACKLOG):
                channel.basic_publish("", EMAIL, f'{{"template":"receipt","tx":"TX-{n:010d}"}}'.encode())
            for n in range(DEAD_LETTERS):
                channel.basic_publish("", DEAD, f'{{"tx":"TX-{n:010d}","error":"card declined"}}'.encode())
        finally:
            connection.close()
        self._consumer = threading.Thread(target=self._settle, args=(pika, params), daemon=True)
        self._consumer.start()
        with node.admin_api() as api:

            def settled() -> bool:
                queues = {q["name"]: q for q in api.get(f"/api/queues/{quote(node.vhost, safe='')}").json()}
                email, settle = queues.get(EMAIL, {}), queues.get(SETTLE, {})
                return email.get("messages_ready") == BACKLOG and settle.get("consumers") == 1

            wait_until(settled, 30, "the demo's queues to show in the management API", poll=0.2)

    def _settle(self, pika: Any, params: Any) -> None:
        """payments.settle's consumer: a payment published and settled (acked) a few times a second."""
        with contextlib.suppress(Exception):  # the node going away at exit ends it
            connection = pika.BlockingConnection(params)
            try:
                channel = connection.channel()
                channel.basic_qos(prefetch_count=10)
                channel.basic_consume(SETTLE, lambda ch, method, _p, _b: ch.basic_ack(method.delivery_tag))
                n = 0
                while not self._stop.is_set():
                    n += 1
                    channel.basic_publish("", SETTLE, f'{{"tx":"TX-{n:010d}"}}'.encode())
                    connection.sleep(1 / SETTLE_PER_SECOND)  # serves the consumer meanwhile
            finally:
                connection.close()
