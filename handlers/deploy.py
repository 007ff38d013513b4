"""`/payflow deploy`, `/payflow rollback` and an alert's Roll back button: the refusals that are
policy (service lock, change freeze, a change already in flight), then the change gate
(bot/domain/gate/) plans, opens and drives the change. No approval is ever asked for a color that is
not fully rolled out and healthy."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from bot.base.roles import Role
from bot.domain.gate import bluegreen
from bot.domain.gate.engine import Gate
from bot.domain.gate.messages import who
from bot.domain.gate.record import NEEDS_DECISION, Change
from bot.domain.views import Notice, Reply, Tone
from bot.gateways.slack import SlackError
from bot.gateways.store import AuditEntry
from handlers.base import Context, Deps, Refused
from handlers.commands import Deploy, Rollback
from handlers.locks import refuse_if_locked

log = logging.getLogger(__name__)


async def deploy(cmd: Deploy, ctx: Context) -> Reply:
    return await request_change(ctx, cmd.service, cmd.version, cmd.reason, cmd.break_glass)


async def rollback(cmd: Rollback, ctx: Context) -> Reply:
    return await request_change(ctx, cmd.service, None, cmd.reason, cmd.break_glass)


async def request_rollback_button(value: str, ctx: Context) -> Reply:
    """The Roll back button of an alert: the same approval-gated rollback as the command."""
    if value not in ctx.catalog.services:
        raise Refused("That button does not name a known service; nothing was done.")
    return await request_change(ctx, value, None, "requested from an alert", None)


def refuse_if_frozen(ctx: Context, break_glass: str | None) -> None:
    """In a change freeze only a break-glass change goes ahead: at its request, and again at its
    approval (a deploy requested just before the freeze must not switch inside it)."""
    window = ctx.catalog.freeze_at(datetime.now(UTC))
    if window and break_glass is None:
        raise Refused(
            f"Production is in a change freeze until {window.end:%Y-%m-%d %H:%M %Z} ({window.reason}). "
            "An admin may override with `--break-glass <reason>`; it is audited and announced."
        )


async def request_change(
    ctx: Context, service: str, version: str | None, reason: str, break_glass: str | None
) -> Reply:
    """Every refusal happens before anything is written; then the gate opens the change."""
    catalog = ctx.catalog
    await refuse_if_locked(ctx, service)
    window = catalog.freeze_at(datetime.now(UTC))
    if window:
        refuse_if_frozen(ctx, break_glass)
        if (ctx.role or 0) < Role.ADMIN:
            raise Refused("Only an admin may use `--break-glass`.")
    elif break_glass is not None:
        raise Refused("There is no change freeze now: drop `--break-glass` and ask again.")
    gate = Gate(ctx.deps)
    holder = await gate.records.holder(service)
    if holder and holder.state == NEEDS_DECISION:
        raise Refused(
            f"{holder.id} ({holder.kind} of {holder.service} `{holder.image_version}`) is live and waits "
            "for a person to keep it or roll it back (its question is in the approvals channel)."
        )
    if holder and holder.in_flight:
        raise Refused(
            f"{holder.id} ({holder.kind} of {holder.service} `{holder.image_version}` by "
            f"{who(holder.requester)}) is in flight: {holder.state.replace('_', ' ')}. "
            f"Wait for it, or `/payflow cancel {holder.id}`."
        )
    change = await bluegreen.plan(
        ctx.deps,
        service,
        version,
        requester=ctx.actor,
        reason=reason,
        channel=ctx.channel,
        break_glass=break_glass,
    )
    change = await gate.open(change)
    if break_glass:
        await _announce_break_glass(ctx.deps, change)
    detail = f"{change.id} {change.kind} {change.image_version}"
    if catalog.env.bake_seconds and ctx.deps.prom is None:
        text = (
            f"{change.id}: Prometheus is not configured (PROMETHEUS_URL), so the bake after the "
            "switch will be inconclusive: the bot will ask whether to keep the new version or roll back."
        )
        return Reply(Notice(text, Tone.WARNING), detail=detail, target=service, audited=False)
    return Reply(None, detail=detail, target=service, audited=False)


async def _announce_break_glass(deps: Deps, change: Change) -> None:
    text = (
        f"🚨 Break-glass: <@{change.requester}> requested {change.kind} of *{change.service}* "
        f"`{change.image_version}` during a change freeze: {change.break_glass} (`{change.id}`)"
    )
    await deps.audit(
        AuditEntry(change.requester, "change.break_glass", "ok", change.service, text, change.channel)
    )
    try:
        await deps.notifier.post(deps.catalog.channels.audit, Notice(text, Tone.WARNING))
    except SlackError as exc:
        log.error("break-glass announcement not posted (%s): %s", exc.code, text)


async def resume_changes(deps: Deps) -> None:
    """Every worker sweeps: changes whose worker is gone are resumed once their lease expires."""
    await Gate(deps).sweep_forever()
