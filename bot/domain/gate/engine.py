"""The gate: one engine runs every approval-gated change through its phases, each under a lease.

    preparing ─(prepare)→ awaiting_approval ─(click)→ applying ─(apply)→ verifying ─(verify)→
        cleaning_up ─(clean_up)→ done
    and: failed · rejected · expired · cancelled · voided · needs_decision (a person keeps or
    rolls back) · rollback_proposed (an SLO breach or a person asked for the rollback)

Who may write, when:
- a phase's worker, while it holds that phase's lease (bot/domain/gate/records.py `Holder`);
- a decision (approve, reject, cancel, expire, keep, roll back): one compare-and-set on the
  record's version from the state it decides. The approve that wins takes the apply lease in the
  same write, so no sweep can act on the change between the click and the switch;
- a sweep (every worker, every half lease) only starts the phase of a change whose lease is
  free or expired, and expires approvals nobody decided.

What a phase does is the kind's (`Kind`, registered in `KINDS` by `Change.kind`, phases.py): blue-green
deploys and rollbacks today (bot/domain/gate/bluegreen.py). Another kind (a user unlock) plugs in its
own prepare, recheck + apply (the one conditional write), applied (settling a dead click),
schedule + check (verify; a zero schedule skips it), clean_up and revert; the engine keeps the
leases, the decisions, the audit and the sweep. The record's subject fields and the card titles
(bot/domain/gate/messages.py) are blue-green's today: a second kind adds its own there.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from bot.domain.gate.decisions import Decisions
from bot.domain.gate.record import AWAITING_APPROVAL, NEEDS_DECISION, PHASES, parse_iso
from bot.gateways.store import StoreUnavailable

log = logging.getLogger(__name__)


class Gate(Decisions):
    """Every approval-gated change: its phases (phases.py), its decisions (decisions.py), and the
    sweep that resumes a phase whose worker died."""

    async def sweep(self) -> int:
        """Start the phase of every change whose lease is free or expired; expire due approvals.
        Returns how many phases it started."""
        started = 0
        for change in await self.records.in_flight():  # the index: never every record kept
            await self.records.refresh_lock(change)
            free = change.lease is None or change.lease.expired()
            if change.state == AWAITING_APPROVAL:
                due = bool(change.expires_at) and datetime.now(UTC) >= parse_iso(change.expires_at or "")
                wanted = due or (change.approval is None and free)
            elif change.state == NEEDS_DECISION:
                wanted = change.decision is None and free  # its question is not posted yet
            else:
                wanted = change.state in PHASES and free
            if wanted:
                self.deps.spawn(self.run(change.id))
                started += 1
        return started

    async def sweep_forever(self) -> None:
        indexed = False
        while True:
            try:
                if not indexed:  # once per start: records from before the indexes (records.py)
                    log.info("change records indexed: %d", await self.records.reindex())
                    indexed = True
                await self.sweep()
            except StoreUnavailable as exc:
                log.warning("change sweep: store unavailable: %s", exc)
            except Exception:
                log.exception("change sweep failed")
            await asyncio.sleep(self.lease_seconds / 2)
