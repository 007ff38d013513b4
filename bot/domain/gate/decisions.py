"""The decisions people click (approve, reject, cancel, keep, roll back): each one compare-and-set
from the state it decides, so exactly one click wins and every other is told who did."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.base.messages import MessageRef
from bot.base.refused import Refused
from bot.domain.gate.messages import approval_card, audit, decided, decision_card, progress_card, show, who
from bot.domain.gate.phases import UNANSWERED, Phases
from bot.domain.gate.record import (
    APPLYING,
    AWAITING_APPROVAL,
    BEFORE_APPLY,
    CANCELLED,
    CLEANING_UP,
    DONE,
    NEEDS_DECISION,
    REJECTED,
    ROLLBACK_PROPOSED,
    VERIFYING,
    VOIDED,
    Change,
    now_iso,
    parse_iso,
    wording,
)
from bot.domain.gate.records import Holder, holding, new_owner
from bot.domain.views import Tone

LINK_SECONDS = 1.0  # the approval's permalink (for the audit) may delay a click's switch this long


@dataclass(frozen=True)
class Answer:
    """What a decision tells the person who clicked, and how it is audited (`outcome`)."""

    text: str
    tone: Tone
    outcome: str = "ok"
    change: Change | None = None


class Decisions(Phases):
    """What a person may decide about a change, on top of the phases that carry it out."""

    async def approve(self, change: Change, actor: str, clicked: MessageRef | None) -> Answer:
        """`change` as the caller just read it (a stale copy only costs a retried compare-and-set)."""
        if change.state != AWAITING_APPROVAL:
            return self._lost(change)
        if self.deps.catalog.env.four_eyes and actor == change.requester:
            raise Refused("You requested this change: four-eyes rules need another approver to approve it.")
        if change.expires_at and datetime.now(UTC) >= parse_iso(change.expires_at):
            await self.expire(change.id)
            raise Refused("This approval has expired; nothing was changed. Request the change again.")
        owner = new_owner()
        change, won = await self._decide(
            change,
            frozenset({AWAITING_APPROVAL}),
            state=APPLYING,
            decided_by=actor,
            decided_at=now_iso(),
            lease=self.records.lease("apply", owner),
            approval=change.approval or clicked,
            step="switching",
        )
        if not won:
            return self._lost(change)
        holder = Holder(self.records, change)
        async with holding(holder):
            if change.approval_link is None and change.approval is not None:
                # for the audit only: never worth the switch's time (a hung Slack voided approvals)
                link = None
                with contextlib.suppress(Exception):
                    link = await asyncio.wait_for(self.deps.notifier.permalink(change.approval), LINK_SECONDS)
                if link:
                    await holder.write(approval_link=link)
            await audit(self.deps, holder.change, actor, "approve")
            await self._apply(holder)
        final = holder.change
        if final.state in (VERIFYING, CLEANING_UP, DONE):
            done = wording(final).done
            return Answer(done[:1].upper() + done[1:] + ".", Tone.SUCCESS, change=final)
        if final.state == VOIDED:
            return Answer(f"Voided: {final.error}. Nothing was changed.", Tone.ERROR, "voided", final)
        if final.state == APPLYING and final.step == UNANSWERED:
            text = (
                "The change was sent and never answered, so it may or may not have happened; the bot "
                "checks shortly and says in the change's thread whether it did."
            )
            return Answer(text, Tone.WARNING, "uncertain", final)
        return Answer(
            f"{final.id} is {final.state.replace('_', ' ')}; see its thread.", Tone.WARNING, change=final
        )

    def _lost(self, change: Change) -> Answer:
        """A click that did not decide: told who did, and audited as lost (not as an approval)."""
        text = decided(change)
        by = f" by {change.decided_by}" if change.decided_by else ""
        outcome = {
            APPLYING: f"lost: already approved{by}",
            VERIFYING: f"lost: already approved{by}",
            NEEDS_DECISION: f"lost: already approved{by}",
            CLEANING_UP: f"lost: already approved{by}",
            DONE: f"lost: already approved{by}",
            ROLLBACK_PROPOSED: f"lost: already approved{by}",
            REJECTED: f"lost: already rejected{by}",
            CANCELLED: f"lost: already cancelled{by}",
        }.get(change.state, f"lost: {change.state}")
        return Answer(text, Tone.WARNING, outcome, change)

    async def reject(self, change_id: str, actor: str, clicked: MessageRef | None) -> Answer:
        change = await self.get(change_id)
        change, won = await self._decide(
            change,
            frozenset({AWAITING_APPROVAL}),
            state=REJECTED,
            decided_by=actor,
            decided_at=now_iso(),
            lease=None,
            approval=change.approval or clicked,
        )
        if not won:
            return self._lost(change)
        await audit(self.deps, change, actor, "reject", "rejected")
        await show(self.deps, change.approval, approval_card(change, f"🚫 rejected by <@{actor}>"))
        await show(self.deps, change.progress, progress_card(change, f"rejected by <@{actor}>", "No switch."))
        return Answer(f"Rejected {change.id}; {wording(change).unchanged}.", Tone.INFO, change=change)

    async def cancel(self, change: Change, actor: str) -> Answer:
        change, won = await self._decide(
            change, BEFORE_APPLY, state=CANCELLED, decided_by=actor, decided_at=now_iso(), lease=None
        )
        if not won:
            raise Refused(f"{change.id} became {change.state.replace('_', ' ')} just now; not cancelled.")
        await audit(self.deps, change, actor, "cancel", "cancelled")
        await show(self.deps, change.approval, approval_card(change, f"🗑️ cancelled by <@{actor}>"))
        await show(
            self.deps, change.progress, progress_card(change, f"cancelled by <@{actor}>", "No switch.")
        )
        text = f"Cancelled {change.id}. {wording(change).after_cancel}".rstrip()
        return Answer(text, Tone.SUCCESS, change=change)

    async def keep(self, change_id: str, actor: str, clicked: MessageRef | None) -> Answer:
        """After an inconclusive bake: keep the new version and clean up."""
        change = await self.get(change_id)
        owner = new_owner()
        change, won = await self._decide(
            change,
            frozenset({NEEDS_DECISION}),
            state=CLEANING_UP,
            settled_by=actor,
            decision=change.decision or clicked,
            lease=self.records.lease("clean_up", owner),
            step="cleaning up",
        )
        if not won:
            return Answer(self._settled(change), Tone.WARNING, f"lost: {change.state}", change)
        await audit(self.deps, change, actor, "keep", detail="kept after an inconclusive bake")
        await show(self.deps, change.decision, decision_card(change, "", (), f"kept by <@{actor}>"))
        await self.run(change.id, owner)
        return Answer(
            f"Kept `{change.image_version}` on {change.to_color}; {change.from_color} is scaled down.",
            Tone.SUCCESS,
            change=change,
        )

    async def roll_back(self, change_id: str, actor: str, clicked: MessageRef | None) -> Answer:
        """After an inconclusive bake: request the rollback (approval-gated like any switch)."""
        change = await self.get(change_id)
        change, won = await self._decide(
            change,
            frozenset({NEEDS_DECISION}),
            state=ROLLBACK_PROPOSED,
            settled_by=actor,
            decision=change.decision or clicked,
            lease=None,
            step="rollback requested",
        )
        if not won:
            return Answer(self._settled(change), Tone.WARNING, f"lost: {change.state}", change)
        await audit(self.deps, change, actor, "rollback_requested")
        await show(
            self.deps, change.decision, decision_card(change, "", (), f"rollback requested by <@{actor}>")
        )
        text = await self._open_rollback(change, actor, f"bake of {change.id} inconclusive")
        return Answer(text, Tone.INFO if text.startswith("Rollback") else Tone.ERROR, change=change)

    @staticmethod
    def _settled(change: Change) -> str:
        by = f" by {who(change.settled_by)}" if change.settled_by else ""
        return f"Already decided{by}: {change.id} is {change.state.replace('_', ' ')}."
