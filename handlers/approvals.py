"""The buttons of a change: Approve / Reject on the approval request, Keep / Roll back on the
question after an inconclusive bake. Thin: the gate (bot/domain/gate/engine.py) decides; a losing click
is told who won and audited as lost, so an auditor finds exactly one approval."""

from __future__ import annotations

from bot.base.roles import Role
from bot.domain.gate.decisions import Answer
from bot.domain.gate.engine import Gate
from bot.domain.views import Notice, Reply
from handlers.base import Context
from handlers.deploy import refuse_if_frozen
from handlers.locks import refuse_if_locked
from handlers.registry import action


def _reply(answer: Answer, what: str) -> Reply:
    change = answer.change
    detail = f"{change.id if change else '?'} {what}"
    if answer.outcome != "ok":
        detail = f"{answer.outcome} ({change.id if change else '?'})"
    return Reply(
        Notice(answer.text, answer.tone),
        detail=detail,
        target=change.service if change else None,
        outcome="lost" if answer.outcome.startswith("lost") else answer.outcome,
    )


@action("approve", Role.APPROVER)
async def approve(value: str, ctx: Context) -> Reply:
    gate = Gate(ctx.deps)
    change = await gate.get(value)
    await refuse_if_locked(ctx, change.service)
    if change.kind == "deploy":  # a freeze holds back deploys; a rollback restores, an unlock ships nothing
        refuse_if_frozen(ctx, change.break_glass)
    return _reply(await gate.approve(change, ctx.actor, ctx.message), "approved")


@action("reject", Role.APPROVER)
async def reject(value: str, ctx: Context) -> Reply:
    return _reply(await Gate(ctx.deps).reject(value, ctx.actor, ctx.message), "rejected")


@action("keep", Role.APPROVER)  # after an inconclusive bake
async def keep(value: str, ctx: Context) -> Reply:
    """Keep scales the old color to 0: a locked service keeps the capacity a rollback needs."""
    gate = Gate(ctx.deps)
    change = await gate.get(value)
    await refuse_if_locked(ctx, change.service)
    return _reply(await gate.keep(change.id, ctx.actor, ctx.message), "kept")


@action("roll_back", Role.OPERATOR)  # requests a rollback: approval-gated
async def roll_back(value: str, ctx: Context) -> Reply:
    gate = Gate(ctx.deps)
    change = await gate.get(value)
    await refuse_if_locked(ctx, change.service)
    return _reply(await gate.roll_back(change.id, ctx.actor, ctx.message), "rollback requested")
