"""`/payflow deploy` and `/payflow rollback`: from the request to the approval request.

The guide's steps 1–2 (set the image on the idle color, scale it, test it) run as a watcher that
moves the change record through requested → rolling_out → smoke_testing → awaiting_approval.
Each step is resumable: after a restart the watcher picks the record up where it stands.
No approval is ever asked for a color that is not fully rolled out and healthy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta

from bot.changes import (
    AWAITING_APPROVAL,
    BAKING,
    BOT,
    EXPIRED,
    FAILED,
    REQUESTED,
    ROLLING_OUT,
    SMOKE_TESTING,
    SWITCHING,
    Change,
    Changes,
    Transition,
    new_id,
    now_iso,
    parse_iso,
)
from bot.commands import Deploy, Rollback
from bot.config import other_color
from bot.kube import DeploymentState, KubeError, Route
from bot.roles import Role
from bot.slack import SlackError
from bot.smoke import smoke_test
from bot.store import AuditEntry, StoreUnavailable
from bot.topology import color_named
from bot.views import Notice, Reply, Tone
from handlers.base import Context, Deps, Refused
from handlers.change_messages import (
    approval_buttons,
    approval_card,
    audit,
    progress_card,
    say_in_thread,
    show,
)
from handlers.locks import refuse_if_locked

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
LEASE_SECONDS = 30.0
FATAL_WAITING = {"ImagePullBackOff", "CrashLoopBackOff", "InvalidImageName", "CreateContainerConfigError"}
PROCESS = secrets.token_hex(6)
_owner: ContextVar[tuple[str, str]] = ContextVar("payflow_watch_owner", default=(PROCESS, "prepare"))


async def hold(changes: Changes, change_id: str) -> bool:
    """Take or keep the current task's watcher lease of a change."""
    owner, phase = _owner.get()
    return await changes.lease(change_id, phase, owner, LEASE_SECONDS)


@contextlib.asynccontextmanager
async def watching(changes: Changes, change_id: str, phase: str) -> AsyncIterator[bool]:
    """Run as the one watcher of a change's phase (yields False if another task holds it). A
    change that moved on under us, or a store outage, ends the watch quietly: the record says
    where it stands and the next watcher resumes from there."""
    _owner.set((f"{PROCESS}:{secrets.token_hex(3)}", phase))
    held = await hold(changes, change_id)
    try:
        yield held
    except Transition as moved:
        log.info("%s moved on without this watcher: %s", change_id, moved)
    except StoreUnavailable as exc:
        log.error("%s: store unavailable, the watcher stops (the next one resumes): %s", change_id, exc)
    finally:
        if held:
            with contextlib.suppress(StoreUnavailable):
                await changes.unlease(change_id, phase, _owner.get()[0])


def changes_of(deps: Deps) -> Changes:
    return Changes(deps.store, deps.catalog.env.change_lock_ttl_seconds)


async def traffic_route(deps: Deps, service: str) -> Route:
    traffic = deps.catalog.service(service).traffic
    if traffic.kind == "ingress":
        return await deps.kube.ingress_route(traffic.name, traffic.host, traffic.path)
    return await deps.kube.service_route(traffic.name, traffic.selector_key)


async def deploy(cmd: Deploy, ctx: Context) -> Reply:
    return await request_change(ctx.deps, ctx, cmd.service, cmd.version, cmd.reason, cmd.break_glass)


async def rollback(cmd: Rollback, ctx: Context) -> Reply:
    return await request_change(ctx.deps, ctx, cmd.service, None, cmd.reason, cmd.break_glass)


async def request_rollback_button(value: str, ctx: Context) -> Reply:
    """The Roll back button of an alert: the same approval-gated rollback as the command."""
    if value not in ctx.catalog.services:
        raise Refused(f"Unknown service `{value}`.")
    return await request_change(ctx.deps, ctx, value, None, "requested from an alert", None)


async def request_change(
    deps: Deps,
    ctx: Context | None,
    service: str,
    version: str | None,
    reason: str,
    break_glass: str | None,
    *,
    requester: str | None = None,
    rollback_of: Change | None = None,
) -> Reply:
    """Every refusal happens before anything is written; then the lock, the record, the watcher."""
    catalog = deps.catalog
    requester = requester or (ctx.actor if ctx else BOT)
    channel = ctx.channel if ctx else (rollback_of.channel if rollback_of else catalog.channels.approvals)
    await refuse_if_locked(deps.store, service)
    window = catalog.freeze_at(datetime.now(UTC))
    if window and requester != BOT:
        if break_glass is None:
            raise Refused(
                f"Production is in a change freeze until {window.end:%Y-%m-%d %H:%M %Z} ({window.reason}). "
                "An admin may override with `--break-glass <reason>`; it is audited and announced."
            )
        if ctx is None or (ctx.role or 0) < Role.ADMIN:
            raise Refused("Only an admin may use `--break-glass`.")
    elif break_glass is not None:
        raise Refused("There is no change freeze now: drop `--break-glass` and ask again.")

    changes = changes_of(deps)
    holder = await changes.holder(service)
    if holder and holder.in_flight:
        raise Refused(
            f"{holder.id} ({holder.kind} of {holder.service} `{holder.version}` by "
            f"{'the bot' if holder.requester == BOT else f'<@{holder.requester}>'}) is in flight: "
            f"{holder.state.replace('_', ' ')}. Wait for it, or `/payflow cancel {holder.id}`."
        )
    route, deployments = await asyncio.gather(traffic_route(deps, service), deps.kube.deployments())
    live = color_named(catalog, service, route.value)
    if live is None:
        raise Refused(f"{route.object} points {service} at `{route.value}`, neither color: fix that first.")
    idle = other_color(live)  # type: ignore[arg-type]
    live_dep = deployments.get(catalog.deployment_name(service, live))  # type: ignore[arg-type]
    idle_dep = deployments.get(catalog.deployment_name(service, idle))
    if live_dep is None or idle_dep is None:
        raise Refused(
            f"{service} needs both deployments, {catalog.deployment_name(service, idle)} is missing."
        )
    if version is not None:
        to_image = catalog.image(service, version)
        if live_dep.image == to_image:
            raise Refused(
                f"{service} already runs `{version}` on the live color ({live}); nothing to deploy."
            )
        kind = "deploy"
    else:
        if not idle_dep.image:
            raise Refused(f"{idle_dep.name} has no image to roll back to.")
        to_image, kind = idle_dep.image, "rollback"
    replicas = max(live_dep.desired, catalog.service(service).min_replicas)
    change = Change(
        id=new_id(),
        kind=kind,
        service=service,
        from_color=live,  # type: ignore[arg-type]
        to_color=idle,
        from_image=live_dep.image,
        to_image=to_image,
        replicas=replicas,
        requester=requester,
        reason=reason,
        channel=channel,
        traffic_object=route.object,
        traffic_rv=route.resource_version,
        break_glass=break_glass,
        rollback_of=rollback_of.id if rollback_of else None,
    )
    if not await changes.open(change):
        raise Refused(f"Another change for {service} started a moment ago; see `/payflow changes {service}`.")
    await audit(deps, change, requester, "request", detail=reason)
    if break_glass:
        await _announce_break_glass(deps, change)
    try:
        progress = await deps.notifier.post(channel, progress_card(change, "starting"))
        change = await changes.update(change, progress=progress)
    except SlackError as exc:
        log.warning("%s: no progress message in %s (%s)", change.id, channel, exc.code)
    deps.spawn(prepare(deps, change.id))
    return Reply(None, detail=f"{change.id} {kind} {change.version}", target=service, audited=False)


async def _announce_break_glass(deps: Deps, change: Change) -> None:
    text = (
        f"🚨 Break-glass: <@{change.requester}> requested {change.kind} of *{change.service}* "
        f"`{change.version}` during a change freeze: {change.break_glass} (`{change.id}`)"
    )
    await deps.audit(
        AuditEntry(change.requester, "change.break_glass", "ok", change.service, text, change.channel)
    )
    try:
        await deps.notifier.post(deps.catalog.channels.audit, Notice(text, Tone.WARNING))
    except SlackError as exc:
        log.error("break-glass announcement not posted (%s): %s", exc.code, text)


async def prepare(deps: Deps, change_id: str) -> None:
    """Drive a change from where it stands to awaiting approval, and expire it if nobody decides."""
    changes = changes_of(deps)
    async with watching(changes, change_id, "prepare") as held:
        if not held:
            return
        change = await changes.get(change_id)
        steps = {
            REQUESTED: _start_rollout,
            ROLLING_OUT: _watch_rollout,
            SMOKE_TESTING: _smoke,
            AWAITING_APPROVAL: _await_decision,
        }
        while change is not None and change.state in steps:
            change = await steps[change.state](deps, changes, change)


async def fail(deps: Deps, changes: Changes, change: Change, reason: str) -> None:
    failed = await changes.move(change, FAILED, error=reason)
    await audit(deps, failed, BOT, "failed", "failed", reason)
    note = f"{failed.to_color} is left as it is and takes no traffic; the next deploy replaces it."
    await show(deps, failed.progress, progress_card(failed, "failed", f"❌ {reason}", note))


async def _start_rollout(deps: Deps, changes: Changes, change: Change) -> Change:
    name = deps.catalog.deployment_name(change.service, change.to_color)
    container = deps.catalog.container_name(change.service)
    try:
        await deps.kube.set_image(name, container, change.to_image, change.replicas)
    except KubeError as exc:
        await fail(deps, changes, change, f"could not update {name}: {exc}")
        return await changes.get(change.id)  # type: ignore[return-value]
    change = await changes.move(change, ROLLING_OUT)
    await audit(deps, change, BOT, "rolling_out", detail=f"{name} → {change.to_image} × {change.replicas}")
    return change


def _pod_problem(dep: DeploymentState, pods: list) -> str | None:
    current = [p for p in pods if dep.owns(p) and p.image == dep.image]  # old pods may be the broken ones
    waiting = Counter(p.waiting_reason for p in current if p.waiting_reason in FATAL_WAITING)
    if waiting:
        reason, n = waiting.most_common(1)[0]
        return f"{n} pod{'s' * (n > 1)} of {dep.name} in {reason} (image `{dep.image}`)"
    if dep.deadline_exceeded:
        detail = dep.conditions["Progressing"].message or "rollout stuck"
        return f"{dep.name}: ProgressDeadlineExceeded — {detail}"
    return None


async def _watch_rollout(deps: Deps, changes: Changes, change: Change) -> Change:
    """`kubectl rollout status`, with failure named from the pods' state."""
    name = deps.catalog.deployment_name(change.service, change.to_color)
    loop = asyncio.get_running_loop()
    started = loop.time()
    timeout = deps.catalog.env.rollout_timeout_seconds
    shown_ready = -1
    while True:
        current = await changes.get(change.id)
        if current is None or current.state != ROLLING_OUT:
            return current  # type: ignore[return-value]
        change = current
        await hold(changes, change.id)
        await changes.refresh_lock(change)
        try:
            dep, pods = await asyncio.gather(
                deps.kube.deployment(name), deps.kube.pods(f"app={change.service},color={change.to_color}")
            )
        except KubeError as exc:
            log.warning("%s: reading %s failed: %s", change.id, name, exc)
            await asyncio.sleep(POLL_SECONDS)
            continue
        problem = _pod_problem(dep, pods)
        if problem:
            await fail(deps, changes, change, problem)
            return await changes.get(change.id)  # type: ignore[return-value]
        if dep.image == change.to_image and dep.rollout_complete and dep.ready >= change.replicas:
            change = await changes.move(change, SMOKE_TESTING)
            await show(
                deps,
                change.progress,
                progress_card(change, "smoke testing", _ready_line(dep, loop.time() - started)),
            )
            return change
        elapsed = loop.time() - started
        if elapsed > timeout:
            await fail(
                deps,
                changes,
                change,
                f"{name} not rolled out after {timeout} s ({dep.ready}/{dep.desired} ready)",
            )
            return await changes.get(change.id)  # type: ignore[return-value]
        if dep.ready != shown_ready:
            shown_ready = dep.ready
            await show(deps, change.progress, progress_card(change, "rolling out", _ready_line(dep, elapsed)))
        await asyncio.sleep(POLL_SECONDS)


def _ready_line(dep: DeploymentState, elapsed: float) -> str:
    return f"{dep.name}: {dep.ready}/{dep.desired} ready · {elapsed:.0f} s"


async def _smoke(deps: Deps, changes: Changes, change: Change) -> Change:
    result = await smoke_test(deps.catalog, deps.kube, change.service, change.to_color, change.version)
    current = await changes.get(change.id)
    if current is None or current.state != SMOKE_TESTING:
        return current  # type: ignore[return-value]
    change = await changes.update(current, smoke=result.lines)
    if not result.passed:
        url = deps.catalog.health_url(change.service, change.to_color)
        await fail(deps, changes, change, f"smoke test of {url} failed: " + "; ".join(result.lines))
        return await changes.get(change.id)  # type: ignore[return-value]
    ttl = deps.catalog.env.approval_ttl_seconds
    expires = (datetime.now(UTC) + timedelta(seconds=ttl)).isoformat(timespec="seconds")
    change = await changes.move(change, AWAITING_APPROVAL, expires_at=expires)
    await audit(deps, change, BOT, "awaiting_approval", detail="smoke " + "; ".join(result.lines))
    return await ask_approval(deps, changes, change)


async def ask_approval(deps: Deps, changes: Changes, change: Change) -> Change:
    """Post the approval request (once: a resumed watcher reuses the message it finds)."""
    if change.approval is None:
        try:
            ref = await deps.notifier.post(deps.catalog.channels.approvals, approval_card(change))
            link = await deps.notifier.permalink(ref)
            change = await changes.update(change, approval=ref, approval_link=link)
        except SlackError as exc:
            log.error("%s: approval request not posted (%s); retrying", change.id, exc.code)
            await asyncio.sleep(POLL_SECONDS * 5)
            return change
        where = (
            f"<{change.approval_link}|in {deps.catalog.channels.approvals}>" if change.approval_link else ""
        )
        await show(
            deps,
            change.progress,
            progress_card(change, "waiting for approval", f"✋ Approval requested {where}"),
        )
        if change.rollback_of:
            original = await changes.get(change.rollback_of)
            if original is not None:
                warning = progress_card(change, "the bot proposes a rollback", *original.bake_checks[-2:])
                warning = type(warning)(
                    change,
                    warning.headline,
                    warning.lines,
                    approval_buttons(change, "Roll back"),
                    warning.tone,
                )
                await say_in_thread(deps, original, warning)
        elif change.progress is not None:
            await say_in_thread(deps, change, Notice(f"Approval requested {where}", Tone.INFO))
    return change


async def _await_decision(deps: Deps, changes: Changes, change: Change) -> Change:
    """Hold the lease until someone decides, or expire the change at its deadline."""
    while True:
        current = await changes.get(change.id)
        if current is None or current.state != AWAITING_APPROVAL:
            return current  # type: ignore[return-value]
        change = current
        if change.approval is None:
            change = await ask_approval(deps, changes, change)
            continue
        left = (parse_iso(change.expires_at or now_iso()) - datetime.now(UTC)).total_seconds()
        if left <= 0:
            return await expire(deps, changes, change)
        await hold(changes, change.id)
        await changes.refresh_lock(change)
        await asyncio.sleep(min(left, POLL_SECONDS * 2))


async def expire(deps: Deps, changes: Changes, change: Change) -> Change:
    expired = await changes.move(change, EXPIRED)
    await show(
        deps, expired.approval, approval_card(expired, f"⌛ expired {_when()}: nobody approved in time")
    )
    await show(
        deps, expired.progress, progress_card(expired, "expired", "⌛ Nobody approved in time; no switch.")
    )
    await audit(deps, expired, BOT, "expired", "expired")
    return expired


def _when() -> str:
    return datetime.now(UTC).strftime("%H:%M:%S UTC")


async def resume_changes(deps: Deps) -> None:
    """After a restart (or another replica's death) pick up every change still in flight."""
    from handlers.approvals import bake, settle_switch

    changes = changes_of(deps)
    while True:
        try:
            for change in await changes.all():
                if change.state in (REQUESTED, ROLLING_OUT, SMOKE_TESTING, AWAITING_APPROVAL):
                    deps.spawn(prepare(deps, change.id))
                elif change.state == SWITCHING:
                    deps.spawn(settle_switch(deps, change.id))
                elif change.state == BAKING:
                    deps.spawn(bake(deps, change.id))
        except StoreUnavailable as exc:
            log.warning("resuming changes: store unavailable: %s", exc)
        await asyncio.sleep(LEASE_SECONDS)
