"""Approve / Reject, the traffic switch, the bake watch and the clean-up after it.

The switch happens only when: the clicker is an approver and (four-eyes) not the requester; the
click wins the one atomic awaiting_approval → switching move; the approval has not expired;
and the cluster still is what the approver saw — the idle color runs the approved image and is
fully ready, the traffic object still points at the live color at the recorded resourceVersion.
The switch itself is one conditional JSON patch, read back to confirm; an error voids the
change and is never retried blindly.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import UTC, datetime

from bot.changes import (
    AWAITING_APPROVAL,
    BAKING,
    BOT,
    DONE,
    EXPIRED,
    REJECTED,
    ROLLBACK_PROPOSED,
    SWITCHING,
    VOIDED,
    Change,
    Changes,
    Transition,
    now_iso,
    parse_iso,
)
from bot.kube import KubeError
from bot.topology import color_named, traffic_value
from bot.views import Notice, Reply, Tone
from handlers.base import Context, Deps, Refused
from handlers.change_messages import approval_card, audit, progress_card, say_in_thread, show
from handlers.deploy import (
    changes_of,
    expire,
    hold,
    request_change,
    traffic_route,
    watching,
)
from handlers.locks import refuse_if_locked

log = logging.getLogger(__name__)


def _who(user: str | None) -> str:
    return "the bot" if user == BOT else f"<@{user}>"


def decided(change: Change) -> str:
    """What a late clicker is told: who already decided, and what became of it."""
    by = f" by {_who(change.decided_by)}" if change.decided_by else ""
    at = f" at {parse_iso(change.decided_at):%H:%M:%S UTC}" if change.decided_at else ""
    states = {
        SWITCHING: f"Already approved{by}{at}; the switch is under way.",
        BAKING: f"Already approved{by}{at}; traffic is on {change.to_color} `{change.version}`.",
        DONE: f"Already approved{by}{at} and finished.",
        REJECTED: f"Already rejected{by}{at}.",
        EXPIRED: "This approval expired; request the change again.",
        VOIDED: f"This change was voided: {change.error}",
    }
    return states.get(change.state, f"{change.id} is {change.state.replace('_', ' ')}; nothing to approve.")


async def _load(ctx: Context, change_id: str) -> tuple[Changes, Change]:
    changes = changes_of(ctx.deps)
    change = await changes.get(change_id)
    if change is None:
        raise Refused(f"No change `{change_id}` is known; it may have been cleaned up.")
    if change.approval is None and ctx.message is not None:
        # clicked before the watcher recorded where it posted the request: that is the message
        change = replace(change, approval=ctx.message)
    if change.approval is not None and change.approval_link is None:
        # every transition from here on is audited with the approval message's permalink
        change = replace(change, approval_link=await ctx.notifier.permalink(change.approval))
    return changes, change


async def approve(change_id: str, ctx: Context) -> Reply:
    changes, change = await _load(ctx, change_id)
    if change.state != AWAITING_APPROVAL:
        return Reply(
            Notice(decided(change), Tone.WARNING), detail=f"{change_id} {change.state}", target=change.service
        )
    if ctx.catalog.env.four_eyes and ctx.actor == change.requester:
        raise Refused("You requested this change: four-eyes rules need another approver to approve it.")
    await refuse_if_locked(ctx.store, change.service)
    if change.expires_at and datetime.now(UTC) >= parse_iso(change.expires_at):
        try:
            await expire(ctx.deps, changes, change)
        except Transition as moved:
            change = moved.current or change
        raise Refused("This approval has expired; nothing was switched. Request the change again.")
    try:
        change = await changes.move(change, SWITCHING, decided_by=ctx.actor, decided_at=now_iso())
    except Transition as moved:
        text = decided(moved.current) if moved.current else "The change is gone."
        return Reply(Notice(text, Tone.WARNING), detail=f"{change_id} lost the race", target=change.service)
    await audit(ctx.deps, change, ctx.actor, "approve")
    switched, message = await switch(ctx.deps, changes, change)
    tone = Tone.SUCCESS if switched else Tone.ERROR
    return Reply(Notice(message, tone), detail=f"{change_id}: {message}", target=change.service)


async def reject(change_id: str, ctx: Context) -> Reply:
    changes, change = await _load(ctx, change_id)
    if change.state != AWAITING_APPROVAL:
        return Reply(
            Notice(decided(change), Tone.WARNING), detail=f"{change_id} {change.state}", target=change.service
        )
    try:
        change = await changes.move(change, REJECTED, decided_by=ctx.actor, decided_at=now_iso())
    except Transition as moved:
        text = decided(moved.current) if moved.current else "The change is gone."
        return Reply(Notice(text, Tone.WARNING), target=change.service)
    await audit(ctx.deps, change, ctx.actor, "reject", "rejected")
    await show(ctx.deps, change.approval, approval_card(change, f"🚫 rejected by <@{ctx.actor}>"))
    await show(ctx.deps, change.progress, progress_card(change, f"rejected by <@{ctx.actor}>", "No switch."))
    return Reply(
        Notice(f"Rejected {change.id}; traffic stays on {change.from_color}.", Tone.INFO),
        target=change.service,
    )


async def _recheck(deps: Deps, change: Change) -> str | None:
    """The cluster must still be exactly what the approver saw."""
    catalog = deps.catalog
    name = catalog.deployment_name(change.service, change.to_color)
    dep, route = await asyncio.gather(deps.kube.deployment(name), traffic_route(deps, change.service))
    if dep.image != change.to_image:
        return f"{name} now runs `{dep.image}`, not the approved `{change.to_image}`"
    if not (dep.rollout_complete and dep.ready >= change.replicas):
        return f"{name} is not fully ready ({dep.ready}/{dep.desired} ready)"
    if route.value != traffic_value(catalog, change.service, change.from_color):
        return f"{route.object} now points {change.service} at `{route.value}`"
    if route.resource_version != change.traffic_rv:
        return (
            f"{route.object} was modified since the approval was requested "
            f"(resourceVersion {change.traffic_rv} → {route.resource_version})"
        )
    return None


async def void(deps: Deps, changes: Changes, change: Change, reason: str) -> None:
    voided = await changes.move(change, VOIDED, error=reason)
    await audit(deps, voided, voided.decided_by or BOT, "voided", "voided", reason)
    text = f"⛔ voided: {reason}. Nothing was switched; request the change again."
    await show(deps, voided.approval, approval_card(voided, text))
    await show(deps, voided.progress, progress_card(voided, "voided", f"⛔ {reason}. No switch."))


async def switch(deps: Deps, changes: Changes, change: Change) -> tuple[bool, str]:
    """Re-check, one conditional write, read back. Returns (switched, what to tell the approver)."""
    catalog = deps.catalog
    try:
        problem = await _recheck(deps, change)
    except KubeError as exc:
        problem = f"could not re-check the cluster: {exc}"
    if problem:
        await void(deps, changes, change, problem)
        return False, f"Voided: {problem}. Nothing was switched."
    kind = catalog.service(change.service).traffic.kind
    try:
        route = await traffic_route(deps, change.service)
        await deps.kube.switch(kind, route, traffic_value(catalog, change.service, change.to_color))
        after = await traffic_route(deps, change.service)
    except KubeError as exc:
        reason = f"the switch was refused by Kubernetes ({exc})"
        await void(deps, changes, change, reason)
        return False, f"Voided: {reason}. Traffic was not switched."
    if color_named(catalog, change.service, after.value) != change.to_color:
        reason = f"after the switch {after.object} points at `{after.value}`; check it now"
        await void(deps, changes, change, reason)
        return False, f"⚠️ {reason}."
    change = await changes.move(change, BAKING, switched_at=now_iso())
    what = (
        f"by <@{change.decided_by}> at {datetime.now(UTC):%H:%M:%S UTC}: traffic now on "
        f"{change.to_color} `{change.version}` (was {change.from_color} `{change.from_version}`)"
    )
    verdict = f"✅ approved {what}"
    await audit(deps, change, change.decided_by or BOT, "switch", detail=f"{after.object} → {after.value}")
    await show(deps, change.approval, approval_card(change, verdict))
    bake_for = catalog.env.bake_seconds
    status = f"switched, baking {bake_for // 60} min" if bake_for else "switched"
    await show(deps, change.progress, progress_card(change, status, verdict))
    await say_in_thread(deps, change, Notice(f"Approved {what}", Tone.SUCCESS))
    deps.spawn(bake(deps, change.id))
    return (
        True,
        f"Traffic now on {change.to_color} `{change.version}` "
        f"(was {change.from_color} `{change.from_version}`).",
    )


async def settle_switch(deps: Deps, change_id: str) -> None:
    """A process died mid-switch: decide from the cluster whether it happened, never guess."""
    changes = changes_of(deps)
    async with watching(changes, change_id, "switch") as held:
        change = await changes.get(change_id) if held else None
        if change is None or change.state != SWITCHING:
            return
        route = await traffic_route(deps, change.service)
        if color_named(deps.catalog, change.service, route.value) == change.to_color:
            change = await changes.move(change, BAKING, switched_at=now_iso())
            await audit(deps, change, BOT, "switch", detail="confirmed after a restart")
            deps.spawn(bake(deps, change.id))
        else:
            await void(deps, changes, change, "the bot restarted before the switch; traffic was not switched")


def _judge(deps: Deps, reading: object | None) -> tuple[bool, str]:
    slos = deps.catalog.slos
    at = datetime.now(UTC).strftime("%H:%M:%S")
    if reading is None:
        return False, f"{at} no data: Prometheus is not configured (PROMETHEUS_URL)"
    error_rate, p95 = getattr(reading, "error_rate", None), getattr(reading, "p95_ms", None)
    problem = getattr(reading, "problem", None)
    if error_rate is None or p95 is None:
        return False, f"{at} no data: {problem or 'no series for the new color'}"
    ok = error_rate <= slos.error_rate and p95 <= slos.p95_ms
    mark = "✓" if ok else "✗"
    return ok, (
        f"{at} {mark} error rate {error_rate * 100:.2f} % (SLO {slos.error_rate * 100:.2f} %), "
        f"p95 {p95:.0f} ms (SLO {slos.p95_ms:.0f} ms)"
    )


async def bake(deps: Deps, change_id: str) -> None:
    """Watch the new color against the SLOs; two bad checks in a row propose a rollback."""
    changes = changes_of(deps)
    env = deps.catalog.env
    async with watching(changes, change_id, "bake") as held:
        change = await changes.get(change_id) if held else None
        if change is None or change.state != BAKING:
            return
        end = parse_iso(change.switched_at or now_iso()).timestamp() + env.bake_seconds
        bad = 0
        for line in change.bake_checks[-2:]:
            bad = bad + 1 if "✓" not in line else 0
        while (left := end - datetime.now(UTC).timestamp()) > 0:
            await asyncio.sleep(min(left, env.bake_interval_seconds))
            await hold(changes, change_id)
            await changes.refresh_lock(change)
            reading = None
            if deps.prom is not None:
                reading = await deps.prom.color_health(change.service, change.to_color, env.bake_window)
            ok, line = _judge(deps, reading)
            change = await changes.update(change, bake_checks=(*change.bake_checks, line))
            bad = 0 if ok else bad + 1
            if bad >= 2:
                await propose_rollback(deps, changes, change)
                return
            status = f"baking · {len(change.bake_checks)} check(s)"
            await show(deps, change.progress, progress_card(change, status, *change.bake_checks[-3:]))
        await _finish(deps, changes, change)


async def _finish(deps: Deps, changes: Changes, change: Change) -> None:
    """The guide's last step: scale the old color to 0 (the deployment stays for a rollback)."""
    old = deps.catalog.deployment_name(change.service, change.from_color)
    try:
        await deps.kube.scale_to(old, 0)
        cleanup = f"{old} scaled to 0 (kept for a rollback)."
    except KubeError as exc:
        cleanup = f"⚠️ could not scale {old} to 0: {exc}"
    change = await changes.move(change, DONE)
    checks = len(change.bake_checks)
    summary = f"✅ Bake passed ({checks} check{'s' * (checks != 1)}). {cleanup}"
    await audit(deps, change, BOT, "done", detail=cleanup)
    await show(deps, change.progress, progress_card(change, "done", summary, *change.bake_checks[-3:]))
    await say_in_thread(deps, change, Notice(summary, Tone.SUCCESS))


async def propose_rollback(deps: Deps, changes: Changes, change: Change) -> None:
    """The bot requests the rollback itself, so any approver (four-eyes holds) may approve it."""
    change = await changes.move(change, ROLLBACK_PROPOSED)
    lines = ("⚠️ Two failed bake checks in a row:", *change.bake_checks[-2:])
    await audit(deps, change, BOT, "rollback_proposed", "failed", "; ".join(change.bake_checks[-2:]))
    await show(deps, change.progress, progress_card(change, "bake failed, rollback proposed", *lines))
    try:
        reply = await request_change(
            deps,
            None,
            change.service,
            None,
            f"bake of {change.id} failed",
            None,
            requester=BOT,
            rollback_of=change,
        )
        log.info("rollback requested for %s: %s", change.id, reply.detail)
    except Refused as exc:
        await say_in_thread(
            deps, change, Notice(f"⚠️ Bake failed, but no rollback could be requested: {exc}", Tone.ERROR)
        )
