"""`/payflow backups`: when each kind of backup last succeeded, and whether that is recent enough
(`backups.max_age_hours`; older is 🔴 and first). PostgreSQL from its CronJob's Jobs (completion,
duration, the dump size the script annotates), Redis from LASTSAVE, config on demand only. A run
that failed after the last success is shown with its reason; so is the last restore drill."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.base.roles import Role
from bot.domain import backups
from bot.domain.gate.record import BOT
from bot.domain.views import Facts, Figure, Reply, Report, Table, Text, Tone
from bot.gateways.kube_objects import KubeError, NotFound
from bot.gateways.payflow_redis import PayflowRedisError
from handlers.backup import drill_report
from handlers.base import Context, Deps
from handlers.digest_lines import digest_lines
from handlers.registry import command, takes_nothing

Row = tuple[str, str, str, str, str]


@dataclass(frozen=True)
class Backups:
    pass


def _age(at: datetime | None, now: datetime) -> float | None:
    return None if at is None else max((now - at).total_seconds(), 0.0)


async def _failure_line(ctx: Context, run: backups.Run) -> str:
    """A failed run's reason: the Job's condition, the pod's exit code and its last log line."""
    why = [run.reason or "Failed"]
    try:
        pod = backups.last_pod(await ctx.kube.job_pods(run.name))
        if pod is not None:
            why.append(pod.describe())
            text = await ctx.kube.pod_log(pod.name, container=None, tail_lines=1, since_seconds=None)
            if text.strip():
                why.append(f"“{text.strip().splitlines()[-1][:200]}”")
    except KubeError as exc:
        why.append(f"(pod not read: {exc})")
    return "; ".join(why)


async def _cron_job(ctx: Context, name: str) -> dict[str, Any] | None:
    try:
        return await ctx.kube.cron_job(name)
    except NotFound:
        return None


async def _postgres(
    ctx: Context, cron: dict[str, Any] | None, jobs: list[dict[str, Any]], now: datetime
) -> tuple[Row, bool, list[str]]:
    conf = ctx.catalog.backups
    if cron is None:
        return ("postgres", "—", "—", f"no CronJob `{conf.postgres_cronjob}`", "🔴"), True, []
    runs = backups.history(jobs, cron, conf.size_annotation)
    good = next((r for r in runs if r.state == "Complete"), None)
    notes: list[str] = []
    failed = next((r for r in runs if r.state == "Failed"), None)
    failed_since = failed is not None and (good is None or (failed.started or now) > (good.finished or now))
    if failed is not None and failed_since:
        why = await _failure_line(ctx, failed)
        notes.append(f"Last PostgreSQL backup `{failed.name}` failed {_ago_text(failed, now)}: {why}")
    running = [r for r in runs if r.state == "Running"]
    if running:
        notes.append(f"`{running[0].name}` is running since {_ago_text(running[0], now)}.")
    if good is None:
        return ("postgres", "never", "—", "no successful run kept", "🔴"), True, notes
    age = _age(good.finished, now)
    stale = age is None or age > conf.max_age_hours * 3600
    took = f"{good.seconds:.0f} s" if good.seconds is not None else "?"
    detail = f"{backups.size_text(good.size_bytes)} in {took} · `{good.name}`"
    when = f"{good.finished:%Y-%m-%d %H:%M} UTC" if good.finished else "?"
    row = (
        "postgres",
        when,
        backups.age_text(age) if age is not None else "?",
        detail,
        "🔴" if stale else "✅",
    )
    return row, stale or failed_since, notes


def _ago_text(run: backups.Run, now: datetime) -> str:
    age = _age(run.started, now)
    return "at an unknown time" if age is None else f"{backups.age_text(age)} ago"


async def _redis(ctx: Context, now: datetime, limit_h: float) -> tuple[Row, bool]:
    redis = ctx.deps.payflow_redis
    if redis is None:
        setting = ctx.catalog.data.redis.url_setting
        return ("redis", "—", "—", f"not configured: set `{setting}`", "❔"), False
    try:
        p = await redis.persistence()
    except PayflowRedisError as exc:
        return ("redis", "—", "—", str(exc), "❔"), True
    at = datetime.fromtimestamp(p.last_save, UTC) if p.last_save else None
    age = _age(at, now)
    stale = age is None or age > limit_h * 3600 or p.last_status != "ok"
    detail = f"LASTSAVE · last BGSAVE {p.last_status or '?'} · {p.changes} change(s) since"
    if p.in_progress:
        detail += " · saving now"
    when = f"{at:%Y-%m-%d %H:%M} UTC" if at else "never"
    return (
        "redis",
        when,
        backups.age_text(age) if age is not None else "—",
        detail,
        "🔴" if stale else "✅",
    ), stale


async def _drill(ctx: Context, cron: dict[str, Any] | None, jobs: list[dict[str, Any]], now: datetime) -> str:
    conf = ctx.catalog.backups
    if cron is None:
        return f"🔴 Restore drill: no CronJob `{conf.drill_cronjob}`."
    runs = backups.history(jobs, cron, conf.size_annotation)
    last = next((r for r in runs if r.state != "Running"), None)
    if last is None:
        return "Restore drill: never run." + (" One is running now." if runs else "")
    if last.state == "Failed":
        return (
            f"🔴 Restore drill `{last.name}` failed {_ago_text(last, now)}: {await _failure_line(ctx, last)}"
        )
    job = next(j for j in jobs if j["metadata"]["name"] == last.name)
    _, title = await drill_report(ctx.deps, job, last.name)
    icon = "✅" if "all" in title and "match" in title else "🔴"
    return f"{icon} {title} (`{last.name}`, {_ago_text(last, now)})"


@command(
    "backups",
    summary="The last good backup of each kind and its age (stale is red), failures, the last restore drill.",
    role=Role.VIEWER,
    examples=("/payflow backups",),
    parse=takes_nothing("backups", Backups()),
)
async def backups_report(cmd: Backups, ctx: Context) -> Reply:
    state = await _state(ctx)
    limit_h = ctx.catalog.backups.max_age_hours
    config_row: Row = ("config", "on demand", "—", "not stored: `/payflow backup config` posts a file", "▫️")
    table = Table(
        ("kind", "last success", "age", "detail", ""),
        (state.postgres, state.redis, config_row),
        attention=(state.postgres_bad, state.redis_bad, False),
        noun="kinds",
    )
    parts: list[Facts | Table | Text] = [
        Facts((("Older than", f"{limit_h:g} h is 🔴 (`backups.max_age_hours`)"),)),
        table,
        *(Text(n, Tone.WARNING) for n in state.notes),
        Text(state.drill),
    ]
    return Reply(
        Report(
            "Backups", tuple(parts), tone=Tone.WARNING if state.bad else Tone.SUCCESS, filename="backups.txt"
        ),
        public=True,
    )


@dataclass(frozen=True)
class _State:
    postgres: Row
    postgres_bad: bool
    redis: Row
    redis_bad: bool
    notes: list[str]
    drill: str

    @property
    def drill_bad(self) -> bool:
        return self.drill.startswith("🔴")

    @property
    def bad(self) -> bool:
        return self.postgres_bad or self.redis_bad or self.drill_bad


async def _state(ctx: Context) -> _State:
    """Every kind's last run, read once: what `/payflow backups` shows and the digests count."""
    now = datetime.now(UTC)
    conf = ctx.catalog.backups
    pg_cron, drill_cron, jobs = await asyncio.gather(
        _cron_job(ctx, conf.postgres_cronjob), _cron_job(ctx, conf.drill_cronjob), ctx.kube.jobs()
    )
    (pg_row, pg_bad, notes), (redis_row, redis_bad), drill = await asyncio.gather(
        _postgres(ctx, pg_cron, jobs, now),
        _redis(ctx, now, conf.max_age_hours),
        _drill(ctx, drill_cron, jobs, now),
    )
    return _State(pg_row, pg_bad, redis_row, redis_bad, notes, drill)


def _kind_text(row: Row, bad: bool) -> str:
    kind, when, age, detail, _ = row
    if when in ("—", "never"):
        return f"{kind} {detail}"
    return f"{kind} {'STALE or FAILED' if bad else 'fresh'} ({age} old)"


@digest_lines("Backups", "daily", "weekly")
async def backup_lines(deps: Deps) -> tuple[Figure, ...]:
    """The digests' Backups line: fresh / stale / failed per kind, and the last restore drill."""
    try:
        state = await _state(Context(deps, BOT))
    except KubeError as exc:
        return (Figure("Backups", f"not read: {exc}", "", "unknown"),)
    kinds = "; ".join(
        _kind_text(row, bad)
        for row, bad in ((state.postgres, state.postgres_bad), (state.redis, state.redis_bad))
    )
    failed = f"; {state.notes[0]}" if state.notes else ""
    verdict = "bad" if state.postgres_bad or state.redis_bad else "ok"
    drill = state.drill.lstrip("✅🔴 ").removeprefix("Restore drill: ").removeprefix("Restore drill ")
    # a drill never run proves nothing: the checklist's "Test backup restoration" is not done
    drill_verdict = "bad" if state.drill_bad else "ok" if state.drill.startswith("✅") else "unknown"
    return (
        Figure("Backups", kinds + failed, f"< {deps.catalog.backups.max_age_hours:g} h old", verdict),
        Figure("Restore drill", drill, "", drill_verdict),
    )
