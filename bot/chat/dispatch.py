"""From an invocation to an answer: parse (before the ack), then policy → handler → audit →
render → deliver (after the ack). Slash commands and button clicks take the same path.
Knows our domain and the Slack gateway, not payload shapes."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from bot.base.messages import MessageRef
from bot.base.refused import Unavailable
from bot.base.roles import Role
from bot.base.telemetry import Telemetry
from bot.chat.blocks import Message, render
from bot.chat.notifier import post_with_files
from bot.domain.policy import Caller, Policy
from bot.domain.views import Notice, Reply, Tone
from bot.gateways.kube_objects import KubeError, Unreachable
from bot.gateways.slack import SlackError, SlackGateway
from bot.gateways.store import AuditEntry, StoreUnavailable
from handlers import ACTIONS, COMMANDS, Parsed, Usage, parse
from handlers.base import Context, Deps, Refused
from handlers.registry import ParserFailed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Invocation:
    """Who asked, where, and how to answer them privately."""

    user_id: str
    channel_id: str
    channel_name: str | None
    text: str = ""
    response_url: str | None = None
    # a click on a message only the clicker sees: its answer replaces that message (or removes
    # it), as Slack apps do, so a prompt's buttons (restart…) cannot be pressed a second time
    from_ephemeral: bool = False

    @property
    def caller(self) -> Caller:
        return Caller(self.user_id, self.channel_id, self.channel_name)


@dataclass(frozen=True)
class CommandJob:
    """A parsed command to run after the ack; plain data, so it can cross into the worker process."""

    invocation: Invocation
    parsed: Parsed


@dataclass(frozen=True)
class ActionJob:
    """A button click to handle after the ack."""

    invocation: Invocation
    action: str
    value: str
    message: MessageRef | None


@dataclass(frozen=True)
class Unparsed:
    """A command whose parser failed (our bug): answered in the ack, audited after it."""

    invocation: Invocation
    name: str
    ref: str


class DepsJob(Protocol):
    """Any other work queued by the web process (an Alertmanager notification, …): picklable
    data with a `run` that gets the handlers' dependencies in the process that runs jobs."""

    async def run(self, deps: Deps) -> None: ...


@dataclass(frozen=True)
class Accepted:
    """What to ack with at once, and the job to run once the ack is out (None: nothing more)."""

    ack: Message | None
    job: CommandJob | ActionJob | Unparsed | None


class Dispatcher:
    def __init__(self, deps: Deps, slack: SlackGateway, policy: Policy, telemetry: Telemetry):
        self.deps = deps
        self.catalog = deps.catalog
        self.slack = slack
        self.policy = policy
        self.telemetry = telemetry

    def accept(self, inv: Invocation) -> Accepted:
        """Pure and fast: runs before the ack."""
        try:
            parsed = parse(inv.text, self.catalog)
        except Usage as exc:
            self.telemetry.commands.labels("invalid", "invalid").inc()
            spec = COMMANDS.get(exc.command or "")
            usage = spec.usage if spec else None
            return Accepted(render(Notice(exc.message, Tone.WARNING, usage)), None)
        except ParserFailed as exc:
            ref = secrets.token_hex(4)
            log.error("the parser of %s failed (ref %s)", exc.name, ref, exc_info=exc.__cause__)
            return Accepted(render(_internal_error(ref)), Unparsed(inv, exc.name, ref))
        return Accepted(None, CommandJob(inv, parsed))

    def accept_action(self, inv: Invocation, action: str, value: str, message: MessageRef | None) -> Accepted:
        if action not in ACTIONS:
            log.warning("click on unknown action %r ignored", action)
            return Accepted(None, None)
        return Accepted(None, ActionJob(inv, action, value, message))

    async def execute(self, job: CommandJob | ActionJob | Unparsed | DepsJob) -> None:
        if isinstance(job, CommandJob):
            await self.run(job.invocation, job.parsed)
        elif isinstance(job, Unparsed):  # answered in the ack already
            await self._finish(
                job.invocation, job.name, None, "error", f"internal error ref {job.ref}", Reply(None)
            )
        elif isinstance(job, ActionJob):
            await self.run_action(job)
        else:
            await job.run(self.deps)

    async def run(self, inv: Invocation, parsed: Parsed) -> None:
        if parsed.name not in COMMANDS:  # queued by a release that has it (a rolling deploy)
            text = (
                f"`{parsed.name}` is not a command of this version of the bot; nothing was done. Try again."
            )
            await self._finish(
                inv, parsed.name, None, "error", "unknown command", Reply(Notice(text, Tone.ERROR))
            )
            return
        spec, command = parsed.spec, parsed.command
        working = spec.working(command) if spec.working else None  # said once the policy allows it

        async def work(ctx: Context) -> Reply:
            if working:
                await self._deliver(inv, Reply(Notice(working, Tone.WORKING)))
            return await spec.run(command, ctx)

        await self._perform(inv, spec.name, spec.role, getattr(command, "service", None), work)

    async def run_action(self, job: ActionJob) -> None:
        spec = ACTIONS[job.action]

        async def work(ctx: Context) -> Reply:
            return await spec.run(job.value, ctx)

        await self._perform(
            job.invocation, f"click:{job.action}", spec.role, None, work, job.message, clicked=True
        )

    async def _perform(
        self,
        inv: Invocation,
        name: str,
        role: Role | None,
        target: str | None,
        work: Callable[[Context], Awaitable[Reply]],
        message: MessageRef | None = None,
        clicked: bool = False,
    ) -> None:
        decision = await self.policy.check(inv.caller, role, any_channel=clicked)
        if not decision.allowed:
            reply = Reply(Notice(decision.reason, Tone.ERROR))
            await self._finish(inv, name, target, "denied", decision.reason, reply)
            return
        ctx = Context(self.deps, inv.user_id, inv.channel_id, message, decision.role)
        store_down = False  # then auditing would cost a second store deadline before the answer
        drawn: Message | None = None
        try:
            reply = await work(ctx)
            # drawn here, before the audit: a view that cannot be drawn is this command's error,
            # answered and audited as one, never an "ok" followed by silence
            drawn = render(reply.view) if reply.view is not None else None
            outcome, detail = reply.outcome, reply.detail
            target = reply.target or target
        except Refused as exc:
            outcome, detail = "refused", str(exc)
            reply = Reply(Notice(str(exc), Tone.WARNING))
        except Unavailable as exc:
            outcome, detail = "failed", exc.detail
            reply = Reply(Notice(str(exc), Tone.ERROR if exc.configured else Tone.WARNING))
        except StoreUnavailable as exc:
            log.warning("%s: store unavailable: %s", name, exc)
            outcome, detail = "failed", "store unavailable"
            text = f"{exc.brief}, so nothing was done. Try again shortly."
            reply = Reply(Notice(text, Tone.ERROR))
            store_down = True
        except Unreachable as exc:
            outcome, detail = "failed", str(exc)
            tail = "" if exc.uncertain else "; nothing was changed. Try again shortly"
            reply = Reply(Notice(f"{exc}{tail}.", Tone.ERROR))
        except KubeError as exc:
            outcome, detail = "failed", str(exc)
            reply = Reply(Notice(f"Kubernetes refused: {exc}", Tone.ERROR))
        except Exception:
            ref = secrets.token_hex(4)
            log.exception("%s failed (ref %s)", name, ref)
            outcome, detail = "error", f"internal error ref {ref}"
            reply = Reply(_internal_error(ref))
        await self._finish(inv, name, target, outcome, detail, reply, store_down=store_down, drawn=drawn)

    async def _finish(
        self,
        inv: Invocation,
        action: str,
        target: str | None,
        outcome: str,
        detail: str,
        reply: Reply,
        *,
        store_down: bool = False,
        drawn: Message | None = None,
    ) -> None:
        """Audit first, so a reply never claims success the audit trail does not hold."""
        self.telemetry.commands.labels(action, outcome).inc()
        if reply.audited:
            recorded = True
        elif store_down:
            log.error("audit entry lost (the store did not answer): %s %s %s", inv.user_id, action, outcome)
            recorded = False
        else:
            recorded = await self.deps.audit(
                AuditEntry(inv.user_id, action, outcome, target, detail, inv.channel_id)
            )
        if not recorded and outcome == "ok" and not isinstance(reply.view, Notice):
            await self._deliver(inv, reply, drawn)
            reply = Reply(
                Notice("The audit store is unreachable: this command was not recorded.", Tone.WARNING)
            )
            drawn = None
        await self._deliver(inv, reply, drawn)

    async def _deliver(self, inv: Invocation, reply: Reply, drawn: Message | None = None) -> None:
        if inv.from_ephemeral and inv.response_url and (reply.view is None or reply.public):
            try:
                await self.slack.respond_delete(inv.response_url)
            except SlackError as exc:
                log.warning("could not remove the clicked prompt: %s", exc)
        if reply.view is None:
            return
        message = drawn if drawn is not None else render(reply.view)
        if reply.public:
            try:
                await post_with_files(self.slack, inv.channel_id, message)
                return
            except SlackError as exc:
                if exc.code not in {"not_in_channel", "channel_not_found", "is_archived"}:
                    raise
                log.info("cannot post in %s (%s); answering through response_url", inv.channel_id, exc.code)
        if inv.response_url:
            replace = inv.from_ephemeral and not reply.public
            try:
                await self.slack.respond(inv.response_url, message, public=reply.public, replace=replace)
            except SlackError:
                if not replace:
                    raise
                # the prompt is gone already (removed by an earlier answer): say it as a new message
                await self.slack.respond(inv.response_url, message, public=reply.public)
        else:
            await self.slack.ephemeral(inv.channel_id, inv.user_id, message)
        if message.files:  # no thread to put them in here: say so rather than leave them out silently
            names = ", ".join(f.filename for f in message.files)
            await self._deliver(
                inv,
                Reply(
                    Notice(
                        f"The full table ({names}) could not be attached here: invite the bot to this "
                        "channel to get it.",
                        Tone.WARNING,
                    )
                ),
            )


def _internal_error(ref: str) -> Notice:
    return Notice(f"Something went wrong on our side (ref `{ref}`); it is logged.", Tone.ERROR)
