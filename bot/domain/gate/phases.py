"""The phases of a change, each run by the worker holding its lease: prepare, the approval request
and its expiry, the switch (and settling one nobody saw finish), the bake, the clean-up.

Apart from the decisions people click (bot/domain/gate/decisions.py) because a phase runs under
a lease it holds, while a decision is one compare-and-set made by whoever clicked first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.base.refused import Refused
from bot.domain.gate.kinds import KINDS, Kind
from bot.domain.gate.messages import (
    Gateways,
    approval_buttons,
    approval_card,
    audit,
    decision_card,
    notice_in_thread,
    post,
    progress_card,
    say_in_thread,
    show,
    when,
    who,
)
from bot.domain.gate.record import (
    AWAITING_APPROVAL,
    BOT,
    CLEANING_UP,
    DONE,
    EXPIRED,
    FAILED,
    NEEDS_DECISION,
    PHASES,
    ROLLBACK_PROPOSED,
    VERIFYING,
    VOIDED,
    Change,
    Check,
    Failed,
    Lease,
    Unanswered,
    Voided,
    is_change_id,
    now_iso,
    parse_iso,
    wording,
)
from bot.domain.gate.records import Holder, LeaseLost, Moved, Records, holding, new_owner
from bot.domain.views import Tone
from bot.gateways.kube_objects import KubeError

log = logging.getLogger(__name__)

DECISION_TRIES = 20  # a decision retries its compare-and-set while only lease renewals beat it
UNANSWERED = "switch unanswered, settling"


def planned_checks(bake_seconds: float, interval: float) -> int:
    return math.ceil(bake_seconds / interval) if bake_seconds > 0 else 0


class Phases:
    """The gate's lease-holding side; `Gate` (bot/domain/gate/engine.py) adds decisions and the sweep."""

    def __init__(self, deps: Gateways):
        self.deps = deps
        env = deps.catalog.env
        self.lease_seconds = float(env.lease_seconds)
        self.records = Records(
            deps.store, lock_ttl=env.change_lock_ttl_seconds, lease_seconds=self.lease_seconds
        )

    def kind(self, change: Change) -> Kind:
        return KINDS[change.kind]

    async def get(self, change_id: str) -> Change:
        """The change a button or a command names; a value that cannot be one is refused plainly."""
        if not is_change_id(change_id):
            raise Refused("That is not a change ID (like `chg-1a2b3c4d`); nothing was done.")
        change = await self.records.get(change_id)
        if change is None:
            raise Refused(f"No change `{change_id}` is known; it may have been cleaned up.")
        return change

    # -- opening ---------------------------------------------------------------------------------

    async def open(self, change: Change) -> Change:
        """Take the service's change lock, write the record holding the prepare lease, and start."""
        owner = new_owner()
        change = replace(change, lease=self.records.lease("prepare", owner))
        if not await self.records.open(change):
            raise Refused(
                f"Another change for {change.service} started a moment ago; see `/payflow changes`."
            )
        await audit(self.deps, change, change.requester, "request", detail=change.reason)
        progress = await post(self.deps, change.channel, progress_card(change, "starting"))
        if progress is not None:
            with contextlib.suppress(Moved):
                change = await self.records.write(change, progress=progress)
        self.deps.spawn(self.run(change.id, owner))
        return change

    # -- phases ----------------------------------------------------------------------------------

    async def run(self, change_id: str, owner: str | None = None) -> None:
        """Run the phase the change is in, if its lease is free, expired or handed to `owner`;
        then the next phase, as long as this worker holds it."""
        while True:
            change = await self.records.get(change_id)
            if change is None:
                return
            if change.state == AWAITING_APPROVAL:
                await self._await_approval(change, owner)
                return
            if change.state == NEEDS_DECISION:
                if change.decision is None:
                    await self._announce_once(change, owner, "ask", self._post_question)
                return
            phase = PHASES.get(change.state)
            if phase is None:
                return
            holder = await self.records.take(change_id, phase, owner)
            if holder is None:
                return
            act = {"prepare": self._prepare, "apply": self._settle, "verify": self._verify}.get(
                phase, self._clean_up
            )
            owner = None
            async with holding(holder):
                owner = await act(holder)
            if owner is None:
                return

    async def _step(self, h: Holder, status: str, *lines: str) -> None:
        change = await h.write(step=status)
        await show(self.deps, change.progress, progress_card(change, status, *lines))

    async def _prepare(self, h: Holder) -> str | None:
        change = h.change
        try:
            smoke = await self.kind(change).prepare(
                self.deps, change, lambda status, *lines: self._step(h, status, *lines)
            )
        except Failed as exc:
            failed = await h.write(state=FAILED, error=str(exc), lease=None, step="failed")
            await audit(self.deps, failed, BOT, "failed", "failed", str(exc))
            note = wording(failed).after_failure
            await show(self.deps, failed.progress, progress_card(failed, "failed", f"❌ {exc}", note))
            return None
        ttl = self.deps.catalog.env.approval_ttl_seconds
        expires = (datetime.now(UTC) + timedelta(seconds=ttl)).isoformat(timespec="seconds")
        change = await h.write(
            state=AWAITING_APPROVAL, expires_at=expires, smoke=tuple(smoke), step="waiting for approval"
        )
        await audit(self.deps, change, BOT, "awaiting_approval", detail="smoke " + "; ".join(smoke))
        await self._announce(h)
        return None

    async def _announce(self, h: Holder) -> None:
        """Post the approval request once and record where; then wait for the decision, expiring
        the change at its deadline if nobody decides."""
        change = h.change
        if change.approval is None:
            ref = await post(self.deps, self.deps.catalog.channels.approvals, approval_card(change))
            if ref is None:
                return  # Slack is down: the sweep posts it later
            link = None
            with contextlib.suppress(Exception):
                link = await self.deps.notifier.permalink(ref)
            change = await h.write(approval=ref, approval_link=link, lease=None)
        else:
            change = await h.write(lease=None)
        where = (
            f"<{change.approval_link}|in {self.deps.catalog.channels.approvals}>"
            if change.approval_link
            else ""
        )
        await show(
            self.deps,
            change.progress,
            progress_card(change, "waiting for approval", f"✋ Approval requested {where}"),
        )
        if change.rollback_of:
            original = await self.records.get(change.rollback_of)
            if original is not None:
                card = progress_card(change, "the bot proposes a rollback", *original.bake_checks[-2:])
                card = type(card)(
                    change, card.headline, card.lines, approval_buttons(change, "Roll back"), card.tone
                )
                await say_in_thread(self.deps, original, card)
        else:
            await notice_in_thread(self.deps, change, f"Approval requested {where}", Tone.INFO)
        self.deps.spawn(self._expire_when_due(change.id))

    async def _await_approval(self, change: Change, owner: str | None) -> None:
        """Awaiting approval holds no lease: post the request if nobody has, expire it when due."""
        if change.expires_at and datetime.now(UTC) >= parse_iso(change.expires_at):
            await self.expire(change.id)
            return
        if change.approval is None:
            await self._announce_once(change, owner, "announce", self._announce)

    async def _announce_once(
        self, change: Change, owner: str | None, phase: str, post_it: Callable[[Holder], Awaitable[None]]
    ) -> None:
        """A state that waits for people holds no lease, except while one worker posts its
        message (the approval request, the question): taken like any lease, free or expired."""
        if change.lease is not None and not change.lease.expired() and change.lease.owner != owner:
            return
        try:
            poster = await self.records.write(change, lease=self.records.lease(phase, owner))
        except Moved:
            return
        holder = Holder(self.records, poster)
        async with holding(holder):
            await post_it(holder)

    async def _expire_when_due(self, change_id: str) -> None:
        change = await self.records.get(change_id)
        if change is None or change.state != AWAITING_APPROVAL or not change.expires_at:
            return
        await asyncio.sleep(max(0.0, (parse_iso(change.expires_at) - datetime.now(UTC)).total_seconds()))
        await self.expire(change_id)

    async def _apply(self, h: Holder) -> str | None:
        """Re-check, one conditional write: only ever in the click that won the approval (a worker
        that takes over an expired apply lease settles instead, it never switches)."""
        change, kind = h.change, self.kind(h.change)
        try:
            problem = await kind.recheck(self.deps, change)
        except KubeError as exc:
            problem = f"could not re-check the cluster: {exc}"
        if problem:
            await self._void(h, problem)
            return None
        if h.time_left() < self.lease_seconds / 3:  # never start the write without time to finish it
            await self._void(h, f"the approval took too long to act on; {wording(change).not_done}")
            return None
        try:
            detail = await kind.apply(self.deps, change)
        except Voided as exc:
            await self._void(h, str(exc))
            return None
        except Unanswered as exc:
            await self._unanswered(h, str(exc))
            return None
        await self._switched(h, change.decided_by or BOT, detail)
        return None

    async def _unanswered(self, h: Holder, reason: str) -> None:
        """The switch was sent and never answered: it may have landed, or still land. Neither
        switched nor void: the apply lease is handed to nobody for one more lease (at least three
        Kubernetes deadlines, so the request is surely over), then a sweep settles it from the
        cluster (`_settle`)."""
        change = await h.write(
            step=UNANSWERED,
            lease=Lease("apply", "settle-unanswered", time.time() + self.lease_seconds),
        )
        action = wording(change).action  # "switch", "unlock": the kind's own words
        await audit(self.deps, change, change.decided_by or BOT, f"{action}_unanswered", "uncertain", reason)
        text = f"⏳ {reason}. It may or may not have happened: the bot checks shortly and says which here."
        await show(self.deps, change.progress, progress_card(change, "switch unanswered", text))

    async def _settle(self, h: Holder) -> None:
        """The clicking worker died (or stalled past its lease) mid-switch: decide from the cluster
        whether the switch happened; never switch on an approval whose click is gone."""
        if await self.kind(h.change).applied(self.deps, h.change):
            await self._switched(h, BOT, "confirmed after the switching worker stopped")
            return
        await self._void(h, f"the worker stopped before acting on the approval; {wording(h.change).not_done}")
        return None

    async def _switched(self, h: Holder, actor: str, detail: str) -> None:
        owner = new_owner()
        change = await h.write(
            state=VERIFYING, switched_at=now_iso(), step="baking", lease=self.records.lease("verify", owner)
        )
        what = f"by {who(change.decided_by)} at {when()}: {wording(change).done}"
        words = wording(change)
        await audit(self.deps, change, actor, words.action, detail=detail)
        bake_for, _ = self.kind(change).schedule(self.deps, change)
        status = f"{words.status}, baking {bake_for / 60:.0f} min" if bake_for >= 60 else words.status
        await show(self.deps, change.approval, approval_card(change, f"✅ approved {what}"))
        await show(self.deps, change.progress, progress_card(change, status, f"✅ approved {what}"))
        await notice_in_thread(self.deps, change, f"Approved {what}", Tone.SUCCESS)
        self.deps.spawn(self.run(change.id, owner))  # the bake, in its own task, handed the lease

    async def _void(self, h: Holder, reason: str) -> None:
        voided = await h.write(state=VOIDED, error=reason, lease=None)
        await audit(self.deps, voided, voided.decided_by or BOT, "voided", "voided", reason)
        text = f"⛔ voided: {reason}. Nothing was changed; request the change again."
        await show(self.deps, voided.approval, approval_card(voided, text))
        not_done = wording(voided).not_done
        card = progress_card(voided, "voided", f"⛔ {reason}. {not_done[:1].upper()}{not_done[1:]}.")
        await show(self.deps, voided.progress, card)

    async def _verify(self, h: Holder) -> str | None:
        """The bake: check k is due at switched_at + k × interval, so a worker that takes over
        continues the schedule instead of restarting it, and no check is run twice."""
        kind = self.kind(h.change)
        bake, interval = kind.schedule(self.deps, h.change)
        start = parse_iso(h.change.switched_at or now_iso()).timestamp()
        planned = planned_checks(bake, interval)
        while len(h.change.checks) < planned and not self._breached(h.change):
            k = len(h.change.checks) + 1
            await asyncio.sleep(max(0.0, start + min(k * interval, bake) - time.time()))
            if h.time_left() <= 0:  # stalled past the lease: another worker owns the bake now
                raise LeaseLost(h.change)
            try:
                check = await kind.check(self.deps, h.change)
            except Exception as exc:  # a gateway bug must not end the bake without a verdict
                log.exception("%s: bake check failed", h.change.id)
                check = Check("no_data", f"{datetime.now(UTC):%H:%M:%S} ? no data: {type(exc).__name__}")
            change = await h.write(checks=(*h.change.checks, check), step=f"baking · {k}/{planned} checks")
            status = f"baking · {len(change.checks)}/{planned} checks"
            await show(self.deps, change.progress, progress_card(change, status, *change.bake_checks[-3:]))
        change = h.change
        if self._breached(change):
            if change.is_rollback:
                await self._ask(h, "SLOs breached after a rollback", "The bot never rolls back a rollback.")
                return None
            await self._propose_rollback(h)
            return None
        missing = sum(c.result == "no_data" for c in change.checks)
        if not self._conclusive(change):
            await self._ask(
                h,
                "bake inconclusive",
                f"Metrics were unavailable for {missing} of {len(change.checks)} checks, so the bake "
                "cannot tell whether the new version is healthy.",
            )
            return None
        owner = new_owner()
        await h.write(state=CLEANING_UP, step="cleaning up", lease=self.records.lease("clean_up", owner))
        return owner

    @staticmethod
    def _conclusive(change: Change) -> bool:
        """A pass needs data: the last check and at least half of all checks had some (the first
        checks of a new color often have no series yet; Prometheus down leaves none at all)."""
        checks = change.checks
        with_data = sum(c.result != "no_data" for c in checks)
        return not checks or (checks[-1].result != "no_data" and 2 * with_data >= len(checks))

    @staticmethod
    def _breached(change: Change) -> bool:
        """Two failed checks in a row: a real SLO breach (no data is never one)."""
        return len(change.checks) >= 2 and all(c.result == "breach" for c in change.checks[-2:])

    async def _ask(self, h: Holder, headline: str, why: str) -> None:
        """ONE question to people: keep the new version, or request the rollback (gated as always)."""
        change = await h.write(state=NEEDS_DECISION, step=headline, question=why)
        await audit(self.deps, change, BOT, "needs_decision", "inconclusive", why)
        await self._post_question(h)

    async def _post_question(self, h: Holder) -> None:
        """Post the question once (a later sweep retries if Slack refused it)."""
        change = h.change
        lines = (
            f"⚠️ {change.question}",
            *change.bake_checks[-3:],
            "Keep it (the old color is scaled down), or request a rollback.",
        )
        ref = change.decision or await post(
            self.deps, self.deps.catalog.channels.approvals, decision_card(change, change.step, lines)
        )
        change = await h.write(decision=ref, lease=None)
        status = f"{change.step}: a person decides"
        await show(self.deps, change.progress, progress_card(change, status, *lines))

    async def _propose_rollback(self, h: Holder) -> None:
        """Two SLO breaches in a row: the bot requests the rollback itself (approval-gated, and any
        approver may approve it since the bot, not a person, asked)."""
        change = await h.write(state=ROLLBACK_PROPOSED, lease=None, step="bake failed, rollback proposed")
        breaches = change.bake_checks[-2:]
        await audit(self.deps, change, BOT, "rollback_proposed", "failed", "; ".join(breaches))
        lines = ("⚠️ Two failed bake checks in a row:", *breaches)
        await show(
            self.deps, change.progress, progress_card(change, "bake failed, rollback proposed", *lines)
        )
        await self._open_rollback(change, BOT, f"bake of {change.id} failed")

    async def _open_rollback(self, change: Change, requester: str, reason: str) -> str:
        try:
            rollback = await self.kind(change).revert(self.deps, change, requester, reason)
            rollback = await self.open(rollback)
        except (Refused, KubeError) as exc:
            text = f"⚠️ No rollback could be requested: {exc}"
            await notice_in_thread(self.deps, change, text, Tone.ERROR)
            return text
        with contextlib.suppress(Moved):
            await self.records.write(change, proposed_rollback=rollback.id)
        return f"Rollback {rollback.id} requested; it needs an approval like any switch."

    async def _clean_up(self, h: Holder) -> str | None:
        change = h.change
        cleanup = await self.kind(change).clean_up(self.deps, change)
        change = await h.write(state=DONE, lease=None, step="done")
        checks = len(change.checks)
        if change.settled_by:
            summary = f"✅ Kept by {who(change.settled_by)} after the bake. {cleanup}"
        elif checks:
            summary = f"✅ Bake passed ({checks} check{'s' * (checks != 1)}). {cleanup}"
        else:  # a kind with nothing to watch (an unlock), or a bake set to 0
            done = wording(change).done
            summary = f"✅ {done[:1].upper()}{done[1:]}. {cleanup}".rstrip()
        await audit(self.deps, change, BOT, "done", detail=cleanup)
        await show(
            self.deps, change.progress, progress_card(change, "done", summary, *change.bake_checks[-3:])
        )
        await notice_in_thread(self.deps, change, summary, Tone.SUCCESS)
        return None

    # -- the bot's own decision: an approval nobody made in time -----------------------------------

    async def _decide(self, change: Change, allowed: frozenset[str], **updates: Any) -> tuple[Change, bool]:
        """One compare-and-set from a state in `allowed`; retried only while what beat us changed
        nothing but a lease. Returns (the record, whether this call decided)."""
        for _ in range(DECISION_TRIES):
            if change.state not in allowed:
                return change, False
            try:
                return await self.records.write(change, **updates), True
            except Moved as moved:
                if moved.current is None:
                    raise Refused(f"{change.id} is gone.") from None
                change = moved.current
        return change, False

    async def expire(self, change_id: str) -> None:
        change = await self.records.get(change_id)
        if change is None or not change.expires_at or datetime.now(UTC) < parse_iso(change.expires_at):
            return
        change, won = await self._decide(change, frozenset({AWAITING_APPROVAL}), state=EXPIRED, lease=None)
        if not won:
            return
        await show(
            self.deps, change.approval, approval_card(change, f"⌛ expired {when()}: nobody approved in time")
        )
        await show(
            self.deps,
            change.progress,
            progress_card(change, "expired", f"⌛ Nobody approved in time; {wording(change).not_done}."),
        )
        await audit(self.deps, change, BOT, "expired", "expired")
