"""The audit trail: its entries and the hash chain that makes them tamper-evident.

Each entry is stored as flat string fields — its content, ``seq`` (1, 2, 3, …) and ``prev`` (the
previous entry's hash; `GENESIS` for #1) — plus ``hash`` = SHA-256 of the canonical
serialization of every stored field except ``hash`` itself (`chain_hash`). Both backends link
entries with `link` and read them back through one `verify_chain` walk, so the chain means the
same thing wherever it is kept.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Protocol

from bot.gateways.store.checks import check_utf8
from bot.gateways.store.values import AUDIT_BATCH, StoreError

GENESIS: Final = "0" * 64
"""The ``prev`` of the chain's first entry."""
_CHAIN_FIELDS: Final = ("seq", "prev", "hash")


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit trail; immutable once written, never trimmed."""

    actor: str  # Slack user ID, or "payflow-bot"
    action: str  # "scale", "status", "deploy.approve", ...
    outcome: str  # "ok", "denied", "failed", "refused", ...
    target: str | None = None  # service name
    detail: str = ""
    channel: str | None = None
    permalink: str | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))  # tz-aware UTC
    id: str = ""  # stream entry id, filled when read back
    # The chain, filled when read back; not part of equality (a written entry has none yet).
    seq: int = field(default=0, compare=False)
    prev: str = field(default="", compare=False)
    hash: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        # Normalise here so an entry reads back equal to what was written, on both backends.
        for name in ("actor", "action", "outcome"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"audit {name} must be a non-empty string")
        for name in ("target", "channel", "permalink"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"audit {name} must be a string or None")
            if value == "":
                object.__setattr__(self, name, None)  # stored as "" anyway; keep one spelling
        if not isinstance(self.detail, str) or not isinstance(self.id, str):
            raise ValueError("audit detail and id must be strings")
        if not isinstance(self.at, datetime) or self.at.utcoffset() is None:
            raise ValueError("audit 'at' must be a timezone-aware datetime")
        object.__setattr__(self, "at", self.at.astimezone(UTC))
        for name in ("actor", "action", "outcome", "target", "detail", "channel", "permalink", "id"):
            check_utf8(getattr(self, name) or "", f"audit {name}")

    def _fields(self) -> dict[str, str]:
        return {
            "actor": self.actor,
            "action": self.action,
            "outcome": self.outcome,
            "target": self.target or "",
            "detail": self.detail,
            "channel": self.channel or "",
            "permalink": self.permalink or "",
            "at": self.at.isoformat(),
        }

    @classmethod
    def _from_fields(cls, entry_id: str, fields: dict[str, str]) -> AuditEntry:
        try:
            return cls(
                actor=fields["actor"],
                action=fields["action"],
                outcome=fields["outcome"],
                target=fields.get("target") or None,
                detail=fields.get("detail", ""),
                channel=fields.get("channel") or None,
                permalink=fields.get("permalink") or None,
                at=datetime.fromisoformat(fields["at"]),
                id=entry_id,
                seq=int(fields.get("seq") or 0),
                prev=fields.get("prev", ""),
                hash=fields.get("hash", ""),
            )
        except (KeyError, ValueError) as exc:
            raise StoreError(f"audit entry {entry_id} is malformed: {exc}") from None


def chain_hash(fields: dict[str, str]) -> str:
    """SHA-256 (hex) of an audit entry: every stored field except ``hash``, as a JSON object with
    sorted keys, no whitespace and UTF-8 text. Recompute it from an exported line by dropping
    ``id`` and ``hash``."""
    body = {k: v for k, v in fields.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def link(contents: Iterable[dict[str, str]], prev: str, seq: int) -> list[dict[str, str]]:
    """``contents`` as the chain's next entries after the tip (hash ``prev``, number ``seq``):
    each gets the next seq, the previous entry's hash as prev, and its own hash. Both backends
    link with this, so a chain written by one verifies on the other."""
    linked: list[dict[str, str]] = []
    for content in contents:
        seq += 1
        fields = {**content, "seq": str(seq), "prev": prev}
        fields["hash"] = chain_hash(fields)
        linked.append(fields)
        prev = fields["hash"]
    return linked


def audit_line(entry_id: str, fields: dict[str, str]) -> str:
    """One exported entry: a JSON object of its id and stored fields, on one line."""
    return json.dumps({"id": entry_id, **fields}, ensure_ascii=False, separators=(",", ":"))


def id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _link_problem(fields: dict[str, str], prev_hash: str, prev_seq: int, prev_id: str | None) -> str | None:
    """Why this entry does not continue the chain, or None."""
    if any(name not in fields for name in _CHAIN_FIELDS):
        return "it has no seq/prev/hash: it was added or rewritten outside the bot"
    try:
        seq = int(fields["seq"])
    except ValueError:
        return f"its seq {fields['seq']!r} is not a number: it was altered"
    if fields["hash"] != chain_hash(fields):
        return "its content does not match its hash: it was altered"
    if seq > prev_seq + 1:
        missing = seq - prev_seq - 1
        span = f"#{prev_seq + 1}" if missing == 1 else f"#{prev_seq + 1}–#{seq - 1}"
        return f"{missing} entr{'y' if missing == 1 else 'ies'} before it ({span}) are missing: deleted"
    if seq != prev_seq + 1:
        return f"its seq #{seq} does not follow #{prev_seq}: entries were reordered or replayed"
    if fields["prev"] != prev_hash:
        before = f"entry {prev_id}" if prev_id else "the chain's start"
        return f"its prev-hash does not match {before}: one of the two was altered"
    return None


@dataclass(frozen=True)
class AuditVerdict:
    """What `Store.verify_audit` found. ``broken_id`` is the first entry that breaks the chain."""

    ok: bool
    checked: int  # chained entries verified
    broken_id: str | None = None
    problem: str | None = None
    first_seq: int = 0  # where the kept window starts (the anchor's seq + 1)
    last_seq: int = 0
    unchained: int = 0  # entries written before the chain existed (only ever at the start)

    def report(self) -> str:
        if not self.ok:
            return f"audit trail BROKEN at entry {self.broken_id}: {self.problem}"
        if not self.checked:
            text = "audit trail ok: no chained entries"
        else:
            text = f"audit trail ok: {self.checked} entries, #{self.first_seq}–#{self.last_seq}, chain intact"
        if self.unchained:
            text += f" ({self.unchained} older entries predate the chain and are not covered)"
        return text


class PageReader(Protocol):
    """`Store._audit_page`: entries from ``start`` oldest first, and the chain's metadata."""

    def __call__(
        self, start: str, count: int, *, with_meta: bool
    ) -> Awaitable[tuple[list[tuple[str, dict[str, str]]], dict[str, str]]]: ...


async def verify_chain(read_page: PageReader) -> AuditVerdict:
    """The walk behind `Store.verify_audit`, over whichever backend ``read_page`` reads."""
    page, meta = await read_page("-", AUDIT_BATCH, with_meta=True)
    try:
        prev_seq, tip_seq = int(meta.get("anchor_seq", 0)), int(meta.get("tip_seq", 0))
    except ValueError:
        problem = "the chain's metadata (anchor/tip seq) is not a number: it was altered"
        return AuditVerdict(False, 0, meta.get("tip_id", "(chain metadata)"), problem)
    prev_hash = meta.get("anchor_hash", GENESIS)
    first_seq = prev_seq + 1
    prev_id: str | None = meta.get("anchor_id")
    checked = unchained = 0
    may_be_unchained = "anchor_hash" not in meta
    while page:
        for entry_id, fields in page:
            if may_be_unchained and not any(name in fields for name in _CHAIN_FIELDS):
                unchained += 1
                prev_id = entry_id
                continue
            may_be_unchained = False
            broken = _link_problem(fields, prev_hash, prev_seq, prev_id)
            if broken:
                return AuditVerdict(False, checked, entry_id, broken, first_seq, prev_seq, unchained)
            prev_hash, prev_seq, prev_id = fields["hash"], int(fields["seq"]), entry_id
            checked += 1
        if len(page) < AUDIT_BATCH:
            break
        page, _ = await read_page("(" + page[-1][0], AUDIT_BATCH, with_meta=False)
    tip_id = meta.get("tip_id", "?")
    if prev_seq < tip_seq:  # entries appended since the tip was read only come after it
        missing = tip_seq - prev_seq
        problem = f"the newest {missing} entr{'y' if missing == 1 else 'ies'} (up to #{tip_seq}) are missing"
        return AuditVerdict(False, checked, tip_id, problem, first_seq, prev_seq, unchained)
    if prev_seq == tip_seq and tip_seq and prev_hash != meta.get("tip_hash"):
        problem = "the newest entry is not the one the chain's tip recorded: it was replaced"
        return AuditVerdict(False, checked, prev_id, problem, first_seq, prev_seq, unchained)
    return AuditVerdict(True, checked, None, None, first_seq, prev_seq, unchained)
