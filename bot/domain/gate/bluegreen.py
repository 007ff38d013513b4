"""The blue-green kind of change (a deploy or a rollback): what the gate's phases do for it.

- plan: everything is refused before anything is written (live color, both deployments, a
  version that would change something);
- prepare: the guide's steps 1–2 — set the image on the idle color and scale it, watch the
  rollout like `kubectl rollout status`, smoke test its health URL. Idempotent, so a worker that
  takes over an expired lease simply runs it again;
- apply: the switch — one JSON patch of this service's route only, `test`ing its host, path and
  backend before `replace`; a patch sent whose answer never came is `Unanswered`, never void;
- schedule / check: the bake, one check of the new color against the SLOs at a time; no data is
  `no_data`, never a verdict;
- clean_up: scale the old color to 0 (its deployment stays for a rollback).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from bot.base.mrkdwn import escape
from bot.base.refused import Refused
from bot.config.catalog import Color, other_color
from bot.domain.gate.messages import Gateways
from bot.domain.gate.record import BOT, WORDINGS, Change, Check, Failed, Unanswered, Voided, Wording, new_id
from bot.domain.smoke import smoke_test
from bot.domain.topology import color_named, traffic_route, traffic_value
from bot.gateways.kube_objects import Conflict, DeploymentState, KubeError, PodState, Unreachable

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
FATAL_WAITING = {"ImagePullBackOff", "CrashLoopBackOff", "InvalidImageName", "CreateContainerConfigError"}

Step = Callable[..., Awaitable[None]]  # step(status, *lines): say what the phase is doing


def _to(change: Change) -> Color:
    """The color a blue-green change moves traffic to (always set by `plan`)."""
    if change.to_color is None:
        raise ValueError(f"{change.id} is not a blue-green change")
    return change.to_color


def _from(change: Change) -> Color:
    if change.from_color is None:
        raise ValueError(f"{change.id} is not a blue-green change")
    return change.from_color


async def plan(
    deps: Gateways,
    service: str,
    version: str | None,
    *,
    requester: str,
    reason: str,
    channel: str,
    break_glass: str | None = None,
    rollback_of: Change | None = None,
) -> Change:
    """A deploy of `version`, or (None) a rollback to what the idle color runs."""
    catalog = deps.catalog
    route, deployments = await asyncio.gather(
        traffic_route(catalog, deps.kube, service), deps.kube.deployments()
    )
    live = color_named(catalog, service, route.value)
    if live is None:
        raise Refused(f"{route.object} points {service} at `{route.value}`, neither color: fix that first.")
    idle = other_color(live)
    live_dep = deployments.get(catalog.deployment_name(service, live))
    idle_dep = deployments.get(catalog.deployment_name(service, idle))
    if live_dep is None or idle_dep is None:
        missing = catalog.deployment_name(service, live if live_dep is None else idle)
        raise Refused(f"{service} needs both deployments, {missing} is missing.")
    if version is not None:
        to_image, kind = catalog.image(service, version), "deploy"
        if live_dep.image == to_image:
            raise Refused(
                f"{service} already runs `{version}` on the live color ({live}); nothing to deploy."
            )
    else:
        if not idle_dep.image:
            raise Refused(f"{idle_dep.name} has no image to roll back to.")
        to_image, kind = idle_dep.image, "rollback"
        if idle_dep.image == live_dep.image:
            raise Refused(
                f"Both colors of {service} run `{live_dep.tag}`: a rollback would change nothing. "
                "Deploy the version you want instead."
            )
    return Change(
        id=new_id(),
        kind=kind,
        service=service,
        from_color=live,
        to_color=idle,
        from_image=live_dep.image,
        to_image=to_image,
        replicas=max(live_dep.desired, catalog.service(service).min_replicas),
        requester=requester,
        reason=reason,
        channel=channel,
        traffic_object=route.object,
        break_glass=break_glass,
        rollback_of=rollback_of.id if rollback_of else None,
    )


async def revert(deps: Gateways, change: Change, requester: str, reason: str) -> Change:
    """The rollback of a change that was switched: back to the color it left."""
    return await plan(
        deps,
        change.service,
        None,
        requester=requester,
        reason=reason,
        channel=change.channel,
        rollback_of=change if requester == BOT else None,
    )


def _pod_problem(dep: DeploymentState, pods: list[PodState]) -> str | None:
    current = [p for p in pods if dep.owns(p) and p.image == dep.image]  # old pods may be the broken ones
    waiting = Counter(p.waiting_reason for p in current if p.waiting_reason in FATAL_WAITING)
    if waiting:
        reason, n = waiting.most_common(1)[0]
        return f"{n} pod{'s' * (n > 1)} of {dep.name} in {reason} (image `{dep.image}`)"
    if dep.deadline_exceeded:
        detail = dep.conditions["Progressing"].message or "rollout stuck"
        return f"{dep.name}: ProgressDeadlineExceeded — {detail}"
    return None


async def prepare(deps: Gateways, change: Change, step: Step) -> tuple[str, ...]:
    """Roll out and smoke test the idle color; returns the smoke lines, raises `Failed`."""
    catalog, kube = deps.catalog, deps.kube
    name = catalog.deployment_name(change.service, _to(change))
    try:
        await kube.set_image(name, catalog.container_name(change.service), change.to_image, change.replicas)
    except KubeError as exc:
        raise Failed(f"could not update {name}: {exc}") from None
    await step("rolling out", f"{name} → {change.to_image} × {change.replicas}")
    loop = asyncio.get_running_loop()
    started = loop.time()
    timeout = catalog.env.rollout_timeout_seconds
    shown = -1
    while True:
        try:
            dep, pods = await asyncio.gather(
                kube.deployment(name), kube.pods(f"app={change.service},color={_to(change)}")
            )
        except KubeError as exc:
            log.warning("%s: reading %s failed: %s", change.id, name, exc)
            await asyncio.sleep(POLL_SECONDS)
            continue
        problem = _pod_problem(dep, pods)
        if problem:
            raise Failed(problem)
        elapsed = loop.time() - started
        line = f"{dep.name}: {dep.ready}/{dep.desired} ready · {elapsed:.0f} s"
        if dep.image == change.to_image and dep.rollout_complete and dep.ready >= change.replicas:
            await step("smoke testing", line)
            break
        if elapsed > timeout:
            raise Failed(f"{name} not rolled out after {timeout} s ({dep.ready}/{dep.desired} ready)")
        if dep.ready != shown:
            shown = dep.ready
            await step("rolling out", line)
        await asyncio.sleep(POLL_SECONDS)
    result = await smoke_test(catalog, kube, change.service, _to(change), change.image_version)
    if not result.passed:
        url = catalog.health_url(change.service, _to(change))
        raise Failed(f"smoke test of {url} failed: " + "; ".join(result.lines))
    return result.lines


async def recheck(deps: Gateways, change: Change) -> str | None:
    """At the click: the cluster must still be what the approver saw — the idle color runs the
    approved image, fully ready, and THIS service's route still points at the live color.
    Nothing else in the traffic object matters (it is shared by every service)."""
    catalog = deps.catalog
    name = catalog.deployment_name(change.service, _to(change))
    dep, route = await asyncio.gather(
        deps.kube.deployment(name), traffic_route(catalog, deps.kube, change.service)
    )
    if dep.image != change.to_image:
        return f"{name} now runs `{dep.image}`, not the approved `{change.to_image}`"
    if not (dep.rollout_complete and dep.ready >= change.replicas):
        return f"{name} is not fully ready ({dep.ready}/{dep.desired} ready)"
    if route.value != traffic_value(catalog, change.service, _from(change)):
        return f"{route.object} now points {change.service} at `{route.value}`"
    return None


async def apply(deps: Gateways, change: Change) -> str:
    """The switch; returns the audit detail, raises `Voided` when nothing was written."""
    catalog = deps.catalog
    expected = traffic_value(catalog, change.service, _from(change))
    try:
        route = await traffic_route(catalog, deps.kube, change.service)
        if route.value != expected:
            raise Voided(f"{route.object} now points {change.service} at `{route.value}`")
        kind = catalog.service(change.service).traffic.kind
        after = await deps.kube.switch(kind, route, traffic_value(catalog, change.service, _to(change)))
    except Conflict as exc:
        raise Voided(
            f"{change.service}'s route in {change.traffic_object} changed under the switch ({exc})"
        ) from None
    except Unreachable as exc:
        if exc.uncertain:
            raise Unanswered(str(exc)) from None
        raise Voided(f"the switch was refused by Kubernetes ({exc})") from None
    except KubeError as exc:
        raise Voided(f"the switch was refused by Kubernetes ({exc})") from None
    if color_named(catalog, change.service, after.value) != _to(change):
        raise Voided(f"after the switch {after.object} points at `{after.value}`; check it now")
    return f"{after.object} {after.pointer} → {after.value}"


async def applied(deps: Gateways, change: Change) -> bool:
    """After a worker died mid-switch: did the switch happen? Read from the cluster, never guessed."""
    route = await traffic_route(deps.catalog, deps.kube, change.service)
    return color_named(deps.catalog, change.service, route.value) == _to(change)


def schedule(deps: Gateways, change: Change) -> tuple[float, float]:
    """The bake: how long, and how often a check (per environment)."""
    env = deps.catalog.env
    return float(env.bake_seconds), float(env.bake_interval_seconds)


async def check(deps: Gateways, change: Change) -> Check:
    slos, env = deps.catalog.slos, deps.catalog.env
    at = datetime.now(UTC).strftime("%H:%M:%S")
    if deps.prom is None:
        return Check("no_data", f"{at} ? no data: Prometheus is not configured (PROMETHEUS_URL)")
    reading = await deps.prom.color_health(change.service, _to(change), env.bake_window)
    if reading.error_rate is None or reading.p95_ms is None:
        return Check("no_data", f"{at} ? no data: {reading.problem or 'no series for the new color'}")
    ok = reading.error_rate <= slos.error_rate and reading.p95_ms <= slos.p95_ms
    return Check(
        "ok" if ok else "breach",
        f"{at} {'✓' if ok else '✗'} error rate {reading.error_rate * 100:.2f} % "
        f"(SLO {slos.error_rate * 100:.2f} %), p95 {reading.p95_ms:.0f} ms (SLO {slos.p95_ms:.0f} ms)",
    )


async def clean_up(deps: Gateways, change: Change) -> str:
    """The guide's last step: scale the old color to 0 (the deployment stays for a rollback)."""
    old = deps.catalog.deployment_name(change.service, _from(change))
    try:
        await deps.kube.scale_to(old, 0)
    except KubeError as exc:
        return f"⚠️ could not scale {old} to 0: {exc}"
    return f"{old} scaled to 0 (kept for a rollback)."


def wording(c: Change) -> Wording:
    title = (
        f"Rollback of *{c.service}* to {c.to_color} `{c.image_version}`"
        if c.is_rollback
        else f"Deploy of *{c.service}* `{c.image_version}` to {c.to_color}"
    )
    before = f"{c.from_color} `{escape(c.from_version)}`"
    after = f"{c.to_color} `{escape(c.image_version)}`"
    icons = {"blue": "🔵 ", "green": "🟢 "}
    traffic = f"{icons.get(c.from_color or '', '')}{before} → {icons.get(c.to_color or '', '')}{after}"
    return Wording(
        title=title,
        question=f"Switch *{c.service}* traffic from {before} to {after}?",
        confirm=("Switch traffic?", "Switch"),
        done=f"traffic now on {after} (was {before})",
        unchanged=f"traffic stays on {c.from_color}",
        not_done="traffic was not switched",
        summary=f"{c.from_color} {c.from_version} → {c.to_color} {c.image_version}",
        fields=(
            ("Service", c.service),
            ("Change", f"{c.kind} `{c.id}`"),
            ("Traffic", traffic),
            ("Image", f"`{escape(c.to_image)}`"),
            ("Replicas", str(c.replicas)),
        ),
        after_failure=f"{c.to_color} is left as it is and takes no traffic; the next deploy replaces it.",
        after_cancel=f"{c.to_color} keeps `{c.image_version}` but takes no traffic.",
    )


WORDINGS["deploy"] = WORDINGS["rollback"] = wording
