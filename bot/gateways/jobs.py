"""Work that runs after Slack has its ack, a bounded number at a time, in the order it came.

Inside an HTTP request the listener only queues a job; the web layer starts it once the response
has been handed to the server (`after_response`), so nothing that touches Kubernetes, Redis or
the Slack API can delay or precede the ack. Elsewhere (console, Socket Mode) jobs start at once.

Two queues, one contract:

* `Jobs` — in this process (the embedded store, the console, tests): an in-process FIFO that at
  most `concurrency` jobs leave at a time. It dies with the process, like the embedded store.
* `StreamQueue` — with Redis: a stream read through one consumer group by every replica's
  worker (`bot/shell/worker.py`), so any worker takes the next job; a job is acknowledged (and
  deleted) only once it has run, a dead worker's pending jobs are claimed again by whoever
  notices first, and a job that keeps killing its worker is dead-lettered after
  `max_deliveries`. The stream never grows past `max_len` unfinished jobs: a full queue refuses
  (Alertmanager gets 503 and retries) instead of trimming work nobody did.

Jobs are plain data (dataclasses, pydantic models) that cross processes pickled; `decode` only
rebuilds the project's own data classes, never an arbitrary callable, so whoever can write to
Redis still cannot make a worker run code.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import io
import logging
import pickle
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, copy_context
from dataclasses import dataclass, is_dataclass
from typing import Any, cast

import redis.asyncio as aioredis
from pydantic import BaseModel
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from bot.gateways.outbox import job_scope, leave_job

log = logging.getLogger(__name__)

# Runs one job. Its parameter is the chat edge's job union, which this layer cannot name.
Execute = Callable[[Any], Awaitable[None]]

_pending: ContextVar[list[object] | None] = ContextVar("payflow_pending_jobs", default=None)

DEFAULT_CONCURRENCY = 8
DEFAULT_QUEUE_MAX = 10_000


class QueueRefused(Exception):
    """The job was not queued (queue full or unreachable): nothing will run it."""


# --- jobs as bytes -------------------------------------------------------------------------

_OWN_MODULES = ("bot.", "handlers.")
_PLAIN_TYPES: frozenset[type] = frozenset(
    {dt.datetime, dt.date, dt.time, dt.timedelta, dt.timezone, set, frozenset}
)


def _allowed(obj: object) -> bool:
    if isinstance(obj, type) and obj in _PLAIN_TYPES:
        return True
    if not isinstance(obj, type):
        return False
    if obj.__module__ == "pydantic_core._pydantic_core" and obj.__name__ == "TzInfo":
        return True  # what pydantic parses "…Z" timestamps into
    own = obj.__module__.startswith(_OWN_MODULES)
    return own and (is_dataclass(obj) or issubclass(obj, BaseModel | enum.Enum))


_PLAIN_MODULES = ("datetime", "builtins", "pydantic_core._pydantic_core")


class _JobUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        # Checked before the import: importing a module runs it (`antigravity` opens a browser).
        if not (module.startswith(_OWN_MODULES) or module in _PLAIN_MODULES) or "." in name:
            raise pickle.UnpicklingError(f"{module}.{name} is not job data")
        obj = super().find_class(module, name)
        if not _allowed(obj):
            raise pickle.UnpicklingError(f"{module}.{name} is not job data")
        return obj


def encode(job: object) -> bytes:
    return pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)


def decode(data: bytes) -> object:
    return _JobUnpickler(io.BytesIO(data)).load()


# --- in-process ------------------------------------------------------------------------------


class Jobs:
    """Runs jobs on this process's event loop: at most `concurrency` at once, the rest wait in
    order in an in-process queue of at most `max_queued`."""

    def __init__(self, concurrency: int = DEFAULT_CONCURRENCY, max_queued: int = DEFAULT_QUEUE_MAX) -> None:
        self.execute: Execute | None = None  # set once the dispatcher exists
        self.concurrency = concurrency
        self.max_queued = max_queued
        self.on_outcome: Callable[[str], None] = lambda outcome: None
        self.timeout: float | None = None  # longest a job may run (settings.job_timeout_seconds)
        self._queue: asyncio.Queue[object] | None = None
        self._runners: list[asyncio.Task[None]] = []
        self._active = 0
        self._tasks: set[asyncio.Task[None]] = set()  # enqueuing tasks (subclasses)
        self._background: set[asyncio.Task[None]] = set()
        self._responding = 0  # requests whose jobs wait for their response to go out

    def submit(self, job: object) -> None:
        pending = _pending.get()
        if pending is not None:
            pending.append(job)
        else:
            self._start(job)

    @contextmanager
    def after_response(self) -> Iterator[None]:
        pending: list[object] = []
        token = _pending.set(pending)
        self._responding += 1
        try:
            yield
        finally:
            _pending.reset(token)
            self._responding -= 1
            for job in pending:
                self._start(job)

    async def enqueue(self, job: object) -> None:
        """Queue `job` now and return once it is as durable as this queue makes it (here: in this
        process's memory). Raises `QueueRefused` when it cannot be queued."""
        self._put(job)

    def _start(self, job: object) -> None:
        try:
            self._put(job)
        except QueueRefused as exc:
            self.on_outcome("refused")
            log.error("job %s not run: %s", type(job).__name__, exc)

    def _put(self, job: object) -> None:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._runners = [
                asyncio.get_running_loop().create_task(self._run_queue(), name=f"job-runner-{i}")
                for i in range(self.concurrency)
            ]
        if self._queue.qsize() >= self.max_queued:
            raise QueueRefused(f"{self._queue.qsize()} jobs already waiting")
        self._queue.put_nowait(job)

    async def _run_queue(self) -> None:
        assert self._queue is not None
        while True:
            job = await self._queue.get()
            self._active += 1
            try:
                await self.run(job, None, self.timeout)
            finally:
                self._active -= 1
                self._queue.task_done()

    async def run(self, job: object, job_id: str | None, timeout: float | None = None) -> str:
        """Run one job (outside any caller's context); its outcome: done, failed, timed_out."""
        assert self.execute is not None, "Jobs.execute is not wired"
        execute = self.execute

        async def guarded() -> str:
            from bot.gateways.slack import DeliveryFailed  # the gateway logged it: one line, not a traceback

            with job_scope(job_id):
                try:
                    await asyncio.wait_for(execute(job), timeout)
                    return "done"
                except TimeoutError:
                    log.error("job %s %s timed out after %.0f s", type(job).__name__, job_id or "", timeout)
                    return "timed_out"
                except DeliveryFailed:
                    return "failed"
                except Exception:
                    log.exception("background job failed: %s", type(job).__name__)
                    return "failed"

        outcome = await asyncio.get_running_loop().create_task(guarded(), context=copy_context())
        self.on_outcome(outcome)
        return outcome

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """A long-running task (rollout watch, bake, schedule): not waited for by `drain`, cancelled
        by `close`; what it was doing is kept in the store and resumed by the next process. It
        belongs to no job: its deliveries are not deduplicated against a rerun of the job."""
        context = copy_context()
        context.run(leave_job)
        task = asyncio.get_running_loop().create_task(self._guarded_background(coro), context=context)
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
        return self._active + len(self._tasks)

    @property
    def waiting(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def drain(self, timeout: float = 30.0) -> bool:
        """Wait for queued jobs and jobs in flight (including jobs they start); False if some
        were still there at the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._tasks or self._responding or self._active or self.waiting:
            if deadline - loop.time() <= 0:
                return False
            await asyncio.sleep(0.005)
        return True

    async def close(self) -> None:
        await self.drain()
        for task in [*self._runners, *self._background]:
            task.cancel()
        if self._runners or self._background:
            await asyncio.wait({*self._runners, *self._background}, timeout=5)


# --- with Redis: a stream with a consumer group -----------------------------------------------

# KEYS: stream; ARGV: max unfinished jobs, then the jobs' bytes. Refuses rather than trims:
# MAXLEN would silently drop jobs nobody ran. Acknowledged jobs are deleted, so XLEN is the
# backlog. Reply: per job its ID, or false when the queue was full.
_LUA_PUT = """
local room = tonumber(ARGV[1]) - redis.call('XLEN', KEYS[1])
local ids = {}
for i = 2, #ARGV do
  if room > 0 then
    ids[i - 1] = redis.call('XADD', KEYS[1], '*', 'job', ARGV[i])
    room = room - 1
  else
    ids[i - 1] = false
  end
end
return ids
"""

_UNAVAILABLE = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)


@dataclass(frozen=True)
class Delivery:
    """One job handed to a worker: its stream ID, its bytes and how often it was handed out."""

    id: str
    data: bytes | None  # None: deleted from the stream meanwhile
    deliveries: int


class StreamQueue:
    """The Redis side of the hand-off; shared by the web processes (put) and workers (the rest)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "payflow:",
        max_len: int = DEFAULT_QUEUE_MAX,
        dead_len: int = 1_000,
        timeout: float = 2.0,
        max_connections: int = 8,
    ) -> None:
        self.key = f"{prefix}jobs"
        self.dead_key = f"{prefix}jobs:dead"
        self.group = "workers"
        self.max_len = max_len
        self.dead_len = dead_len
        self.timeout = timeout
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=max(5.0, timeout * 5),
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),  # an XADD re-sent after a lost answer would queue twice
            protocol=2,
        )
        self.redis: aioredis.Redis = aioredis.Redis.from_pool(pool)
        self._put = self.redis.register_script(_LUA_PUT)

    async def put(self, job: object) -> str:
        """Add `job`; returns its ID once Redis has it. `QueueRefused` when full or unreachable."""
        [entry] = await self.put_many([job])
        if isinstance(entry, QueueRefused):
            raise entry
        return entry

    async def put_many(self, jobs: list[object]) -> list[str | QueueRefused]:
        """Add `jobs` in order in one round trip: per job its ID, or why it was refused."""
        data = [encode(job) for job in jobs]
        try:
            entries = await self._put(keys=[self.key], args=[self.max_len, *data])
        except (*_UNAVAILABLE, redis_errors.RedisError) as exc:
            refused = QueueRefused(f"job queue unavailable: {type(exc).__name__}")
            return [refused] * len(jobs)
        full = QueueRefused(f"job queue full ({self.max_len} jobs waiting)")
        return [_id(e) if e else full for e in entries]

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.key, self.group, id="0", mkstream=True)
        except redis_errors.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, consumer: str, count: int, block_ms: int) -> list[Delivery]:
        """New jobs, oldest first; waits up to `block_ms` for one."""
        reply = await self.redis.xreadgroup(
            self.group, consumer, {self.key: ">"}, count=count, block=block_ms
        )
        streams = cast("list[list[Any]]", reply or [])  # protocol=2: [[stream, [(id, fields), ...]], ...]
        return [Delivery(_id(i), _job(f), 1) for _, entries in streams for i, f in entries]

    async def own_pending(self, consumer: str, count: int) -> list[Delivery]:
        """Jobs this consumer was handed and never finished (its previous process was killed):
        taken again at once, each counted as one more delivery."""
        pending = await self.redis.xpending_range(
            self.key, self.group, "-", "+", count, consumername=consumer
        )
        return await self._claim(consumer, pending)

    async def claim_stale(self, consumer: str, idle_seconds: float, count: int) -> list[Delivery]:
        """Jobs another consumer has not touched for `idle_seconds`: it died (a live worker
        touches its jobs in flight far more often)."""
        reply = await self.redis.xautoclaim(
            self.key, self.group, consumer, int(idle_seconds * 1000), "0-0", count=count
        )
        entries, deleted = reply[1], (reply[2] if len(reply) > 2 else [])
        if deleted:  # deleted from the stream while pending: nothing left to run
            await self.redis.xack(self.key, self.group, *deleted)
        found = []
        for entry_id, fields in entries:
            [p] = await self.redis.xpending_range(self.key, self.group, entry_id, entry_id, 1)
            found.append(Delivery(_id(entry_id), _job(fields), int(p["times_delivered"])))
        return found

    async def _claim(self, consumer: str, pending: list[dict[str, Any]]) -> list[Delivery]:
        if not pending:
            return []
        await self.redis.xclaim(self.key, self.group, consumer, 0, [p["message_id"] for p in pending])
        return await self._fetch(pending, extra=1)

    async def _fetch(self, pending: list[dict[str, Any]], extra: int) -> list[Delivery]:
        found = []
        for p in pending:
            ident = _id(p["message_id"])
            entries = await self.redis.xrange(self.key, ident, ident)
            data = _job(entries[0][1]) if entries else None
            found.append(Delivery(ident, data, int(p["times_delivered"]) + extra))
        return found

    async def touch(self, consumer: str, ids: list[str]) -> None:
        """Reset the idle time of jobs in flight, so nobody claims them from a live worker."""
        if ids:
            await self.redis.xclaim(self.key, self.group, consumer, 0, [*ids], justid=True)

    async def done(self, job_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.key, self.group, job_id)
            pipe.xdel(self.key, job_id)
            await pipe.execute()

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Keep it (the newest `dead_len`) for a human to look at, out of the way of the others."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(
                self.dead_key,
                {"id": delivery.id, "reason": reason, "job": delivery.data or b""},
                maxlen=self.dead_len,
                approximate=True,
            )
            pipe.xack(self.key, self.group, delivery.id)
            pipe.xdel(self.key, delivery.id)
            await pipe.execute()

    async def forget_idle_consumers(self, idle_seconds: float) -> None:
        """Consumers of replicas long gone, with nothing pending: the group stays small."""
        for c in await self.redis.xinfo_consumers(self.key, self.group):
            if int(c.get("pending", 0)) == 0 and int(c.get("idle", 0)) > idle_seconds * 1000:
                await self.redis.xgroup_delconsumer(self.key, self.group, c["name"])

    async def close(self) -> None:
        await self.redis.aclose()


def _id(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _job(fields: Mapping[bytes | str, bytes | str] | None) -> bytes | None:
    """A stream entry's job bytes; None when the entry was deleted from the stream meanwhile."""
    data = (fields or {}).get(b"job")
    return data if isinstance(data, bytes) else None


class QueuedJobs(Jobs):
    """The web process's side with Redis: jobs go into the stream once the ack is out; workers
    (any replica's) run them."""

    BATCH = 200

    def __init__(
        self, queue: StreamQueue, on_refused: Callable[[object, str], Coroutine[Any, Any, None]] | None = None
    ):
        super().__init__()
        self.queue = queue
        self.on_refused = on_refused
        self.health_check: Callable[[], str] = lambda: "ok"
        self._batch: list[object] = []
        self._sending = False

    async def enqueue(self, job: object) -> None:
        await self.queue.put(job)

    def _start(self, job: object) -> None:
        """One sender at a time: the jobs acked while a round trip to Redis is under way go
        together in the next one. Under a burst that is a fraction of the CPU one XADD per ack
        would take from the acks (13 µs instead of ~100 µs per job, measured)."""
        self._batch.append(job)
        if not self._sending:
            self._sending = True
            task = asyncio.get_running_loop().create_task(self._enqueue_after_ack())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _enqueue_after_ack(self) -> None:
        try:
            while self._batch:
                await asyncio.sleep(0)  # let the acks of this turn add their jobs
                jobs, self._batch = self._batch[: self.BATCH], self._batch[self.BATCH :]
                started = time.monotonic()
                for job, entry in zip(jobs, await self.queue.put_many(jobs), strict=True):
                    if isinstance(entry, QueueRefused):
                        self.on_outcome("refused")
                        took = time.monotonic() - started
                        log.error("job %s not queued after %.1f s: %s", type(job).__name__, took, entry)
                        if self.on_refused is not None:  # told apart: the next batch does not wait
                            told = asyncio.get_running_loop().create_task(self.on_refused(job, str(entry)))
                            self._tasks.add(told)
                            told.add_done_callback(self._tasks.discard)
        finally:
            self._sending = False

    def health(self) -> str:
        return self.health_check()

    async def close(self) -> None:
        await self.drain()
        await self.queue.close()
