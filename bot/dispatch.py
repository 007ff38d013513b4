"""From an invocation to an answer: parse (before the ack), then policy → handler → audit →
render → deliver (after the ack). Knows our domain and the Slack gateway, not payload shapes."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from bot.blocks import Message, render
from bot.commands import SPECS, Command, Scale, Usage, parse, spec_for
from bot.config import Catalog
from bot.kube import Kube, KubeError, Unreachable
from bot.policy import Caller, Policy
from bot.slack import SlackError, SlackGateway
from bot.store import AuditEntry, Store, StoreUnavailable
from bot.telemetry import Telemetry
from bot.views import Notice, Reply, Tone
from handlers import handler_for
from handlers.base import Context, Refused

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Invocation:
    user_id: str
    channel_id: str
    channel_name: str | None
    text: str
    response_url: str | None = None

    @property
    def caller(self) -> Caller:
        return Caller(self.user_id, self.channel_id, self.channel_name)


@dataclass(frozen=True)
class CommandJob:
    """A parsed command to run after the ack; plain data, so it can cross into the worker process."""

    invocation: Invocation
    command: Command


@dataclass(frozen=True)
class Accepted:
    """What to ack with at once, and the job to run once the ack is out (None: nothing more)."""

    ack: Message | None
    job: CommandJob | None


def _working(command: Command) -> str | None:
    """A first word for commands that write to the cluster, sent once the policy allows them."""
    if isinstance(command, Scale):
        return f"Scaling {command.service} to {command.replicas} replicas…"
    return None


class Dispatcher:
    def __init__(
        self,
        catalog: Catalog,
        kube: Kube,
        store: Store,
        slack: SlackGateway,
        policy: Policy,
        telemetry: Telemetry,
    ):
        self.catalog = catalog
        self.kube = kube
        self.store = store
        self.slack = slack
        self.policy = policy
        self.telemetry = telemetry

    def accept(self, inv: Invocation) -> Accepted:
        """Pure and fast: runs before the ack."""
        try:
            command = parse(inv.text, self.catalog)
        except Usage as exc:
            self.telemetry.commands.labels("invalid", "invalid").inc()
            spec = SPECS.get(exc.command or "")
            usage = spec.usage if spec else None
            return Accepted(render(Notice(exc.message, Tone.WARNING, usage)), None)
        return Accepted(None, CommandJob(inv, command))

    async def execute(self, job: CommandJob) -> None:
        await self.run(job.invocation, job.command)

    async def run(self, inv: Invocation, command: Command) -> None:
        spec = spec_for(command)
        target = getattr(command, "service", None)
        decision = await self.policy.check(inv.caller, spec.role)
        if not decision.allowed:
            await self._finish(
                inv, spec.name, target, "denied", decision.reason, Reply(Notice(decision.reason, Tone.ERROR))
            )
            return
        working = _working(command)
        if working:
            await self._deliver(inv, Reply(Notice(working, Tone.WORKING)))
        ctx = Context(self.catalog, self.kube, self.store, inv.user_id)
        try:
            reply = await handler_for(command)(command, ctx)
            outcome, detail = "ok", reply.detail
        except Refused as exc:
            outcome, detail = "refused", str(exc)
            reply = Reply(Notice(str(exc), Tone.WARNING))
        except StoreUnavailable as exc:
            log.warning("%s: store unavailable: %s", spec.name, exc)
            outcome, detail = "failed", "store unavailable"
            reply = Reply(
                Notice("The bot's store is unreachable, so nothing was done. Try again shortly.", Tone.ERROR)
            )
        except Unreachable as exc:
            outcome, detail = "failed", str(exc)
            reply = Reply(Notice(f"{exc}. Nothing was done; try again shortly.", Tone.ERROR))
        except KubeError as exc:
            outcome, detail = "failed", str(exc)
            reply = Reply(Notice(f"Kubernetes refused: {exc}", Tone.ERROR))
        except Exception:
            ref = secrets.token_hex(4)
            log.exception("%s failed (ref %s)", spec.name, ref)
            outcome, detail = "error", f"internal error ref {ref}"
            reply = Reply(
                Notice(f"Something went wrong on our side (ref `{ref}`); it is logged.", Tone.ERROR)
            )
        await self._finish(inv, spec.name, target, outcome, detail, reply)

    async def _finish(
        self, inv: Invocation, action: str, target: str | None, outcome: str, detail: str, reply: Reply
    ) -> None:
        """Audit first, so a reply never claims success the audit trail does not hold."""
        self.telemetry.commands.labels(action, outcome).inc()
        entry = AuditEntry(inv.user_id, action, outcome, target, detail, inv.channel_id)
        try:
            await self.store.append_audit(entry)
        except StoreUnavailable as exc:
            log.error("audit entry lost (%s): %s", exc, entry)
            if outcome == "ok" and not isinstance(reply.view, Notice):
                await self._deliver(inv, reply)
                reply = Reply(
                    Notice("The audit store is unreachable: this command was not recorded.", Tone.WARNING)
                )
        await self._deliver(inv, reply)

    async def _deliver(self, inv: Invocation, reply: Reply) -> None:
        message = render(reply.view)
        if reply.public:
            try:
                await self.slack.post(inv.channel_id, message)
                return
            except SlackError as exc:
                if exc.code not in {"not_in_channel", "channel_not_found", "is_archived"}:
                    raise
                log.info("cannot post in %s (%s); answering through response_url", inv.channel_id, exc.code)
        if inv.response_url:
            await self.slack.respond(inv.response_url, message, public=reply.public)
        else:
            await self.slack.ephemeral(inv.channel_id, inv.user_id, message)
