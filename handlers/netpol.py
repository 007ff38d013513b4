"""`/payflow netpol [service]`: the guide's `kubectl get networkpolicies`, answered with what it is
asked for — which services' pods no policy isolates (issue 13). Coverage is judged on the pods'
real labels, per color, by Kubernetes' selector rules (bot/domain/netpol.py), never on names."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from bot.base.mrkdwn import escape
from bot.base.roles import Role
from bot.config.catalog import COLORS, Catalog
from bot.domain import netpol
from bot.domain.views import Facts, Reply, Report, Table, Text, Tone
from handlers.base import Context
from handlers.registry import at_most, command, service_arg

MAX_NAMED = 10  # policies named in the text below the table; the rest are counted


@dataclass(frozen=True)
class Netpol:
    service: str | None = None


def _parse(args: list[str], catalog: Catalog) -> Netpol:
    at_most(args, 1, "netpol")
    return Netpol(service_arg(args[0], catalog, "netpol") if args else None)


def _named(names: list[str]) -> str:
    shown = ", ".join(f"`{escape(n)}`" for n in names[:MAX_NAMED])
    more = len(names) - MAX_NAMED
    return shown + (f" …and {more} more" if more > 0 else "")


@command(
    "netpol [service]",
    summary="NetworkPolicies, and per service and color whether its pods are isolated (ingress, egress).",
    role=Role.VIEWER,
    examples=("/payflow netpol", "/payflow netpol wallet-service"),
    parse=_parse,
)
async def netpol_report(cmd: Netpol, ctx: Context) -> Reply:
    snap, objects = await asyncio.gather(ctx.kube.snapshot(), ctx.kube.network_policies())
    policies = [netpol.policy(o) for o in objects]
    services = [cmd.service] if cmd.service else list(ctx.catalog.services)
    rows: list[tuple[str, ...]] = []
    attention: list[bool] = []
    used: set[str] = set()
    gaps: list[str] = []
    for service in services:
        for color in COLORS:
            name = ctx.catalog.deployment_name(service, color)
            dep = snap.deployments.get(name)
            pods = [p.labels for p in snap.pods_of(dep)] if dep else []
            if not pods:
                rows.append((service, color, "0", "—", "—"))
                attention.append(False)
                continue
            found = {d: netpol.direction(policies, pods, d) for d in netpol.DIRECTIONS}
            for d in found.values():
                used.update(d.policies + d.deny_all)
            missing = [d.lower() for d, f in found.items() if not f.covered]
            if missing:
                gaps.append(f"*{service}* {color} ({' and '.join(missing)})")
            cells = (found[d].describe(len(pods)) for d in netpol.DIRECTIONS)
            rows.append((service, color, str(len(pods)), *cells))
            attention.append(bool(missing))
    table = Table(
        ("service", "color", "pods", "ingress", "egress"),
        tuple(rows),
        attention=tuple(attention),
        noun="service colors",
        empty="no services",
    )
    deny = [p.name for p in policies if p.default_deny_ingress]
    facts = Facts(
        (
            ("Policies", f"{len(policies)} in `{ctx.kube.namespace}`"),
            ("Default deny (ingress)", _named(deny) if deny else "none ⚠️"),
        )
    )
    parts: list[Facts | Table | Text] = [facts]
    if gaps:
        parts.append(
            Text(
                f"Not isolated or allowed nothing: {', '.join(gaps[:MAX_NAMED])}"
                + (f" …and {len(gaps) - MAX_NAMED} more" if len(gaps) > MAX_NAMED else ""),
                Tone.WARNING,
            )
        )
    parts.append(table)
    others = sorted(p.name for p in policies if p.name not in used and p.name not in deny)
    if others and not cmd.service:
        parts.append(Text(f"Selecting no service's pods: {_named(others)}"))
    tone = Tone.WARNING if gaps else Tone.SUCCESS
    title = f"Network policies · {cmd.service or ctx.catalog.namespace}"
    return Reply(
        Report(title, tuple(parts), tone=tone, filename="netpol.txt"),
        public=True,
        detail=f"{len(gaps)} service color(s) not covered",
    )
