"""`/payflow scale <service> <replicas>`: the live color, through the scale subresource, with
the resourceVersion we read, so a concurrent change makes us stop instead of overwrite."""

from __future__ import annotations

from bot.domain.views import Notice, Reply, Scaled
from bot.gateways.kube import Conflict
from handlers.base import Context, Refused, live_color
from handlers.commands import Scale
from handlers.locks import refuse_if_locked


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
