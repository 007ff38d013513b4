"""`/payflow health [service]`: the guide's health checks in one message, worst first — ready
pods per color and restarts (one read of the namespace), the live color's `/health`, and the
dependencies (PostgreSQL, Redis, RabbitMQ) by their catalog checks."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from bot.base.roles import Role
from bot.config.catalog import Catalog
from bot.domain.topology import live_color
from bot.domain.views import VERDICTS, HealthItem, HealthReport, Reply, worst
from bot.gateways.healthcheck import ProbeResult, probe_dependency, probe_many
from bot.gateways.prom import Prom, Reading
from handlers.base import Context
from handlers.registry import at_most, command, service_arg
from handlers.status import service_status


@dataclass(frozen=True)
class Health:
    service: str | None = None


def _parse(args: list[str], catalog: Catalog) -> Health:
    at_most(args, 1, "health")
    return Health(service_arg(args[0], catalog, "health") if args else None)


def _order(items: list[HealthItem]) -> tuple[HealthItem, ...]:
    return tuple(sorted(items, key=lambda i: (VERDICTS.index(i.verdict), i.kind != "service", i.name)))


async def service_items(ctx: Context, names: list[str]) -> list[HealthItem]:
    """The probes start as soon as the traffic objects say which color is live (the ingresses
    alone when every service is routed by one), while the Services, deployments and pods (the
    big lists) are still being read; the pods' view of each color comes from the same read, so
    the answer is the one a snapshot first, probes after would give."""
    read = ctx.kube.read_namespace()
    ingresses = await asyncio.shield(read.ingresses)
    by_selector = any(ctx.catalog.service(name).traffic.kind != "ingress" for name in names)
    services = await asyncio.shield(read.services) if by_selector else {}
    lives = {name: live_color(ctx.catalog, name, ingresses, services) for name in names}
    targets = [(name, live) for name, live in lives.items() if live]
    probing = asyncio.ensure_future(probe_many(ctx.catalog, ctx.kube, targets))
    try:
        snap = await asyncio.shield(read.snapshot)
    except BaseException:
        probing.cancel()
        await asyncio.gather(probing, return_exceptions=True)
        raise
    statuses = [service_status(ctx.catalog, name, snap) for name in names]
    results = iter(await probing)
    unprobed = ProbeResult(False, "no live color to probe")
    probes = [next(results) if lives[s.name] else unprobed for s in statuses]
    items = []
    for s, probe in zip(statuses, probes, strict=True):
        verdicts, lines = [], []
        for c in s.colors:
            live = " (live)" if c.live else ""
            lines.append(
                f"{c.color}{live} {c.version or '—'}: {c.ready}/{c.desired} ready, "
                f"{c.restarts} restart{'s' * (c.restarts != 1)}, {c.rollout}"
            )
            for problem in c.problems:
                lines.append(f"{c.color}: {problem}")
                verdicts.append("bad" if c.live else "warn")
            if c.live and c.restarts:
                verdicts.append("warn")
        lines += list(s.problems)
        verdicts += ["bad"] * len(s.problems)
        lines.append(f"{s.live or 'live color'}: {probe.summary}")
        verdicts.append("ok" if probe.ok else "bad" if probe.ran else "unknown")
        items.append(HealthItem(s.name, "service", worst(verdicts), tuple(lines)))
    return items


def dependency_verdict(reading: Reading, probe: ProbeResult | None) -> tuple[str, list[str]]:
    """Down if any check says down; up if one says up and none down; otherwise unknown."""
    lines, verdicts = [], []
    if reading.value is None:
        lines.append(f"check: {reading.problem or 'no data'}")
        verdicts.append("unknown")
    else:
        up = reading.value >= 1
        lines.append(f"check: {'up' if up else 'DOWN'} ({reading.value:g})")
        verdicts.append("ok" if up else "bad")
    if probe is not None:
        lines.append(probe.summary)
        verdicts.append("ok" if probe.ok else "bad")
    if "bad" in verdicts:
        return "bad", lines
    return ("ok" if "ok" in verdicts else "unknown"), lines


async def dependency_items(catalog: Catalog, prom: Prom | None) -> list[HealthItem]:
    deps = catalog.dependencies
    if not deps:
        return []
    if prom is None:
        readings = {name: Reading(None, "PROMETHEUS_URL not set") for name in deps}
    else:
        readings = await prom.dependencies(deps)
    probed = {name: dep.probe for name, dep in deps.items() if dep.probe is not None}
    results = await asyncio.gather(*(probe_dependency(p) for p in probed.values()))
    probes = dict(zip(probed, results, strict=True))
    items = []
    for name in deps:
        verdict, lines = dependency_verdict(readings[name], probes.get(name))
        items.append(HealthItem(name, "dependency", verdict, tuple(lines)))
    return items


@command(
    "health [service]",
    summary="Ready pods per color, restarts, the live color's /health, and PostgreSQL, Redis and "
    "RabbitMQ; worst first.",
    role=Role.VIEWER,
    examples=("/payflow health", "/payflow health wallet-service"),
    parse=_parse,
)
async def show_health(cmd: Health, ctx: Context) -> Reply:
    names = [cmd.service] if cmd.service else list(ctx.catalog.services)
    services, deps = await asyncio.gather(
        service_items(ctx, names), dependency_items(ctx.catalog, ctx.deps.prom)
    )
    notes = ("dependency checks need Prometheus: PROMETHEUS_URL is not set",) if ctx.deps.prom is None else ()
    report = HealthReport(ctx.catalog.environment, _order(services + deps), notes)
    return Reply(report, public=True, detail=f"verdict {report.verdict}")
