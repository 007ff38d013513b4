"""A blue-green change (deploy or rollback) as one persisted record with explicit states.

Every transition is one compare-and-set on the record's `state` in the store, so two replicas,
two watchers or fifty clicks can never both move it: exactly one wins, the others read who did.
The record holds everything the approver saw, so the click can re-check the cluster against it.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

from bot.config import Color
from bot.messages import MessageRef
from bot.store import Store

REQUESTED = "requested"
ROLLING_OUT = "rolling_out"
SMOKE_TESTING = "smoke_testing"
AWAITING_APPROVAL = "awaiting_approval"
SWITCHING = "switching"
BAKING = "baking"
DONE = "done"
FAILED = "failed"
REJECTED = "rejected"
EXPIRED = "expired"
VOIDED = "voided"
CANCELLED = "cancelled"
ROLLBACK_PROPOSED = "rollback_proposed"

# Where each state may go; anything else is a bug and is refused.
TRANSITIONS: dict[str, frozenset[str]] = {
    REQUESTED: frozenset({ROLLING_OUT, FAILED, CANCELLED}),
    ROLLING_OUT: frozenset({SMOKE_TESTING, FAILED, CANCELLED}),
    SMOKE_TESTING: frozenset({AWAITING_APPROVAL, FAILED, CANCELLED}),
    AWAITING_APPROVAL: frozenset({SWITCHING, REJECTED, EXPIRED, CANCELLED, VOIDED}),
    SWITCHING: frozenset({BAKING, VOIDED}),
    BAKING: frozenset({DONE, ROLLBACK_PROPOSED}),
}
BEFORE_SWITCH = frozenset({REQUESTED, ROLLING_OUT, SMOKE_TESTING, AWAITING_APPROVAL})
IN_FLIGHT = BEFORE_SWITCH | {SWITCHING, BAKING}
TERMINAL = frozenset({DONE, FAILED, REJECTED, EXPIRED, VOIDED, CANCELLED, ROLLBACK_PROPOSED})

BOT = "payflow-bot"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


@dataclass(frozen=True)
class Change:
    id: str
    kind: str  # deploy | rollback
    service: str
    from_color: Color
    to_color: Color
    from_image: str | None
    to_image: str
    replicas: int
    requester: str
    reason: str
    channel: str
    state: str = REQUESTED
    created_at: str = field(default_factory=now_iso)
    expires_at: str | None = None
    traffic_object: str = ""
    traffic_rv: str = ""
    progress: MessageRef | None = None
    approval: MessageRef | None = None
    approval_link: str | None = None
    smoke: tuple[str, ...] = ()
    decided_by: str | None = None
    decided_at: str | None = None
    switched_at: str | None = None
    error: str | None = None
    break_glass: str | None = None
    rollback_of: str | None = None
    proposed_rollback: str | None = None
    bake_checks: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return change_key(self.id)

    @property
    def version(self) -> str:
        return version_of(self.to_image)

    @property
    def from_version(self) -> str:
        return version_of(self.from_image) if self.from_image else "?"

    @property
    def in_flight(self) -> bool:
        return self.state in IN_FLIGHT

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["smoke"] = list(self.smoke)
        record["bake_checks"] = list(self.bake_checks)
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Change:
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in record.items() if k in known}
        for name in ("progress", "approval"):
            if data.get(name):
                data[name] = MessageRef(**data[name])
        data["smoke"] = tuple(data.get("smoke") or ())
        data["bake_checks"] = tuple(data.get("bake_checks") or ())
        return cls(**data)


def version_of(image: str) -> str:
    if "@" in image:
        return image.split("@", 1)[1]
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def change_key(change_id: str) -> str:
    return f"change:{change_id}"


def lock_key(service: str) -> str:
    """The change lock: at most one change in flight per service; expires if a bot dies with it."""
    return f"changelock:{service}"


def new_id() -> str:
    return "chg-" + secrets.token_hex(4)


class Transition(Exception):
    """Someone else moved the change first; `current` is what it is now (None if gone)."""

    def __init__(self, current: Change | None):
        super().__init__(current.state if current else "missing")
        self.current = current


class Changes:
    """Change records and change locks in the store."""

    def __init__(self, store: Store, lock_ttl: float):
        self.store = store
        self.lock_ttl = lock_ttl

    async def get(self, change_id: str) -> Change | None:
        record = await self.store.get(change_key(change_id))
        return Change.from_record(record) if record else None

    async def all(self) -> list[Change]:
        records = await self.store.scan("change:")
        return sorted((Change.from_record(r) for r in records.values()), key=lambda c: c.created_at)

    async def holder(self, service: str) -> Change | None:
        lock = await self.store.get(lock_key(service))
        return await self.get(lock["change"]) if lock else None

    async def open(self, change: Change) -> bool:
        """Take the service's change lock and write the record; False if another change holds it."""
        if not await self.store.create(lock_key(change.service), {"change": change.id}, ttl=self.lock_ttl):
            return False
        await self.store.put(change.key, change.to_record())
        return True

    async def refresh_lock(self, change: Change) -> None:
        await self.store.compare_and_set(
            lock_key(change.service), "change", change.id, {"change": change.id}, ttl=self.lock_ttl
        )

    async def release(self, change: Change) -> None:
        await self.store.delete(lock_key(change.service), if_field="change", equals=change.id)

    async def move(self, change: Change, to: str, **updates: Any) -> Change:
        """Compare-and-set from `change.state` to `to`; raises Transition if someone else moved it."""
        if to != change.state and to not in TRANSITIONS.get(change.state, frozenset()):
            raise ValueError(f"{change.id}: {change.state} → {to} is not a transition")
        moved = replace(change, state=to, **updates)
        result = await self.store.compare_and_set(change.key, "state", change.state, moved.to_record())
        if not result.won:
            raise Transition(Change.from_record(result.current) if result.current else None)
        if to in TERMINAL:
            await self.release(moved)
        return moved

    async def update(self, change: Change, **updates: Any) -> Change:
        """Change fields, not the state; still conditional on the state we know."""
        return await self.move(change, change.state, **updates)

    async def lease(self, change_id: str, phase: str, owner: str, ttl: float) -> bool:
        """One watcher per change and phase (prepare, switch, bake) across processes: whoever
        holds `watch:<id>:<phase>` drives it. Phases have their own leases so that the bake can
        start while the approval's watcher is still noticing the click."""
        key = f"watch:{change_id}:{phase}"
        if await self.store.create(key, {"owner": owner}, ttl=ttl):
            return True
        return bool(await self.store.compare_and_set(key, "owner", owner, {"owner": owner}, ttl=ttl))

    async def unlease(self, change_id: str, phase: str, owner: str) -> None:
        await self.store.delete(f"watch:{change_id}:{phase}", if_field="owner", equals=owner)
