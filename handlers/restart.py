"""`/payflow restart <service>`: the guide's `kubectl rollout restart` of the live color, after a
confirm dialog; no traffic switch. The message is updated in place until the rollout completes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.base.messages import MessageRef
from bot.base.roles import Role
from bot.config.catalog import Catalog
from bot.domain.views import Button, Confirm, Notice, Reply, Tone
from handlers.base import Context, Deps, Refused, live_color
from handlers.locks import refuse_if_locked
from handlers.registry import Usage, action, at_most, command, service_arg


@dataclass(frozen=True)
class Restart:
    service: str


def _parse(args: list[str], catalog: Catalog) -> Restart:
    if not args:
        raise Usage("Say which service to restart.", "restart")
    at_most(args, 1, "restart")
    return Restart(service_arg(args[0], catalog, "restart"))


POLL_SECONDS = 1.0


async def _live_deployment(ctx: Context, service: str) -> tuple[str, str]:
    color = await live_color(ctx, service, otherwise="nothing was restarted")
    return color, ctx.catalog.deployment_name(service, color)


@command(
    "restart <service>",
    summary="Rolling restart of the live color (kubectl rollout restart), after you confirm.",
    role=Role.OPERATOR,
    examples=("/payflow restart auth-service",),
    parse=_parse,
)
async def ask_restart(cmd: Restart, ctx: Context) -> Reply:
    await refuse_if_locked(ctx, cmd.service)
    color, name = await _live_deployment(ctx, cmd.service)
    dep = await ctx.kube.deployment(name)
    text = (
        f"Restart *{cmd.service}* ({color})? Every pod of `{name}` ({dep.desired} replicas) is replaced, "
        "a few at a time; traffic stays on this color."
    )
    confirm = Confirm("Restart?", f"Rolling restart of {name}.", ok="Restart")
    button = Button(f"Restart {cmd.service}", "restart", cmd.service, "danger", confirm)
    return Reply(Notice(text, Tone.WARNING, buttons=(button,)), detail="asked to confirm")


@action("restart", Role.OPERATOR)
async def restart(service: str, ctx: Context) -> Reply:
    if service not in ctx.catalog.services:
        raise Refused(f"Unknown service `{service}`.")
    await refuse_if_locked(ctx, service)
    color, name = await _live_deployment(ctx, service)
    await ctx.kube.restart(name, datetime.now(UTC).isoformat(timespec="seconds"))
    head = f"♻️ <@{ctx.actor}> restarted *{service}* ({color})"
    ref = await ctx.notifier.post(ctx.channel, Notice(f"{head}: rolling…", Tone.WORKING))
    ctx.deps.spawn(_follow(ctx.deps, ref, head, name))
    return Reply(None, detail=f"{name} restarted", target=service)


async def _follow(deps: Deps, ref: MessageRef, head: str, name: str) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    while loop.time() - started < deps.catalog.env.rollout_timeout_seconds:
        await asyncio.sleep(POLL_SECONDS)
        dep = await deps.kube.deployment(name)
        line = f"{dep.updated}/{dep.desired} new pods, {dep.ready} ready · {loop.time() - started:.0f} s"
        if dep.deadline_exceeded:
            await deps.notifier.update(
                ref, Notice(f"{head}: ❌ stuck (ProgressDeadlineExceeded) — {line}", Tone.ERROR)
            )
            return
        if dep.rollout_complete:
            await deps.notifier.update(ref, Notice(f"{head}: ✅ done — {line}", Tone.SUCCESS))
            return
        await deps.notifier.update(ref, Notice(f"{head}: rolling… {line}", Tone.WORKING))
    await deps.notifier.update(ref, Notice(f"{head}: ⚠️ not finished after the rollout timeout", Tone.WARNING))
