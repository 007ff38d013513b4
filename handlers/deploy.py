"""`/payflow deploy`, `/payflow rollback` and an alert's Roll back button: the refusals that are
policy (service lock, change freeze, a change already in flight), then the change gate
(bot/domain/gate/) plans, opens and drives the change. No approval is ever asked for a color that is
not fully rolled out and healthy."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.base.roles import Role
from bot.config.catalog import Catalog
from bot.domain.gate import bluegreen
from bot.domain.gate.engine import Gate
from bot.domain.gate.messages import who
from bot.domain.gate.record import NEEDS_DECISION, Change
from bot.domain.views import Notice, Reply, Tone
from bot.gateways.slack import SlackError
from bot.gateways.store import AuditEntry
from handlers.base import Context, Deps, Refused
from handlers.locks import refuse_if_locked
from handlers.registry import MAX_REASON, Usage, action, background, command, service_arg, shown

log = logging.getLogger(__name__)


_VERSION = re.compile(r"^v\d{1,4}\.\d{1,4}\.\d{1,6}(?:-[0-9A-Za-z][0-9A-Za-z.-]{0,40})?$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
BREAK_GLASS = "--break-glass"


@dataclass(frozen=True)
class Deploy:
    service: str
    version: str
    reason: str = ""
    break_glass: str | None = None


@dataclass(frozen=True)
class Rollback:
    service: str
    reason: str = ""
    break_glass: str | None = None


def _reason_and_break_glass(words: list[str], command: str) -> tuple[str, str | None]:
    """Free text after the arguments; `--break-glass <why>` (admins, in a freeze) takes the rest."""
    flags = [w for w in words if w.startswith("--") and w != BREAK_GLASS]
    if flags:
        only = f"the only option is `{BREAK_GLASS} <reason>`"
        raise Usage(f"Unknown option `{shown(flags[0])}`; {only}.", command)
    break_glass = None
    if BREAK_GLASS in words:
        at = words.index(BREAK_GLASS)
        words, glass = words[:at], words[at + 1 :]
        if not glass:
            example = f"`{BREAK_GLASS} INC-123 payments down`"
            raise Usage(f"`{BREAK_GLASS}` needs a reason, e.g. {example}.", command)
        break_glass = " ".join(glass)[:MAX_REASON]
    reason = " ".join(words)
    if len(reason) > MAX_REASON:
        raise Usage(f"The reason is {len(reason)} characters; keep it under {MAX_REASON}.", command)
    return reason, break_glass


def _parse_deploy(args: list[str], catalog: Catalog) -> Deploy:
    if len(args) < 2:
        raise Usage("Say which service and which version.", "deploy")
    service = service_arg(args[0], catalog, "deploy")
    version = args[1]
    if not (_VERSION.match(version) or _DIGEST.match(version)):
        raise Usage(
            f"`{shown(version)}` is not a version. Use a tag like `v1.2.3` or `v1.2.3-rc.1`, "
            "or an image digest `sha256:<64 hex digits>`.",
            "deploy",
        )
    reason, glass = _reason_and_break_glass(args[2:], "deploy")
    return Deploy(service, version, reason, glass)


def _parse_rollback(args: list[str], catalog: Catalog) -> Rollback:
    if not args:
        raise Usage("Say which service to roll back.", "rollback")
    reason, glass = _reason_and_break_glass(args[1:], "rollback")
    return Rollback(service_arg(args[0], catalog, "rollback"), reason, glass)


@command(
    "deploy <service> <version> [reason…]",
    summary="Deploy a version to the idle color, smoke-test it, then ask an approver to switch traffic.",
    role=Role.OPERATOR,
    examples=(
        "/payflow deploy api-gateway v1.2.3 fixes PAY-981",
        "/payflow deploy auth-service "
        "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    ),
    parse=_parse_deploy,
)
async def deploy(cmd: Deploy, ctx: Context) -> Reply:
    return await request_change(ctx, cmd.service, cmd.version, cmd.reason, cmd.break_glass)


@command(
    "rollback <service> [reason…]",
    summary="Switch traffic back to the previous color, after an approver approves.",
    role=Role.OPERATOR,
    examples=("/payflow rollback api-gateway p95 doubled",),
    parse=_parse_rollback,
)
async def rollback(cmd: Rollback, ctx: Context) -> Reply:
    return await request_change(ctx, cmd.service, None, cmd.reason, cmd.break_glass)


@action("rollback", Role.OPERATOR)
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


@background
async def resume_changes(deps: Deps) -> None:
    """Every worker sweeps: changes whose worker is gone are resumed once their lease expires."""
    await Gate(deps).sweep_forever()
