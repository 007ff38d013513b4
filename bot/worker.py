"""The worker process of `serve`: runs the jobs queued by acks, at a lower CPU priority.

Acks must leave within milliseconds even while hundreds of commands are being worked on;
in one process the work would compete with the acks for the event loop and the GIL. So the
web process only verifies, parses, acks and sends the job down a pipe; this process (niced)
does the Kubernetes, Redis and Slack work. If it dies, the next job restarts it.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import queue
import threading
from multiprocessing.connection import Connection
from typing import Any

from bot import logs
from bot.config import Catalog
from bot.jobs import Jobs
from bot.settings import Settings

log = logging.getLogger(__name__)

_STOP = None


def _worker_main(conn: Connection, settings: Settings, catalog: Catalog, nice: int, log_level: str) -> None:
    logs.configure(level=log_level)  # the parent's format, from $LOG_FORMAT
    if nice:
        os.nice(nice)
    from bot.runtime import build_runtime

    async def main() -> None:
        runtime = build_runtime(settings, catalog)
        await runtime.start()
        loop = asyncio.get_running_loop()
        stopped = asyncio.Event()

        def receive() -> None:
            while True:
                try:
                    job = conn.recv()
                except (EOFError, OSError):
                    job = _STOP
                if job is _STOP:
                    loop.call_soon_threadsafe(stopped.set)
                    return
                loop.call_soon_threadsafe(runtime.jobs.submit, job)

        threading.Thread(target=receive, name="job-receiver", daemon=True).start()
        await stopped.wait()
        await runtime.close()

    asyncio.run(main())


class WorkerProcess:
    def __init__(self, settings: Settings, catalog: Catalog, *, nice: int = 19):
        self._args = (settings, catalog, nice, logging.getLogger().getEffectiveLevel())
        self._ctx = multiprocessing.get_context("spawn")
        self._process: Any = None
        self._conn: Connection | None = None
        self._outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._sender = threading.Thread(target=self._send_loop, name="job-sender", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> WorkerProcess:
        self._spawn()
        self._sender.start()
        return self

    def _spawn(self) -> None:
        parent, child = self._ctx.Pipe(duplex=False)
        self._process = self._ctx.Process(
            target=_worker_main, args=(parent, *self._args), name="payflow-worker", daemon=True
        )
        self._process.start()
        parent.close()
        self._conn = child

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def send(self, job: Any) -> None:
        """Never blocks the caller: a sender thread writes to the pipe."""
        self._outbox.put(job)

    def _send_loop(self) -> None:
        while True:
            job = self._outbox.get()
            with self._lock:
                if job is not _STOP and not self.alive:
                    log.error(
                        "worker process died (exit code %s); starting a new one", self._process.exitcode
                    )
                    self._spawn()
                try:
                    assert self._conn is not None
                    self._conn.send(job)
                except (BrokenPipeError, OSError) as exc:
                    log.error("could not hand a job to the worker: %s", exc)
            if job is _STOP:
                return

    def stop(self, timeout: float = 30.0) -> None:
        self._outbox.put(_STOP)
        self._sender.join(timeout=5)
        if self._process is not None:
            self._process.join(timeout)
            if self._process.is_alive():
                self._process.terminate()


class WorkerJobs(Jobs):
    """Jobs handed to the worker process once the ack is out."""

    def __init__(self, worker: WorkerProcess):
        super().__init__()
        self.worker = worker

    def _start(self, job: Any) -> None:
        self.worker.send(job)

    def health(self) -> str:
        return "ok" if self.worker.alive else "worker process is down"

    async def close(self) -> None:
        await asyncio.to_thread(self.worker.stop)
