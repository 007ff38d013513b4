"""Work that runs after Slack has its ack.

Inside an HTTP request the listener only queues a job; the web layer starts it once the response
has been handed to the server (`after_response`), so nothing that touches Kubernetes or the
Slack API can delay or precede the ack. Elsewhere (console, Socket Mode) jobs start at once.

Jobs are data (picklable), so `serve` can hand them to a worker process (`bot/worker.py`)
instead of running them on the event loop that acks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

log = logging.getLogger(__name__)

Execute = Callable[[Any], Awaitable[None]]

_pending: ContextVar[list[Any] | None] = ContextVar("payflow_pending_jobs", default=None)


class Jobs:
    """Runs jobs as tasks on this process's event loop."""

    def __init__(self) -> None:
        self.execute: Execute | None = None  # set once the dispatcher exists
        self._tasks: set[asyncio.Task[None]] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._responding = 0  # requests whose jobs wait for their response to go out

    def submit(self, job: Any) -> None:
        pending = _pending.get()
        if pending is not None:
            pending.append(job)
        else:
            self._start(job)

    @contextmanager
    def after_response(self) -> Iterator[None]:
        pending: list[Any] = []
        token = _pending.set(pending)
        self._responding += 1
        try:
            yield
        finally:
            _pending.reset(token)
            self._responding -= 1
            for job in pending:
                self._start(job)

    def _start(self, job: Any) -> None:
        task = asyncio.get_running_loop().create_task(self._guarded(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, job: Any) -> None:
        assert self.execute is not None, "Jobs.execute is not wired"
        try:
            await self.execute(job)
        except Exception:
            log.exception("background job failed: %s", type(job).__name__)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """A long-running task (rollout watch, bake, schedule): not waited for by `drain`, cancelled
        by `close`; what it was doing is kept in the store and resumed by the next process."""
        task = asyncio.get_running_loop().create_task(self._guarded_background(coro))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    async def _guarded_background(coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background task failed")

    def health(self) -> str:
        return "ok"

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout: float = 30.0) -> bool:
        """Wait for jobs in flight (including jobs they start); False if some were still running."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._tasks or self._responding:
            left = deadline - loop.time()
            if left <= 0:
                return False
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=left)
            else:
                await asyncio.sleep(0.005)
        return True

    async def close(self) -> None:
        await self.drain()
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.wait(set(self._background), timeout=5)
