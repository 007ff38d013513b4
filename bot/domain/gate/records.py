"""Change records and change locks in the store, and the lease holder: the only writer of a change.

Every write is one compare-and-set on the record's `version`; the loser gets `Moved` with the
record as it is now. A `Holder` owns one phase of one change: it writes through the version it
last wrote, extends its lease with every write and renews it in the background every third of
the lease, and stops its task when a renewal fails — so a worker that paused past its lease
finds, at its very next write, that someone else owns the change, and writes nothing.

Two indexes keep every read bounded (the sweep runs on every worker every half lease; finished
records pile up for `RETENTION_SECONDS`): `IN_FLIGHT` holds the changes not yet finished, and
`FINISHED` (and one per service) the newest `FINISHED_KEEP` finished ones, by creation time.
The index is written FIRST and cleaned LAST: a change enters `IN_FLIGHT` before its record is
created and leaves it only after its record is terminal and filed in `FINISHED`. So a crash
between the two writes leaves an entry too many, never one too few, and `in_flight` repairs it
on its next read (a terminal record is filed and dropped; an entry whose record never came is
dropped after `ORPHAN_GRACE`). No scan of every record is needed, ever — except `reindex`, once
per worker start, for records written before the indexes existed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from enum import Enum
from typing import Any

from bot.domain.gate.record import (
    PHASES,
    TERMINAL,
    TRANSITIONS,
    Change,
    Lease,
    change_key,
    lock_key,
    parse_iso,
)
from bot.gateways.store import Store, StoreUnavailable

log = logging.getLogger(__name__)

PROCESS = secrets.token_hex(4)
RETENTION_SECONDS = 30 * 86400  # a finished change stays listable (and auditable) this long


class _Keep(Enum):
    """`Holder.write`'s default lease: the one held, extended."""

    KEEP = "keep"


IN_FLIGHT_INDEX = "changes:in_flight"
FINISHED_INDEX = "changes:finished"
FINISHED_KEEP = 50  # finished changes each finished index keeps (newest by creation time)
IN_FLIGHT_CAP = 10_000  # entries one sweep reads: at most one change per service is in flight
ORPHAN_GRACE = 300.0  # seconds before an in-flight entry whose record never came is dropped


def finished_index(service: str | None = None) -> str:
    return FINISHED_INDEX if service is None else f"{FINISHED_INDEX}:{service}"


def _score(change: Change) -> float:
    return parse_iso(change.created_at).timestamp()


def new_owner() -> str:
    return f"{PROCESS}:{secrets.token_hex(4)}"


class Moved(Exception):
    """Someone wrote the record first; `current` is what it is now (None if it is gone)."""

    def __init__(self, current: Change | None):
        super().__init__(f"{current.state} v{current.version}" if current else "missing")
        self.current = current


class LeaseLost(Moved):
    """This holder no longer owns the change: its lease was taken over or handed on."""


class Records:
    def __init__(self, store: Store, *, lock_ttl: float, lease_seconds: float):
        self.store = store
        self.lock_ttl = lock_ttl
        self.lease_seconds = lease_seconds

    async def get(self, change_id: str) -> Change | None:
        record = await self.store.get(change_key(change_id))
        return Change.from_record(record) if record else None

    async def all(self) -> list[Change]:
        """Every record kept (a scan: for rare reads only; the sweep and `changes` use the indexes)."""
        records = await self.store.scan("change:")
        return sorted((Change.from_record(r) for r in records.values()), key=lambda c: c.created_at)

    async def in_flight(self) -> list[Change]:
        """The changes in flight, oldest first: one read of the index, one of their records.
        Repairs what a crash between a record write and its index update left behind."""
        entries = await self.store.index_range(IN_FLIGHT_INDEX, IN_FLIGHT_CAP, newest_first=False)
        if len(entries) == IN_FLIGHT_CAP:
            log.error(
                "%d changes in flight or more: this sweep reads the oldest %d", IN_FLIGHT_CAP, IN_FLIGHT_CAP
            )
        records = await self.store.get_many([change_key(i) for i, _ in entries])
        found = []
        for change_id, score in entries:
            record = records.get(change_key(change_id))
            if record is None:  # created-and-crashed before the record, or expired long since
                if time.time() - score > ORPHAN_GRACE:
                    await self.store.index_remove(IN_FLIGHT_INDEX, change_id)
                continue
            change = Change.from_record(record)
            if change.in_flight:
                found.append(change)
            else:  # finished, and the worker died before filing it
                await self._file_finished(change)
        return found

    async def recent(self, service: str | None = None, limit: int = 5) -> list[Change]:
        """The newest `limit` finished changes (of `service`), newest first: one read of the
        bounded index, one of their records; expired ones leave the index as they are seen."""
        index = finished_index(service)
        entries = await self.store.index_range(index, FINISHED_KEEP, newest_first=True)
        records = await self.store.get_many([change_key(i) for i, _ in entries])
        found: list[Change] = []
        for change_id, _ in entries:
            record = records.get(change_key(change_id))
            if record is None:
                await self.store.index_remove(index, change_id)
            elif len(found) < limit:
                found.append(Change.from_record(record))
        return found

    async def latest(self, service: str | None = None) -> list[Change]:
        """The changes in flight and the newest finished ones (of `service`), from the indexes:
        what a chart's switch markers and an alert's "switched lately?" need, never a scan."""
        flying = [c for c in await self.in_flight() if service in (None, c.service)]
        return flying + await self.recent(service, FINISHED_KEEP)

    async def _file_finished(self, change: Change) -> None:
        """File a terminal change in the finished indexes, THEN take it out of the in-flight one."""
        for index in (finished_index(), finished_index(change.service)):
            await self.store.index_add(index, change.id, _score(change), keep=FINISHED_KEEP)
        await self.store.index_remove(IN_FLIGHT_INDEX, change.id)

    async def reindex(self) -> int:
        """Index every record kept (one scan, once per worker start): records written before the
        indexes existed must not be forgotten by the sweep. Returns how many were indexed."""
        changes = await self.all()
        for change in changes:
            if change.in_flight:
                await self.store.index_add(IN_FLIGHT_INDEX, change.id, _score(change))
            else:
                await self._file_finished(change)
        return len(changes)

    async def holder(self, service: str) -> Change | None:
        lock = await self.store.get(lock_key(service))
        return await self.get(lock["change"]) if lock else None

    async def open(self, change: Change) -> bool:
        """Take the service's change lock, then create the record; False if another change holds it."""
        if not await self.store.create(lock_key(change.service), {"change": change.id}, ttl=self.lock_ttl):
            return False
        await self.store.index_add(IN_FLIGHT_INDEX, change.id, _score(change))  # first: see the top
        await self.store.create(change.key, change.to_record())
        return True

    async def write(self, change: Change, **updates: Any) -> Change:
        """Compare-and-set on `change.version`; raises `Moved` if the record is not that version."""
        to = updates.get("state", change.state)
        if to != change.state and to not in TRANSITIONS.get(change.state, frozenset()):
            raise ValueError(f"{change.id}: {change.state} → {to} is not a transition")
        new = replace(change, version=change.version + 1, **updates)
        if new.state in TERMINAL and new.target:
            new = replace(new, target="")  # what the change acted on is not kept past its end
        ttl = RETENTION_SECONDS if new.state in TERMINAL else None
        result = await self.store.compare_and_set(change.key, "version", change.version, new.to_record(), ttl)
        if not result.won:
            raise Moved(Change.from_record(result.current) if result.current else None)
        if new.state in TERMINAL:
            await self._file_finished(new)
            await self.release_lock(new)
        return new

    async def refresh_lock(self, change: Change) -> None:
        await self.store.compare_and_set(
            lock_key(change.service), "change", change.id, {"change": change.id}, ttl=self.lock_ttl
        )

    async def release_lock(self, change: Change) -> None:
        await self.store.delete(lock_key(change.service), if_field="change", equals=change.id)

    def lease(self, phase: str, owner: str | None = None) -> Lease:
        return Lease(phase, owner or new_owner(), time.time() + self.lease_seconds)

    async def take(self, change_id: str, phase: str, owner: str | None = None) -> Holder | None:
        """The lease of `phase`, if the change is in that phase and its lease is free, expired, or
        already `owner`'s (handed to it); None when someone else holds it or the change moved on."""
        change = await self.get(change_id)
        if change is None or PHASES.get(change.state) != phase:
            return None
        held = change.lease
        if held is not None and not held.expired() and held.owner != owner:
            return None
        if held is not None and held.owner == owner and held.phase == phase and not held.expired():
            return Holder(self, change)
        try:
            change = await self.write(change, lease=self.lease(phase, owner))
        except Moved:
            return None
        if held is not None and held.owner != owner:
            log.warning("%s: took over the %s lease of %s (expired)", change.id, phase, held.owner)
        return Holder(self, change)


class Holder:
    """The one writer of a change while its lease holds."""

    def __init__(self, records: Records, change: Change):
        assert change.lease is not None
        self.records = records
        self.change = change
        self.owner = change.lease.owner
        self.lost = False
        self._writing = asyncio.Lock()

    def time_left(self) -> float:
        lease = self.change.lease
        return lease.until - time.time() if lease and lease.owner == self.owner else 0.0

    async def write(self, lease: Lease | _Keep | None = _Keep.KEEP, **updates: Any) -> Change:
        """Write as the holder; every write extends the lease. `lease=None` releases it, another
        `Lease` hands the change on (to a phase started next)."""
        async with self._writing:
            held = self.change.lease
            if self.lost or held is None or held.owner != self.owner:
                self.lost = True
                raise LeaseLost(self.change)
            if lease is _Keep.KEEP:
                lease = replace(held, until=time.time() + self.records.lease_seconds)
            try:
                self.change = await self.records.write(self.change, lease=lease, **updates)
            except Moved as moved:
                self.lost = True
                raise LeaseLost(moved.current) from None
            return self.change

    async def renew(self) -> None:
        await self.write()
        with contextlib.suppress(StoreUnavailable):
            await self.records.refresh_lock(self.change)

    async def _renew_forever(self, task: asyncio.Task[Any]) -> None:
        """Renew every third of the lease; stop the holder's task the moment it cannot hold on."""
        every = self.records.lease_seconds / 3
        while True:
            await asyncio.sleep(every)
            if self.change.lease is None or self.change.lease.owner != self.owner:
                return  # released or handed on: nothing left to renew
            try:
                await self.renew()
            except LeaseLost:
                log.warning("%s: lease lost; this worker stops", self.change.id)
            except StoreUnavailable as exc:
                if self.time_left() > every + 1:
                    log.warning("%s: lease renewal failed, retrying: %s", self.change.id, exc)
                    continue
                log.error("%s: cannot renew the lease before it lapses; this worker stops", self.change.id)
            else:
                continue
            self.lost = True
            task.cancel()
            return


@contextlib.asynccontextmanager
async def holding(holder: Holder) -> AsyncIterator[Holder]:
    """Run a phase as `holder`: renewed in the background; a lost lease or a store outage ends the
    phase quietly (the record says where it stands, the next holder resumes from there)."""
    task = asyncio.current_task()
    assert task is not None
    renewer = asyncio.create_task(holder._renew_forever(task))
    try:
        yield holder
    except asyncio.CancelledError:
        if not holder.lost or task.uncancel() > 0:
            raise  # shutdown (too): the lease is released below, or lapses; another worker resumes
        log.info("%s: stopped, the lease was lost", holder.change.id)
    except LeaseLost as lost:
        log.info("%s moved on without this worker: %s", holder.change.id, lost)
    except StoreUnavailable as exc:
        log.error(
            "%s: store unavailable, this worker stops (the next one resumes): %s", holder.change.id, exc
        )
    finally:
        renewer.cancel()
        await asyncio.gather(renewer, return_exceptions=True)
        if not holder.lost and holder.change.lease is not None and holder.change.lease.owner == holder.owner:
            with contextlib.suppress(Moved, StoreUnavailable, TimeoutError):
                # brief: at shutdown the process must not linger; an unreleased lease just lapses
                await asyncio.wait_for(holder.write(lease=None), timeout=1.0)
