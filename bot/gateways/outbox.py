"""What a job already delivered to Slack, so that running the job again never posts twice.

A job is at-least-once: a worker killed mid-job leaves it pending in the queue and another run
starts it from the top. Every delivery the job makes is keyed by the job's ID and by its place in
the job (method, destination, and how many such deliveries came before it), and once Slack has
taken it the key is recorded in the store with what Slack answered (the message's ts). The next
run finds the record and returns the recorded ts instead of posting again. Updates are not
skipped: they set the whole message, so repeating one is harmless and keeps it current.

Outside a job (a background watch, the console) there is no scope and nothing is recorded.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from bot.gateways.store import Store, StoreError

log = logging.getLogger(__name__)

PREFIX = "outbox:"
RETENTION = 2 * 86_400  # well beyond any job's life in the queue (claimed again within seconds)


@dataclass
class _Scope:
    job_id: str
    seen: Counter[str] = field(default_factory=Counter)


_scope: ContextVar[_Scope | None] = ContextVar("payflow_delivery_scope", default=None)


@contextmanager
def job_scope(job_id: str | None) -> Iterator[None]:
    """Deliveries made inside belong to job `job_id` (None: to no job, e.g. a background task)."""
    token = _scope.set(_Scope(job_id) if job_id else None)
    try:
        yield
    finally:
        _scope.reset(token)


def leave_job() -> None:
    """For a task started from a job that outlives it (call it inside the task's own context)."""
    _scope.set(None)


def current_job() -> str | None:
    scope = _scope.get()
    return scope.job_id if scope else None


class Outbox:
    def __init__(self, store: Store, retention: float = RETENTION):
        self.store = store
        self.retention = retention

    def key(self, method: str, destination: str) -> str | None:
        """This delivery's key within the current job, or None outside a job."""
        scope = _scope.get()
        if scope is None:
            return None
        slot = f"{method}|{destination}"
        scope.seen[slot] += 1
        digest = hashlib.sha256(f"{scope.job_id}|{slot}|{scope.seen[slot]}".encode()).hexdigest()[:32]
        return PREFIX + digest

    async def delivered(self, key: str | None) -> dict[str, Any] | None:
        """What Slack answered the first time, if this delivery already went out."""
        if key is None:
            return None
        try:
            return await self.store.get(key)
        except StoreError as exc:
            # Not knowing is no reason to leave the user without an answer: deliver (at least once).
            log.warning("outbox unreadable, delivering anyway: %s", exc)
            return None

    async def record(self, key: str | None, answer: dict[str, Any]) -> None:
        if key is None:
            return
        try:
            await self.store.put(key, answer, ttl=self.retention)
        except StoreError as exc:
            log.warning("outbox not recorded (a rerun of this job may post again): %s", exc)
