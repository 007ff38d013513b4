"""The two messages of a change — progress (requester's channel) and approval request (approvals
channel) — and its audit entries, so every step says the same things the same way."""

from __future__ import annotations

import logging

from bot.changes import (
    AWAITING_APPROVAL,
    BAKING,
    CANCELLED,
    DONE,
    EXPIRED,
    FAILED,
    REJECTED,
    ROLLBACK_PROPOSED,
    VOIDED,
    Change,
)
from bot.messages import MessageRef
from bot.slack import SlackError
from bot.store import AuditEntry
from bot.views import Button, ChangeCard, Confirm, Tone
from handlers.base import Deps

log = logging.getLogger(__name__)

_TONE = {
    DONE: Tone.SUCCESS,
    BAKING: Tone.SUCCESS,
    FAILED: Tone.ERROR,
    VOIDED: Tone.ERROR,
    REJECTED: Tone.WARNING,
    EXPIRED: Tone.WARNING,
    CANCELLED: Tone.WARNING,
    ROLLBACK_PROPOSED: Tone.WARNING,
}


def title(c: Change) -> str:
    if c.kind == "rollback":
        return f"Rollback of *{c.service}* to {c.to_color} `{c.version}`"
    return f"Deploy of *{c.service}* `{c.version}` to {c.to_color}"


def approval_buttons(c: Change, approve_label: str = "Approve") -> tuple[Button, ...]:
    question = (
        f"Switch *{c.service}* traffic from {c.from_color} `{c.from_version}` to {c.to_color} `{c.version}`?"
    )
    return (
        Button(
            approve_label,
            "approve",
            c.id,
            "primary" if approve_label == "Approve" else "danger",
            Confirm("Switch traffic?", question, ok="Switch"),
        ),
        Button("Reject", "reject", c.id, "danger"),
    )


def progress_card(c: Change, status: str, *lines: str) -> ChangeCard:
    return ChangeCard(c, f"{title(c)} — {status}", tuple(lines), tone=_TONE.get(c.state, Tone.INFO))


def approval_card(c: Change, decision: str | None = None) -> ChangeCard:
    """With buttons while awaiting approval; with the decision and no buttons afterwards."""
    if c.state == AWAITING_APPROVAL and decision is None:
        head = f"Approval needed: {title(c)}"
        return ChangeCard(c, head, (), approval_buttons(c), Tone.WARNING, approval=True)
    return ChangeCard(c, f"{title(c)} — {decision or c.state}", (), (), _TONE.get(c.state, Tone.INFO), True)


async def show(deps: Deps, ref: MessageRef | None, card: ChangeCard) -> None:
    """Update a change message in place; a Slack hiccup must not stop the change itself."""
    if ref is None:
        return
    try:
        await deps.notifier.update(ref, card)
    except SlackError as exc:
        log.warning("could not update %s: %s", ref, exc)


async def say_in_thread(deps: Deps, c: Change, card_or_view: object) -> None:
    if c.progress is None:
        return
    try:
        await deps.notifier.post(c.progress.channel, card_or_view, thread=c.progress)
    except SlackError as exc:
        log.warning("could not post in the thread of %s: %s", c.id, exc)


async def audit(
    deps: Deps, c: Change, actor: str, action: str, outcome: str = "ok", detail: str = ""
) -> None:
    text = f"{c.id} {c.from_color} {c.from_version} → {c.to_color} {c.version}" + (
        f": {detail}" if detail else ""
    )
    await deps.audit(
        AuditEntry(actor, f"change.{action}", outcome, c.service, text, c.channel, c.approval_link)
    )
