"""The worker process of `serve`: takes jobs from the Redis stream and runs them, niced.

Acks must leave within milliseconds even while hundreds of commands are being worked on; in one
process the work would compete with the acks for the event loop and the GIL. So the web process
only verifies, parses, acks and puts the job into the stream (`bot/gateways/jobs.py`); this process does
the Kubernetes, Redis and Slack work, at most `worker_concurrency` jobs at a time.

The web process supervises it (`WorkerProcess`): a worker that dies, or whose event loop stops
sending its heartbeat, is replaced at once, then with growing pauses if it keeps dying; while
it cannot be kept up /healthz fails so Kubernetes restarts the pod. Jobs never live in the
worker: a killed worker's unfinished jobs are still pending in the stream under its consumer
name, which its successor keeps, so the successor takes them again first thing. A replica that
is gone for good has its jobs claimed by the others after `job_claim_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING

from bot.base import logs
from bot.base.telemetry import Telemetry
from bot.config.catalog import Catalog
from bot.config.settings import Settings
from bot.gateways.jobs import Delivery, QueuedJobs, StreamQueue, decode

if TYPE_CHECKING:
    from bot.shell.runtime import Runtime

log = logging.getLogger(__name__)

HEARTBEAT = 1.0  # the worker reports (and sends its counters) this often
HEARTBEAT_LOST = 30.0  # a worker silent this long is stuck: killed and replaced
STEADY = 60.0  # a worker up this long counts as healthy again: the next restart is immediate
MAX_BACKOFF = 30.0
FAILING_AFTER = 5  # this many quick deaths in a row: liveness fails
STOP_GRACE = 30.0


def consumer_name() -> str:
    """Stable for the life of this web process and shared by all its workers, one after another."""
    return f"{socket.gethostname()}:{os.getpid()}"


# --- in the worker process -----------------------------------------------------------------


class Consumer:
    """Reads jobs for one consumer name and runs at most `concurrency` of them at once."""

    def __init__(self, queue: StreamQueue, runtime: Runtime, name: str, settings: Settings):
        self.queue = queue
        self.runtime = runtime
        self.name = name
        self.settings = settings
        self.telemetry: Telemetry = runtime.telemetry
        self.slots = asyncio.Semaphore(settings.worker_concurrency)
        self.in_flight: dict[str, asyncio.Task[None]] = {}

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():  # a Redis outage is waited out here, not turned into restarts
            try:
                await self.queue.ensure_group()
                break
            except Exception as exc:
                log.warning("job queue unavailable: %s: %s", type(exc).__name__, str(exc)[:200])
                await _sleep_or_stop(stop, 1.0)
        keeper = asyncio.create_task(self._keep_claims(stop))
        try:
            backlog = await self.queue.own_pending(self.name, 1000)
        except Exception as exc:  # the claim sweep takes them once they have been idle long enough
            log.warning("could not take back unfinished jobs yet: %s", type(exc).__name__)
            backlog = []
        if backlog:
            log.warning("taking back %d job(s) a killed worker left unfinished", len(backlog))
        try:
            while await self._acquire(stop):
                try:
                    batch = [backlog.pop(0)] if backlog else await self.queue.read(self.name, 1, 1000)
                except Exception as exc:  # Redis down: wait and try again, never spin
                    self.slots.release()
                    log.warning("job queue unavailable: %s: %s", type(exc).__name__, str(exc)[:200])
                    await _sleep_or_stop(stop, 1.0)
                    continue
                if batch:
                    self._start(batch[0])
                else:
                    self.slots.release()
        finally:
            keeper.cancel()
            if self.in_flight:
                await asyncio.wait(set(self.in_flight.values()), timeout=STOP_GRACE)

    async def _acquire(self, stop: asyncio.Event) -> bool:
        """A free slot (True), or False once asked to stop: only a free slot reads a job, so the
        jobs this worker cannot start yet stay in the stream for any other worker."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(self.slots.acquire(), 0.5)
                return True
            except TimeoutError:
                continue
        return False

    def _start(self, delivery: Delivery) -> None:
        task = asyncio.create_task(self._run(delivery))
        self.in_flight[delivery.id] = task

    async def _run(self, d: Delivery) -> None:
        try:
            await self._handle(d)
        finally:
            self.in_flight.pop(d.id, None)
            self.slots.release()

    async def _handle(self, d: Delivery) -> None:
        if d.data is None:  # deleted meanwhile (finished by a worker we thought dead)
            await self._finish(d, None)
            return
        if d.deliveries > self.settings.job_max_deliveries:
            await self._dead_letter(d, f"handed out {d.deliveries} times without finishing")
            return
        try:
            job = decode(d.data)
        except Exception as exc:
            await self._dead_letter(d, f"undecodable: {type(exc).__name__}")
            return
        outcome = await self.runtime.jobs.run(job, d.id, self.settings.job_timeout_seconds)
        await self._finish(d, outcome)

    async def _finish(self, d: Delivery, outcome: str | None) -> None:
        """Acknowledged once it ran, whatever the outcome: running it again would do the same.
        If the acknowledgement is lost the job runs again, and the outbox keeps its messages once."""
        try:
            await self.queue.done(d.id)
        except Exception as exc:
            log.warning(
                "job %s ran (%s) but could not be acknowledged: %s", d.id, outcome, type(exc).__name__
            )

    async def _dead_letter(self, d: Delivery, reason: str) -> None:
        log.error("job %s dead-lettered to %s: %s", d.id, self.queue.dead_key, reason)
        self.telemetry.jobs.labels("dead_lettered").inc()
        try:
            await self.queue.dead_letter(d, reason)
        except Exception as exc:
            log.warning("job %s not dead-lettered yet: %s", d.id, type(exc).__name__)

    async def _keep_claims(self, stop: asyncio.Event) -> None:
        """Touch our jobs in flight and take over the stale jobs of dead consumers."""
        claim_after = self.settings.job_claim_seconds
        last_sweep = 0.0
        while not stop.is_set():
            await _sleep_or_stop(stop, claim_after / 3)
            try:
                await self.queue.touch(self.name, list(self.in_flight))
                if time.monotonic() - last_sweep > claim_after / 2:
                    last_sweep = time.monotonic()
                    free = self.settings.worker_concurrency - len(self.in_flight)
                    for d in await self.queue.claim_stale(self.name, claim_after, max(free, 1)):
                        log.warning(
                            "took over job %s from a worker that stopped (delivery %d)", d.id, d.deliveries
                        )
                        await self.slots.acquire()
                        self._start(d)
                    await self.queue.forget_idle_consumers(86_400)
            except Exception as exc:
                log.warning("could not renew job claims: %s: %s", type(exc).__name__, str(exc)[:200])


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def _worker_main(
    conn: Connection, settings: Settings, catalog: Catalog, name: str, nice: int, level: str
) -> None:
    logs.configure(level=level)  # the parent's format, from $LOG_FORMAT
    if nice:
        os.nice(nice)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the web process decides when we stop
    from bot.shell.runtime import build_runtime

    async def main() -> None:
        assert settings.redis_url
        runtime = build_runtime(settings, catalog)
        queue = StreamQueue(
            settings.redis_url,
            max_len=settings.job_queue_max,
            max_connections=settings.worker_concurrency + 4,
        )
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def receive() -> None:
            with contextlib.suppress(EOFError, OSError):
                conn.recv()
            loop.call_soon_threadsafe(stop.set)

        async def beat() -> None:
            while True:
                try:
                    conn.send(("beat", runtime.telemetry.snapshot()))
                except (OSError, ValueError):
                    loop.call_soon_threadsafe(stop.set)
                    return
                await asyncio.sleep(HEARTBEAT)

        threading.Thread(target=receive, name="stop-listener", daemon=True).start()
        beating = asyncio.create_task(beat())
        await runtime.start()
        try:
            await Consumer(queue, runtime, name, settings).run(stop)
        finally:
            await runtime.close()
            await queue.close()
            beating.cancel()
            with contextlib.suppress(OSError, ValueError):
                conn.send(("beat", runtime.telemetry.snapshot()))

    asyncio.run(main())


# --- in the web process --------------------------------------------------------------------


@dataclass
class _Life:
    process: BaseProcess
    conn: Connection
    started: float
    source: str
    last_beat: float


class WorkerProcess:
    """Starts the worker and keeps one running until `stop`."""

    def __init__(self, settings: Settings, catalog: Catalog, telemetry: Telemetry, *, nice: int = 19):
        self.settings = settings
        self.catalog = catalog
        self.telemetry = telemetry
        self.nice = nice
        self.name = consumer_name()
        self._ctx = multiprocessing.get_context("spawn")
        self._life: _Life | None = None
        self._stopping = threading.Event()
        self._quick_deaths = 0
        self._generation = 0
        self._thread = threading.Thread(target=self._supervise, name="worker-supervisor", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> WorkerProcess:
        self._life = self._spawn()
        self._thread.start()
        return self

    def _spawn(self) -> _Life:
        parent, child = self._ctx.Pipe(duplex=True)
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        process = self._ctx.Process(
            target=_worker_main,
            args=(child, self.settings, self.catalog, self.name, self.nice, level),
            name="payflow-worker",
            daemon=True,
        )
        process.start()
        child.close()
        self._generation += 1
        now = time.monotonic()
        return _Life(process, parent, now, f"worker-{self._generation}", now)

    @property
    def alive(self) -> bool:
        life = self._life
        return life is not None and life.process.is_alive()

    @property
    def pid(self) -> int | None:
        return self._life.process.pid if self._life else None

    def health(self) -> str:
        """Liveness: fails only when the worker cannot be kept up, not while it is being replaced."""
        life = self._life
        steady = life is not None and life.process.is_alive() and time.monotonic() - life.started >= STEADY
        if self._quick_deaths >= FAILING_AFTER and not steady:
            return f"worker process keeps dying ({self._quick_deaths} times in a row)"
        return "ok"

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            life = self._life
            assert life is not None
            self._listen(life)
            if self._stopping.is_set():
                return
            code = life.process.exitcode
            if code is None:  # alive but silent: its event loop is stuck
                log.error("worker process sent no heartbeat for %.0f s: killing it", HEARTBEAT_LOST)
                life.process.kill()
                life.process.join(5)
                code = life.process.exitcode
            life.conn.close()
            up = time.monotonic() - life.started
            self._quick_deaths = 0 if up >= STEADY else self._quick_deaths + 1
            pause = 0.0 if self._quick_deaths <= 1 else min(MAX_BACKOFF, 0.5 * 2 ** (self._quick_deaths - 2))
            log.error(
                "worker process died (exit code %s after %.0f s); starting a new one in %.1f s",
                code,
                up,
                pause,
            )
            self.telemetry.worker_restarts.inc()
            if self._stopping.wait(pause):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                self._life = self._spawn()

    def _listen(self, life: _Life) -> None:
        """Until the worker exits or stops beating; its counters go into our /metrics."""
        while not self._stopping.is_set():
            try:
                if life.conn.poll(0.5):
                    kind, snap = life.conn.recv()
                    if kind == "beat":
                        life.last_beat = time.monotonic()
                        self.telemetry.absorb(life.source, snap)
                    continue
            except (EOFError, OSError):
                life.process.join(5)
                return
            if not life.process.is_alive():
                return
            if time.monotonic() - life.last_beat > HEARTBEAT_LOST:
                return

    def stop(self, timeout: float = STOP_GRACE + 5) -> None:
        """Graceful: the worker finishes its jobs in flight (the rest stay queued) and exits."""
        with self._lock:
            self._stopping.set()
        life = self._life
        if life is None:
            return
        with contextlib.suppress(OSError, ValueError):
            life.conn.send("stop")
        life.process.join(timeout)
        if life.process.is_alive():
            life.process.terminate()
            life.process.join(5)
        try:
            while life.conn.poll(0):
                kind, snap = life.conn.recv()
                if kind == "beat":
                    self.telemetry.absorb(life.source, snap)
        except (EOFError, OSError):
            pass
        self._thread.join(5)


class WorkerJobs(QueuedJobs):
    """Jobs go into the stream once the ack is out; this web process's supervised worker (and
    every other replica's) runs them."""

    def __init__(self, queue: StreamQueue, worker: WorkerProcess):
        super().__init__(queue)
        self.worker = worker
        self.health_check = worker.health

    async def close(self) -> None:
        await super().close()
        await asyncio.to_thread(self.worker.stop)
