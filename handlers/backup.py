"""`/payflow backup postgres|drill`: the guide's backup and its restore drill, run as the cluster
runs them — a Job made from the catalog's CronJob exactly as `kubectl create job --from=cronjob/…`
makes it — and followed in ONE message updated in place until the Job succeeds, fails (with the
pod's exit code and last log lines) or the catalog's `backups.job_timeout_seconds` passes (then it
says the Job is still running, never that it failed). One run per CronJob at a time: the cluster
is asked (an active Job of the CronJob refuses), and a store lock closes the race of two clicks.

Restore is deliberately not a command (README: *Backups*): on a payments ledger it is
irreversible, and it is run by a human in a maintenance window, from the runbook. The drill
restores into a scratch database and compares row counts; its verdict also goes to the audit
channel. `backup redis` and `backup config` are in handlers/backup_data.py.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.base.messages import MessageRef
from bot.base.redact import clip, redact_lines
from bot.base.roles import Role
from bot.domain import backups
from bot.domain.views import Facts, Notice, Reply, Report, Table, Text, Tone, View
from bot.gateways.kube_objects import KubeError, NotFound, Unreachable
from bot.gateways.slack import SlackError
from bot.gateways.store import KEEP_TTL, AuditEntry, StoreUnavailable
from handlers.base import Context, Deps, Refused
from handlers.registry import background, command, takes_nothing

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # one read of the Job a second: a backup takes minutes, a Job's status is small
LOG_LINES = 10  # a failure shows the pod's last lines
MAX_LOG_LINE = 200
LOCK_SLACK_SECONDS = 120  # the lock outlives the follow by this much, so a crashed follow frees it
POST_SECONDS = 60.0  # the first lease also covers posting the message (one Slack delivery deadline)


@dataclass(frozen=True)
class RunJob:
    kind: str  # "postgres" | "drill"


@dataclass(frozen=True)
class Follow:
    """What the follow needs once the handler has returned. It is kept in the lock's record, with
    the message and the follower's lease, so another worker resumes a follow whose worker died."""

    kind: str
    cronjob: str
    job: str
    actor: str
    channel: str
    token: str  # the lock's: the request that took it
    since: str
    began: float  # Unix time the Job was created: progress counts from it on any worker
    deadline: float  # Unix time the follow says "still running" and ends

    @property
    def lock(self) -> str:
        return lock_key(self.cronjob)

    @property
    def what(self) -> str:
        return "restore drill" if self.kind == "drill" else "PostgreSQL backup"

    @property
    def action(self) -> str:
        return f"backup {self.kind}"

    def record(self, owner: str, lease_until: float, ref: MessageRef | None) -> dict[str, Any]:
        return {
            "by": self.actor,
            "since": self.since,
            "token": self.token,
            "job": self.job,
            "kind": self.kind,
            "cronjob": self.cronjob,
            "channel": self.channel,
            "began": self.began,
            "deadline": self.deadline,
            "owner": owner,
            "lease_until": lease_until,
            "ref": [ref.channel, ref.ts] if ref else None,
        }

    @classmethod
    def of(cls, record: dict[str, Any]) -> tuple[Follow, MessageRef | None] | None:
        """The follow a lock's record describes; None while the request is still creating its Job."""
        try:
            run = cls(
                str(record["kind"]),
                str(record["cronjob"]),
                str(record["job"]),
                str(record["by"]),
                str(record["channel"]),
                str(record["token"]),
                str(record.get("since", "")),
                float(record["began"]),
                float(record["deadline"]),
            )
        except (KeyError, TypeError, ValueError):
            return None
        ref = record.get("ref")
        return run, (
            MessageRef(str(ref[0]), str(ref[1])) if isinstance(ref, list) and len(ref) == 2 else None
        )


def lock_key(cronjob: str) -> str:
    return f"backup:{cronjob}"


def _ago(at: datetime | None) -> str:
    if at is None:
        return "at an unknown time"
    return f"{backups.age_text((datetime.now(UTC) - at).total_seconds())} ago"


async def start(ctx: Context, kind: str, cronjob: str, owner: str) -> Follow:
    """Create the Job from `cronjob`, once: refused while one of its Jobs runs or another request
    holds the lock. The lock is released here on any refusal, and by the follow otherwise; once
    the Job exists the record names it and `owner` holds its follow's lease."""
    what = "restore drill" if kind == "drill" else "PostgreSQL backup"
    key, token = lock_key(cronjob), secrets.token_hex(8)
    timeout = ctx.catalog.backups.job_timeout_seconds
    ttl = timeout + LOCK_SLACK_SECONDS
    since = datetime.now(UTC).isoformat(timespec="seconds")
    record = {"by": ctx.actor, "since": since, "token": token}
    for _ in range(2):  # a lock released between our create and our read: one more create
        if await ctx.store.create(key, record, ttl=ttl):
            break
        held = await ctx.store.get(key)
        if held is not None:
            job = f" (Job `{held['job']}`)" if held.get("job") else ""
            raise Refused(
                f"A {what} started by <@{held.get('by', '?')}>{job} is still running; one at a time. "
                "Nothing was started."
            )
    else:
        raise Refused(f"Another {what} request is starting right now; one at a time. Nothing was started.")
    release = True
    try:
        try:
            cron = await ctx.kube.cron_job(cronjob)
        except NotFound:
            setting = "drill_cronjob" if kind == "drill" else "postgres_cronjob"
            raise Refused(
                f"There is no CronJob `{cronjob}` in `{ctx.kube.namespace}` (catalog: `backups.{setting}`). "
                "Nothing was started."
            ) from None
        size = ctx.catalog.backups.size_annotation
        running = [r for r in backups.history(await ctx.kube.jobs(), cron, size) if r.state == "Running"]
        if running:
            raise Refused(
                f"`{running[0].name}` ({what}) is still running, started {_ago(running[0].started)}; "
                "one at a time. Nothing was started."
            )
        name = backups.manual_job_name(cronjob)
        try:
            await ctx.kube.create_job(backups.job_from_cronjob(cron, name))
        except Unreachable as exc:
            release = not exc.uncertain  # the Job may exist: the lock expires on its own
            raise
        began = time.time()
        run = Follow(kind, cronjob, name, ctx.actor, ctx.channel, token, since, began, began + timeout)
        lease = float(ctx.catalog.env.lease_seconds) + POST_SECONDS
        await ctx.store.put(key, run.record(owner, time.time() + lease, None), ttl=KEEP_TTL)
        release = False
        return run
    finally:
        if release:
            await ctx.store.delete(key, if_field="token", equals=token)


def _progress(run: Follow, job: dict[str, Any] | None, seconds: float) -> Notice:
    status = (job or {}).get("status") or {}
    if job is None:
        phase = "created"
    elif status.get("ready"):
        phase = "running"
    elif status.get("active"):
        phase = "pod starting"
    else:
        phase = "waiting for the job controller"
    text = f"<@{run.actor}> started the {run.what}: Job `{run.job}` {phase} · {seconds:.0f} s"
    return Notice(text, Tone.WORKING)


async def _log_tail(deps: Deps, pod: str, lines: int) -> list[str]:
    """The pod's last lines, redacted here too (the Slack gateway redacts again) and clipped."""
    try:
        text = await deps.kube.pod_log(pod, container=None, tail_lines=lines, since_seconds=None)
    except KubeError as exc:
        return [f"(no log: {exc})"]
    return [clip(line, MAX_LOG_LINE, "…") for line in redact_lines(text.splitlines())]


async def _failed(deps: Deps, run: Follow, job: dict[str, Any]) -> tuple[View, str]:
    cond = backups.condition(job) or {}
    reason = ": ".join(str(x) for x in (cond.get("reason"), cond.get("message")) if x) or "Failed"
    facts: list[tuple[str, str]] = [("Job", f"`{run.job}`"), ("Reason", reason)]
    parts: list[Facts | Table | Text] = []
    pod = backups.last_pod(await deps.kube.job_pods(run.job))
    detail = f"{run.job} failed: {reason}"
    if pod is not None:
        facts.append(("Pod", pod.describe()))
        detail += f"; {pod.describe()}"
        tail = await _log_tail(deps, pod.name, LOG_LINES)
        if tail:
            parts.append(Text(f"Last {len(tail)} log line(s):\n```" + "\n".join(tail) + "```"))
    title = f"{run.what[0].upper()}{run.what[1:]} failed"
    return Report(title, (Facts(tuple(facts)), *parts), tone=Tone.ERROR), detail


async def _backup_done(deps: Deps, run: Follow, job: dict[str, Any]) -> tuple[View, str]:
    done = backups.run_of(job, deps.catalog.backups.size_annotation)
    took = f"{done.seconds:.0f} s" if done.seconds is not None else "?"
    facts = [
        ("Job", f"`{run.job}`"),
        ("Took", took),
        ("Size", backups.size_text(done.size_bytes)),
        ("Started by", f"<@{run.actor}>"),
    ]
    if done.location:
        facts.insert(3, ("Dump", f"`{done.location}`"))
    detail = f"{run.job} complete in {took}, {backups.size_text(done.size_bytes)}"
    return Report("PostgreSQL backup done", (Facts(tuple(facts)),), tone=Tone.SUCCESS), detail


async def drill_report(deps: Deps, job: dict[str, Any], name: str) -> tuple[Report, str]:
    """The drill's row counts from its pod's log, mismatches first."""
    pod = backups.last_pod(await deps.kube.job_pods(name))
    lines = await _log_tail(deps, pod.name, 500) if pod else []
    rows = backups.drill_rows("\n".join(lines))
    bad = [r for r in rows if not r.matches]
    source = next((line.split("latest dump ", 1)[1] for line in lines if "latest dump " in line), "")
    done = backups.run_of(job, deps.catalog.backups.size_annotation)
    facts = [("Job", f"`{name}`"), ("Finished", _ago(done.finished))]
    if source:
        facts.append(("Restored", f"`{clip(source, 120, '…')}`"))
    table = Table(
        ("table", "restored", "production", ""),
        tuple((r.table, str(r.restored), str(r.production), "✅" if r.matches else "🔴") for r in rows),
        attention=tuple(not r.matches for r in rows),
        noun="tables",
        empty="the drill printed no `table=… restored=… production=…` lines",
    )
    if not rows:
        title, tone = "Restore drill: no row counts to compare", Tone.WARNING
    elif bad:
        title, tone = f"Restore drill: {len(bad)} of {len(rows)} tables differ", Tone.ERROR
    else:
        title, tone = f"Restore drill: all {len(rows)} tables match", Tone.SUCCESS
    return Report(title, (Facts(tuple(facts)), table), tone=tone, filename="restore-drill.txt"), title


async def follow(deps: Deps, run: Follow, ref: MessageRef | None, owner: str) -> None:
    """Poll the Job until it ends or the deadline passes; the message says each step in place.
    Holding a lease on the lock's record: a worker that dies (or is cancelled) leaves the record
    as it is, and the sweep of any worker resumes the follow once the lease has expired. The
    outcome is audited only by the follower whose conditional delete of the record wins."""
    lease = float(deps.catalog.env.lease_seconds)
    if ref is None:  # the worker that created the Job died before posting: post now
        ref = await deps.notifier.post(run.channel, _progress(run, None, time.time() - run.began))
    held_until = 0.0

    async def renew() -> bool:
        nonlocal held_until
        until = time.time() + lease
        won = await deps.store.compare_and_set(
            run.lock, "owner", owner, run.record(owner, until, ref), KEEP_TTL
        )
        held_until = until if won else held_until
        return bool(won)

    if not await renew():
        return  # another worker follows it
    shown: str | None = None
    view: View
    outcome, detail = "running", ""
    while True:
        await asyncio.sleep(POLL_SECONDS)
        if held_until - time.time() < lease * 2 / 3 and not await renew():
            return
        seconds = time.time() - run.began
        try:
            job: dict[str, Any] | None = await deps.kube.job(run.job)
        except NotFound:
            view = Notice(f"The {run.what}'s Job `{run.job}` was deleted before it finished.", Tone.ERROR)
            outcome, detail = "failed", f"{run.job} deleted"
            break
        except KubeError:
            job = None  # this read had its deadline; the next one has its own
        state = backups.finished(job) if job else None
        if job is not None and state == "Complete":
            if run.kind == "drill":
                view, detail = await drill_report(deps, job, run.job)
                outcome = "ok" if view.tone == Tone.SUCCESS else "failed"
            else:
                view, detail = await _backup_done(deps, run, job)
                outcome = "ok"
            break
        if job is not None and state == "Failed":
            view, detail = await _failed(deps, run, job)
            outcome = "failed"
            break
        if time.time() >= run.deadline:
            timeout = deps.catalog.backups.job_timeout_seconds
            text = (
                f"The {run.what}'s Job `{run.job}` is still running after {timeout} s "
                "(`backups.job_timeout_seconds`); it has not failed. "
                "`/payflow backups` shows how it ends."
            )
            view, detail = Notice(text, Tone.WARNING), f"{run.job} still running after {timeout} s"
            break
        progress = _progress(run, job, seconds)
        if progress.text != shown:
            try:
                await deps.notifier.update(ref, progress)
                shown = progress.text
            except SlackError as exc:  # a progress step may be lost; the result may not
                log.warning("backup progress not shown (%s): %s", exc, run.job)
    if not await renew():
        return
    if not await _deliver(deps, run, ref, view):
        return  # the record stays: a later sweep delivers it
    if await deps.store.delete(run.lock, if_field="owner", equals=owner):
        await deps.audit(AuditEntry(run.actor, run.action, outcome, run.cronjob, detail, run.channel))


async def _deliver(deps: Deps, run: Follow, ref: MessageRef, view: View) -> bool:
    """The result in the message (a new one if Slack will not update it); the drill's also in the
    audit channel. False when Slack took neither: the follow is left for a later sweep."""
    try:
        await deps.notifier.update(ref, view)
    except SlackError as exc:
        log.warning("backup result not updated in place (%s), posting it: %s", exc, run.job)
        try:
            await deps.notifier.post(run.channel, view)
        except SlackError as again:
            log.error("backup result not delivered (%s): %s", again, run.job)
            return False
    if run.kind == "drill":
        try:
            await deps.notifier.post(deps.catalog.channels.audit, view)
        except SlackError as exc:
            log.error("restore drill result not posted to the audit channel (%s): %s", exc, run.job)
    return True


async def sweep_follows(deps: Deps) -> int:
    """Resume every follow whose lease has expired (its worker died); how many it took over."""
    lease = float(deps.catalog.env.lease_seconds)
    taken = 0
    for key, record in (await deps.store.scan(lock_key(""))).items():
        found = Follow.of(record)
        lease_until = record.get("lease_until")
        if found is None or not isinstance(lease_until, int | float) or lease_until > time.time():
            continue
        run, ref = found
        owner = secrets.token_hex(8)
        previous = record.get("owner")
        won = await deps.store.compare_and_set(
            key,
            "owner",
            previous if isinstance(previous, str) else None,
            run.record(owner, time.time() + lease, ref),
            KEEP_TTL,
        )
        if won:
            deps.spawn(follow(deps, run, ref, owner))
            taken += 1
    return taken


@background
async def resume_follows(deps: Deps) -> None:
    """Every worker sweeps, like the gate's: a backup's message always ends with its outcome."""
    while True:
        try:
            await sweep_follows(deps)
        except StoreUnavailable as exc:
            log.warning("backup follow sweep: store unavailable: %s", exc)
        except Exception:
            log.exception("backup follow sweep failed")
        await asyncio.sleep(float(deps.catalog.env.lease_seconds) / 2)


async def _run(ctx: Context, kind: str, cronjob: str) -> Reply:
    owner = secrets.token_hex(8)
    run = await start(ctx, kind, cronjob, owner)
    ref = await ctx.notifier.post(ctx.channel, _progress(run, None, 0))
    ctx.deps.spawn(follow(ctx.deps, run, ref, owner))
    return Reply(None, detail=f"{run.job} created from cronjob/{cronjob}", target=cronjob)


@command(
    "backup postgres",
    summary="Run the PostgreSQL backup now (a Job from the backup CronJob) and follow it to the end.",
    role=Role.OPERATOR,
    examples=("/payflow backup postgres",),
    parse=takes_nothing("backup postgres", RunJob("postgres")),
)
async def backup_postgres(cmd: RunJob, ctx: Context) -> Reply:
    return await _run(ctx, "postgres", ctx.catalog.backups.postgres_cronjob)


@command(
    "backup drill",
    summary="Restore the latest dump into a scratch database and compare row counts (never production).",
    role=Role.APPROVER,
    examples=("/payflow backup drill",),
    parse=takes_nothing("backup drill", RunJob("drill")),
)
async def backup_drill(cmd: RunJob, ctx: Context) -> Reply:
    return await _run(ctx, "drill", ctx.catalog.backups.drill_cronjob)
