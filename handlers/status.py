"""`/payflow status [service]`: one read of the namespace, one compact report, problems first."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from bot.base.roles import Role
from bot.config.catalog import COLORS, Catalog, Color
from bot.domain.topology import live_color, traffic_label
from bot.domain.views import ColorStatus, Reply, ServiceStatus, StatusReport
from bot.gateways.kube_objects import DeploymentState, PodState, Snapshot
from handlers.base import Context
from handlers.registry import at_most, command, service_arg


@dataclass(frozen=True)
class Status:
    service: str | None = None


def _parse(args: list[str], catalog: Catalog) -> Status:
    at_most(args, 1, "status")
    return Status(service_arg(args[0], catalog, "status") if args else None)


BAD_WAITING = {"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError"}


def _rollout(dep: DeploymentState) -> str:
    if dep.deadline_exceeded:
        return "deadline exceeded"
    if dep.desired == 0 and dep.total == 0:
        return "scaled to zero"
    return "complete" if dep.rollout_complete else "progressing"


def color_status(catalog: Catalog, service: str, color: Color, live: bool, snap: Snapshot) -> ColorStatus:
    name = catalog.deployment_name(service, color)
    dep = snap.deployments.get(name)
    if dep is None:
        return ColorStatus(color, name, live, None, 0, 0, 0, "missing", (f"deployment {name} not found",))
    pods: list[PodState] = snap.pods_of(dep)
    problems: list[str] = []
    waiting = Counter(p.waiting_reason for p in pods if p.waiting_reason in BAD_WAITING)
    problems += [f"{n} pod{'s' * (n > 1)} in {reason}" for reason, n in sorted(waiting.items())]
    if dep.deadline_exceeded:
        problems.append("rollout stuck (ProgressDeadlineExceeded)")
    if live and dep.desired == 0:
        problems.append("live color is scaled to zero")
    elif live and dep.ready < dep.desired:
        problems.append(f"only {dep.ready}/{dep.desired} pods ready")
    return ColorStatus(
        color=color,
        deployment=name,
        live=live,
        version=dep.tag,
        desired=dep.desired,
        ready=dep.ready,
        restarts=sum(p.restarts for p in pods),
        rollout=_rollout(dep),
        problems=tuple(problems),
    )


def service_status(catalog: Catalog, service: str, snap: Snapshot) -> ServiceStatus:
    live = live_color(catalog, service, snap.ingresses, snap.services)
    colors = tuple(color_status(catalog, service, c, c == live, snap) for c in COLORS)
    problems = (
        () if live else (f"cannot tell the live color: {traffic_label(catalog, service)} points at neither",)
    )
    return ServiceStatus(service, live, colors, problems)


@command(
    "status [service]",
    summary="Live color, versions, ready pods, restarts and rollout state of every service (or one).",
    role=Role.VIEWER,
    examples=("/payflow status", "/payflow status wallet-service"),
    parse=_parse,
)
async def show_status(cmd: Status, ctx: Context) -> Reply:
    snap = await ctx.kube.snapshot()
    names = [cmd.service] if cmd.service else list(ctx.catalog.services)
    report = StatusReport(
        environment=ctx.catalog.environment,
        namespace=ctx.catalog.namespace,
        services=tuple(service_status(ctx.catalog, name, snap) for name in names),
    )
    return Reply(report, public=True)
