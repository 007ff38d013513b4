"""Work that runs after Slack has its ack.

Inside an HTTP request the listener only queues work; the web layer starts it once the response
has been handed to the server (`after_response`), so nothing that touches Kubernetes or the
Slack API can delay or precede the ack. Elsewhere (console, Socket Mode) work starts at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

log = logging.getLogger(__name__)

Work = Callable[[], Awaitable[None]]

_pending: ContextVar[list[Work] | None] = ContextVar("payflow_pending_work", default=None)


class Jobs:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._responding = 0  # requests whose work is queued until their response is out

    def submit(self, work: Work) -> None:
        pending = _pending.get()
        if pending is not None:
            pending.append(work)
        else:
            self._start(work)

    @contextmanager
    def after_response(self) -> Iterator[None]:
        pending: list[Work] = []
        token = _pending.set(pending)
        self._responding += 1
        try:
            yield
        finally:
            _pending.reset(token)
            self._responding -= 1
            for work in pending:
                self._start(work)

    def _start(self, work: Work) -> None:
        task = asyncio.get_running_loop().create_task(self._guarded(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _guarded(work: Work) -> None:
        try:
            await work()
        except Exception:
            log.exception("background work failed")

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout: float = 30.0) -> bool:
        """Wait for work in flight (including work it starts); False if some was still running."""
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
