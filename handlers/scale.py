"""`/payflow scale <service> <replicas>`: the live color, through the scale subresource, with
the resourceVersion we read, so a concurrent change makes us stop instead of overwrite."""

from __future__ import annotations

from dataclasses import dataclass

from bot.base.roles import Role
from bot.config.catalog import Catalog
from bot.domain.views import Notice, Reply, Scaled
from bot.gateways.kube_objects import Conflict
from handlers.base import Context, Refused, live_color
from handlers.locks import refuse_if_locked
from handlers.registry import Usage, at_most, command, service_arg, whole_number


@dataclass(frozen=True)
class Scale:
    service: str
    replicas: int


def _parse(args: list[str], catalog: Catalog) -> Scale:
    if len(args) < 2:
        raise Usage("Say which service and how many replicas.", "scale")
    at_most(args, 2, "scale")
    service = service_arg(args[0], catalog, "scale")
    spec = catalog.service(service)
    bounds = f"{spec.min_replicas}–{spec.max_replicas}"
    word = args[1]
    if word.startswith("-") and word[1:].isdigit():
        raise Usage(f"Replicas cannot be negative; {service} takes {bounds}.", "scale")
    replicas = whole_number(word, "Replicas", "scale")
    if not spec.min_replicas <= replicas <= spec.max_replicas:
        raise Usage(f"{replicas} replicas is out of bounds: {service} takes {bounds}.", "scale")
    return Scale(service, replicas)


@command(
    "scale <service> <replicas>",
    summary="Scale the live color of a service, within its replica bounds.",
    role=Role.OPERATOR,
    examples=("/payflow scale api-gateway 5",),
    parse=_parse,
    working=lambda cmd: f"Scaling {cmd.service} to {cmd.replicas} replicas…",
)
async def scale(cmd: Scale, ctx: Context) -> Reply:
    await refuse_if_locked(ctx, cmd.service)
    color = await live_color(ctx, cmd.service, otherwise="nothing was scaled")
    deployment = ctx.catalog.deployment_name(cmd.service, color)
    current = await ctx.kube.read_scale(deployment)
    if current.replicas == cmd.replicas:
        text = f"{cmd.service} ({color}) already runs {cmd.replicas} replicas; nothing to do."
        return Reply(Notice(text), detail="no change")
    try:
        await ctx.kube.write_scale(deployment, cmd.replicas, expected=current.replicas)
    except Conflict:
        raise Refused(
            f"Someone else changed the replicas of {deployment} while we were scaling it; "
            "nothing was changed. "
            "Check `/payflow status` and try again."
        ) from None
    view = Scaled(ctx.actor, cmd.service, color, current.replicas, cmd.replicas)
    return Reply(view, public=True, detail=f"{color} {current.replicas} → {cmd.replicas}")
