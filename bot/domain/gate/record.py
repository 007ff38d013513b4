"""The record of one approval-gated change: its states, its lease, its version.

`version` is the fencing token: every write is a compare-and-set on it (bot/domain/gate/records.py), so
a writer holding a stale copy — a worker that paused past its lease, a second replica, a losing
click — can never overwrite a newer record. `lease` says which phase runs and who runs it; only
the holder writes while it is valid, and only an expired lease may be taken over.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal

from bot.base.messages import MessageRef
from bot.config.catalog import Color

PREPARING = "preparing"  # the kind's prepare phase: for a deploy, roll out and smoke test
AWAITING_APPROVAL = "awaiting_approval"
APPLYING = "applying"  # the one conditional write (a deploy's traffic switch)
VERIFYING = "verifying"  # watching the result (a deploy's bake)
NEEDS_DECISION = "needs_decision"  # verification was inconclusive: a human keeps or rolls back
CLEANING_UP = "cleaning_up"
DONE = "done"
FAILED = "failed"
REJECTED = "rejected"
EXPIRED = "expired"
VOIDED = "voided"
CANCELLED = "cancelled"
ROLLBACK_PROPOSED = "rollback_proposed"  # ended by an SLO breach or a human: a rollback change follows

# Where each state may go; anything else is a bug and is refused.
TRANSITIONS: dict[str, frozenset[str]] = {
    PREPARING: frozenset({AWAITING_APPROVAL, FAILED, CANCELLED}),
    AWAITING_APPROVAL: frozenset({APPLYING, REJECTED, EXPIRED, CANCELLED}),
    APPLYING: frozenset({VERIFYING, VOIDED}),
    VERIFYING: frozenset({CLEANING_UP, NEEDS_DECISION, ROLLBACK_PROPOSED}),
    NEEDS_DECISION: frozenset({CLEANING_UP, ROLLBACK_PROPOSED}),
    CLEANING_UP: frozenset({DONE}),
}
BEFORE_APPLY = frozenset({PREPARING, AWAITING_APPROVAL})
TERMINAL = frozenset({DONE, FAILED, REJECTED, EXPIRED, VOIDED, CANCELLED, ROLLBACK_PROPOSED})
IN_FLIGHT = frozenset(TRANSITIONS) - TERMINAL
# The phase that acts on a change in each state; a state without one waits for a person.
PHASES: dict[str, str] = {
    PREPARING: "prepare",
    APPLYING: "apply",
    VERIFYING: "verify",
    CLEANING_UP: "clean_up",
}

BOT = "payflow-bot"
_ID = re.compile(r"chg-[0-9a-f]{8}")

CheckResult = Literal["ok", "breach", "no_data"]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


def new_id() -> str:
    return "chg-" + secrets.token_hex(4)


def is_change_id(text: object) -> bool:
    """A button value or command argument that can name a change (anything else is refused
    before it reaches the store: a tampered value must not become a key)."""
    return isinstance(text, str) and _ID.fullmatch(text) is not None


def version_of(image: str) -> str:
    if "@" in image:
        return image.split("@", 1)[1]
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


class Failed(Exception):
    """The prepare phase found the change cannot go ahead; `str()` says why."""


class Voided(Exception):
    """The apply phase refused to write: what it acts on is not what the approver saw."""


class Unanswered(Exception):
    """The one write was sent and its answer never came: it may have landed. Only what it acts on can
    say, once the request is surely over (the engine settles it after the lease)."""


@dataclass(frozen=True)
class Lease:
    """Who runs which phase, until when (wall clock, shared by every replica)."""

    phase: str
    owner: str
    until: float

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.until


@dataclass(frozen=True)
class Check:
    """One verification check: its verdict and the line shown to people."""

    result: CheckResult
    text: str


@dataclass(frozen=True)
class Change:
    id: str
    kind: str  # deploy | rollback (blue-green) | user_unlock; a kind plugs in via KINDS (phases.py)
    service: str  # what the change lock is per: a catalog service, or a kind's own subject key
    # the blue-green subject (None / empty for other kinds)
    from_color: Color | None = None
    to_color: Color | None = None
    from_image: str | None = None
    to_image: str = ""
    replicas: int = 0
    requester: str = ""
    reason: str = ""
    channel: str = ""
    state: str = PREPARING
    version: int = 0
    lease: Lease | None = None
    step: str = "starting"  # what the current phase is doing, for people
    created_at: str = field(default_factory=now_iso)
    expires_at: str | None = None
    traffic_object: str = ""
    progress: MessageRef | None = None
    approval: MessageRef | None = None
    approval_link: str | None = None
    decision: MessageRef | None = None  # the "keep or roll back?" question after an inconclusive bake
    question: str | None = None  # why the bake could not decide
    smoke: tuple[str, ...] = ()
    decided_by: str | None = None
    decided_at: str | None = None
    settled_by: str | None = None  # who kept it, or asked for its rollback, after the bake
    switched_at: str | None = None
    error: str | None = None
    break_glass: str | None = None
    rollback_of: str | None = None
    proposed_rollback: str | None = None
    checks: tuple[Check, ...] = ()
    # another kind's subject: `subject` is what people see (a masked email), `target` what the
    # apply acts on (the address itself); `target` is scrubbed once the change is finished.
    subject: str = ""
    target: str = ""

    @property
    def key(self) -> str:
        return change_key(self.id)

    @property
    def image_version(self) -> str:
        return version_of(self.to_image) if self.to_image else "?"

    @property
    def from_version(self) -> str:
        return version_of(self.from_image) if self.from_image else "?"

    @property
    def in_flight(self) -> bool:
        return self.state in IN_FLIGHT

    @property
    def is_rollback(self) -> bool:
        return self.kind == "rollback"

    @property
    def bake_checks(self) -> tuple[str, ...]:
        return tuple(c.text for c in self.checks)

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["smoke"] = list(self.smoke)
        record["checks"] = [asdict(c) for c in self.checks]
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Change:
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in record.items() if k in known}
        for name in ("progress", "approval", "decision"):
            if data.get(name):
                data[name] = MessageRef(**data[name])
        if data.get("lease"):
            data["lease"] = Lease(**data["lease"])
        data["smoke"] = tuple(data.get("smoke") or ())
        data["checks"] = tuple(Check(**c) for c in data.get("checks") or ())
        return cls(**data)


@dataclass(frozen=True)
class Wording:
    """How a kind of change speaks: the engine's messages are the same for every kind, their
    words are the kind's (a switch moves traffic, an unlock unlocks a user)."""

    title: str  # "Deploy of *api-gateway* `v1.2.3` to green"
    question: str  # the approve button's confirmation text
    confirm: tuple[str, str]  # the confirmation's title and its OK button
    done: str  # "traffic now on green `v1.2.3` (was blue `v1.2.2`)"
    unchanged: str  # "traffic stays on blue", said when it is rejected or cancelled
    not_done: str  # "traffic was not switched", said when an approved change is voided
    summary: str  # one line for the audit trail and `/payflow changes`
    fields: tuple[tuple[str, str], ...]  # the change card's fields
    evidence: str = "Smoke test"  # what the prepare phase found, shown to the approver
    action: str = "switch"  # the one write, as the audit trail names it
    status: str = "switched"  # said in the progress message once it is done
    after_failure: str = ""  # what a failed prepare left behind
    after_cancel: str = ""


# Filled by each kind's module when it is imported (bluegreen, user_unlock).
WORDINGS: dict[str, Callable[[Change], Wording]] = {}


def wording(change: Change) -> Wording:
    return WORDINGS[change.kind](change)


def change_key(change_id: str) -> str:
    return f"change:{change_id}"


def lock_key(service: str) -> str:
    """The change lock: at most one change in flight per service; expires if every bot dies."""
    return f"changelock:{service}"
