"""What a change says to people: its progress message (requester's channel), its approval request
(approvals channel), the question after an inconclusive verification, and its audit entries —
one place, so every step says the same things the same way. A Slack hiccup never stops a change."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, Protocol

from bot.base.messages import MessageRef
from bot.config.catalog import Catalog
from bot.domain.gate.record import (
    APPLYING,
    AWAITING_APPROVAL,
    BOT,
    CANCELLED,
    CLEANING_UP,
    DONE,
    EXPIRED,
    FAILED,
    NEEDS_DECISION,
    REJECTED,
    ROLLBACK_PROPOSED,
    VERIFYING,
    VOIDED,
    Change,
    parse_iso,
    wording,
)
from bot.domain.ports import Notifier
from bot.domain.views import Button, ChangeCard, Confirm, Notice, Tone, View
from bot.gateways.kube import Kube
from bot.gateways.postgres import Postgres
from bot.gateways.prom import Prom
from bot.gateways.slack import SlackError
from bot.gateways.store import AuditEntry, Store

log = logging.getLogger(__name__)


class Gateways(Protocol):
    """What the gate needs from the process (handlers' `Deps` is one). Read-only, as `Deps` is frozen."""

    @property
    def catalog(self) -> Catalog: ...
    @property
    def kube(self) -> Kube: ...
    @property
    def store(self) -> Store: ...
    @property
    def notifier(self) -> Notifier: ...
    @property
    def prom(self) -> Prom | None: ...
    @property
    def spawn(self) -> Callable[[Coroutine[Any, Any, None]], None]:
        """Start a task that outlives the job (a bake, a rollout watch)."""

    @property
    def postgres(self) -> Postgres | None:
        """None when DATABASE_URL (the catalog's setting) is not set."""

    async def audit(self, entry: AuditEntry) -> bool: ...


_TONE = {
    DONE: Tone.SUCCESS,
    VERIFYING: Tone.SUCCESS,
    CLEANING_UP: Tone.SUCCESS,
    FAILED: Tone.ERROR,
    VOIDED: Tone.ERROR,
    REJECTED: Tone.WARNING,
    EXPIRED: Tone.WARNING,
    CANCELLED: Tone.WARNING,
    ROLLBACK_PROPOSED: Tone.WARNING,
    NEEDS_DECISION: Tone.WARNING,
}


def who(user: str | None) -> str:
    return "the bot" if user == BOT else f"<@{user}>"


def when() -> str:
    return datetime.now(UTC).strftime("%H:%M:%S UTC")


def title(c: Change) -> str:
    return wording(c).title


def approval_buttons(c: Change, approve_label: str = "Approve") -> tuple[Button, ...]:
    words = wording(c)
    confirm_title, ok = words.confirm
    return (
        Button(
            approve_label,
            "approve",
            c.id,
            "primary" if approve_label == "Approve" else "danger",
            Confirm(confirm_title, words.question, ok=ok),
        ),
        Button("Reject", "reject", c.id, "danger"),
    )


def decision_buttons(c: Change) -> tuple[Button, ...]:
    question = (
        f"Request a rollback of *{c.service}* to {c.from_color} `{c.from_version}`? It needs an approval."
    )
    return (
        Button(f"Keep {c.image_version}", "keep", c.id, "primary"),
        Button("Roll back", "roll_back", c.id, "danger", Confirm("Roll back?", question, ok="Request")),
    )


def progress_card(c: Change, status: str, *lines: str) -> ChangeCard:
    return ChangeCard(c, f"{title(c)} — {status}", tuple(lines), tone=_TONE.get(c.state, Tone.INFO))


def approval_card(c: Change, decision: str | None = None) -> ChangeCard:
    """With buttons while awaiting approval; with the decision and no buttons afterwards."""
    if c.state == AWAITING_APPROVAL and decision is None:
        head = f"Approval needed: {title(c)}"
        return ChangeCard(c, head, (), approval_buttons(c), Tone.WARNING, approval=True)
    return ChangeCard(c, f"{title(c)} — {decision or c.state}", (), (), _TONE.get(c.state, Tone.INFO), True)


def decision_card(c: Change, headline: str, lines: tuple[str, ...], decided: str | None = None) -> ChangeCard:
    """The one question after a verification that could not conclude (or a rollback's breach)."""
    if decided is not None:
        return ChangeCard(c, f"{title(c)} — {decided}", lines, (), _TONE.get(c.state, Tone.INFO))
    return ChangeCard(c, f"{title(c)} — {headline}", lines, decision_buttons(c), Tone.WARNING)


def decided(change: Change) -> str:
    """What a late clicker is told: who already decided, and what became of it."""
    by = f" by {who(change.decided_by)}" if change.decided_by else ""
    at = f" at {parse_iso(change.decided_at):%H:%M:%S UTC}" if change.decided_at else ""
    on = wording(change).done
    states = {
        APPLYING: f"Already approved{by}{at}; the switch is under way.",
        VERIFYING: f"Already approved{by}{at}; {on}.",
        NEEDS_DECISION: f"Already approved{by}{at}; {on}.",
        CLEANING_UP: f"Already approved{by}{at} and finishing.",
        DONE: f"Already approved{by}{at} and finished.",
        ROLLBACK_PROPOSED: f"Already approved{by}{at}; a rollback was requested since.",
        REJECTED: f"Already rejected{by}{at}.",
        CANCELLED: f"Already cancelled{by}{at}.",
        EXPIRED: "This approval expired; request the change again.",
        VOIDED: f"This change was voided: {change.error}",
    }
    return states.get(change.state, f"{change.id} is {change.state.replace('_', ' ')}; nothing to approve.")


async def show(deps: Gateways, ref: MessageRef | None, card: ChangeCard) -> None:
    """Update a change message in place; a Slack hiccup must not stop the change itself."""
    if ref is None:
        return
    try:
        await deps.notifier.update(ref, card)
    except SlackError as exc:
        log.warning("could not update %s: %s", ref, exc)


async def post(
    deps: Gateways, channel: str, card: View, thread: MessageRef | None = None
) -> MessageRef | None:
    try:
        return await deps.notifier.post(channel, card, thread=thread)
    except SlackError as exc:
        log.warning("could not post in %s: %s", channel, exc)
        return None


async def say_in_thread(deps: Gateways, c: Change, card_or_view: View) -> None:
    if c.progress is not None:
        await post(deps, c.progress.channel, card_or_view, thread=c.progress)


async def notice_in_thread(deps: Gateways, c: Change, text: str, tone: Tone) -> None:
    await say_in_thread(deps, c, Notice(text, tone))


async def audit(
    deps: Gateways, c: Change, actor: str, action: str, outcome: str = "ok", detail: str = ""
) -> None:
    text = f"{c.id} {wording(c).summary}" + (f": {detail}" if detail else "")
    await deps.audit(
        AuditEntry(actor, f"change.{action}", outcome, c.service, text, c.channel, c.approval_link)
    )
