"""Digests: the guide's daily checklist, the hourly error-rate summary and the weekly and monthly
reviews (handlers/digests_periodic.py), on the catalog's schedules and on demand
(`/payflow digest now [daily|weekly|monthly]`).

Exactly once per slot, whatever the number of replicas: the replica that creates the store
key `digest:<schedule>:<slot>` posts; the others see the key and stay quiet. A slot missed while
no bot was running is posted late, saying so (older missed slots are counted in that message,
not each posted). A digest is posted even when Prometheus is down: it says which figures are
unavailable and why.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from bot.base.roles import Role
from bot.config.catalog import Catalog
from bot.config.metrics import DigestSchedule
from bot.domain.views import (
    VERDICTS,
    DigestReport,
    DigestSchedules,
    DigestService,
    ErrorDigest,
    Figure,
    HealthItem,
    PeriodDigest,
    Reply,
    ScheduleInfo,
    worst,
)
from bot.gateways.kube_objects import KubeError, Snapshot
from bot.gateways.prom import Overview, Prom, Reading, ServiceFigures
from bot.gateways.slack import SlackError
from bot.gateways.store import StoreUnavailable
from handlers.base import Context, Deps
from handlers.business_figures import business_figures
from handlers.digest_lines import extra_lines
from handlers.digests_periodic import monthly_digest, weekly_digest
from handlers.health import dependency_items
from handlers.metrics import (
    availability_figure,
    error_figure,
    latency_figure,
    rps_figure,
    saturation_figure,
)
from handlers.registry import Usage, at_most, background, command, shown
from handlers.status import service_status

KINDS = ("daily", "weekly", "monthly")


@dataclass(frozen=True)
class Digest:
    now: bool = False
    kind: str = "daily"  # daily | weekly | monthly


def _parse(args: list[str], catalog: Catalog) -> Digest:
    at_most(args, 2, "digest")
    if args and args[0].lower() != "now":
        raise Usage(
            f"`{shown(args[0])}` is not understood here: `/payflow digest now [daily|weekly|monthly]` "
            "posts one now.",
            "digest",
        )
    kind = args[1].lower() if len(args) > 1 else "daily"
    if kind not in KINDS:
        raise Usage(f"`{shown(args[1])}` is not a digest: say daily, weekly or monthly.", "digest")
    return Digest(now=bool(args), kind=kind)


log = logging.getLogger(__name__)

KEY_TTL = 8 * 86_400  # slot keys outlive the look-back by far
LOOKBACK = timedelta(hours=24)  # how far back a restarted bot looks for missed slots
ON_TIME = timedelta(minutes=2)  # posted within this after its slot: not "late"
LEASE = timedelta(minutes=10)  # a claim not marked posted by then was abandoned by a dead replica
RECHECK = 30.0  # seconds between looks at the schedules, at most


NOT_SET = "PROMETHEUS_URL not set: no traffic, latency, saturation, dependency or alert figures"
NOT_STATED = "—"  # the figure is missing for a reason stated once in the digest


def _once(item: HealthItem) -> HealthItem:
    lines = tuple(NOT_STATED if "PROMETHEUS_URL not set" in line else line for line in item.lines)
    return replace(item, lines=lines)


def _unavailable(problem: str) -> Overview:
    return Overview({}, "", (problem,))


def _figures_of(overview: Overview, service: str, problem: str) -> ServiceFigures:
    if service in overview.services:
        return overview.services[service]
    missing = Reading(None, problem)
    return ServiceFigures(missing, missing, missing, missing, missing, missing, missing)


async def health_digest(deps: Deps, window: str, title: str, late: str | None = None) -> DigestReport:
    """Kubernetes for pods and versions; Prometheus for the rest, in four queries run together."""
    prom: Prom | None = deps.prom
    catalog = deps.catalog
    unavailable: list[str] = []

    async def snapshot() -> Snapshot | None:
        try:
            return await deps.kube.snapshot()
        except KubeError as exc:
            unavailable.append(f"pods and versions: {exc}")
            return None

    extra_task = asyncio.ensure_future(extra_lines(deps, "daily"))
    if prom is None:
        # said once, in the list of what is unavailable; every figure then shows a bare "—"
        overview, alerts = _unavailable(NOT_SET), Reading(None, NOT_STATED)
        snap, dep_items = await asyncio.gather(snapshot(), dependency_items(catalog, None))
        dep_items = [_once(item) for item in dep_items]
        business: tuple[Figure, ...] = ()
    else:
        snap, overview, dep_items, alerts, business = await asyncio.gather(
            snapshot(),
            prom.overview(window),
            dependency_items(catalog, prom),
            prom.firing_alerts(),
            business_figures(prom, "1d"),
        )
    extra = await extra_task
    # a problem common to every service is listed once below, not repeated in every figure
    problem = NOT_STATED if overview.problems and not overview.services else "no data"
    unavailable += [p for p in overview.problems]
    if alerts.value is None and alerts.problem and alerts.problem != NOT_STATED:
        unavailable.append(f"firing alerts: {alerts.problem}")
    slos = catalog.slos
    services = []
    for name in catalog.services:
        f = _figures_of(overview, name, problem)
        figures = (
            rps_figure(f.rps),
            error_figure(f.error_rate, slos),
            latency_figure("p95", f.p95_ms, slos.p95_ms),
            availability_figure(f.availability, slos),
            saturation_figure("CPU", f.cpu),
            saturation_figure("mem", f.memory),
        )
        verdicts = [fig.verdict for fig in figures]
        live, version, ready, desired = None, None, 0, 0
        if snap is not None:
            status = service_status(catalog, name, snap)
            live = status.live
            color = next((c for c in status.colors if c.live), None)
            if color is not None:
                version, ready, desired = color.version, color.ready, color.desired
                verdicts += ["bad" if color.problems else "ok"]
            else:
                verdicts.append("bad")
        else:
            verdicts.append("unknown")
        services.append(DigestService(name, worst(verdicts), live, version, ready, desired, figures))
    services.sort(key=lambda s: (VERDICTS.index(s.verdict), s.name))
    if alerts.value is None:
        alert_figure = Figure("alerts", alerts.problem or "no data", "", "unknown")
    else:
        alert_figure = Figure("alerts", f"{alerts.value:.0f}", "0", "ok" if alerts.value == 0 else "bad")
    return DigestReport(
        title,
        tuple(services),
        tuple(dep_items),
        alert_figure,
        window,
        tuple(_dedupe(unavailable)),
        late,
        business,
        extra,
    )


async def error_digest(deps: Deps, window: str, title: str, late: str | None = None) -> ErrorDigest:
    prom: Prom | None = deps.prom
    overview = (
        await prom.overview(window, saturation=False)
        if prom is not None
        else _unavailable("PROMETHEUS_URL not set: no error rates")
    )
    problem = NOT_STATED if overview.problems and not overview.services else "no data"
    rows = [
        (name, error_figure(_figures_of(overview, name, problem).error_rate, deps.catalog.slos))
        for name in deps.catalog.services
    ]
    rows.sort(key=lambda r: (VERDICTS.index(r[1].verdict), r[0]))
    return ErrorDigest(title, window, tuple(rows), overview.problems, late)


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


# -- the command ------------------------------------------------------------------------------


def schedule_infos(deps: Deps, at: datetime) -> tuple[ScheduleInfo, ...]:
    return tuple(
        ScheduleInfo(
            s.name,
            s.kind,
            s.cron,
            s.timezone,
            channel_of(deps, s),
            s.schedule.next_after(at),
        )
        for s in deps.catalog.digests
    )


def channel_of(deps: Deps, schedule: DigestSchedule) -> str:
    return schedule.channel or deps.catalog.channels.digests


@command(
    "digest [now] [daily|weekly|monthly]",
    summary="The digest schedules and when each posts next; `now` posts one here (daily unless "
    "you say weekly or monthly).",
    role=Role.VIEWER,
    examples=("/payflow digest", "/payflow digest now", "/payflow digest now weekly"),
    parse=_parse,
)
async def digest(cmd: Digest, ctx: Context) -> Reply:
    if not cmd.now:
        running = ctx.deps.prom is not None
        return Reply(DigestSchedules(schedule_infos(ctx.deps, datetime.now(UTC)), running))
    env = ctx.catalog.environment
    view: DigestReport | PeriodDigest
    if cmd.kind == "weekly":
        view = await weekly_digest(
            ctx.deps, _window_of(ctx.catalog, "weekly"), f"PayFlow weekly review · {env}"
        )
    elif cmd.kind == "monthly":
        view = await monthly_digest(ctx.deps, f"PayFlow monthly review · {env}")
    else:
        view = await health_digest(ctx.deps, _window_of(ctx.catalog, "health"), f"PayFlow digest · {env}")
    return Reply(view, public=True, detail=f"{cmd.kind}: verdict {view.verdict}")


def _window_of(catalog: Catalog, kind: str) -> str:
    """The window of the catalog's first schedule of this kind (1h without one)."""
    return next((s.window for s in catalog.digests if s.kind == kind), "1h")


# -- the schedules ------------------------------------------------------------------------------


def slot_key(schedule: str, slot: datetime) -> str:
    return f"digest:{schedule}:{slot.astimezone(UTC).strftime('%Y-%m-%dT%H:%MZ')}"


def last_key(schedule: str) -> str:
    return f"digest:{schedule}:last"


def _local(slot: datetime, schedule: DigestSchedule) -> str:
    return slot.astimezone(schedule.schedule.zone).strftime("%Y-%m-%d %H:%M %Z")


class Scheduler:
    """Posts each schedule's slots; several replicas may run one each against the same store."""

    def __init__(self, deps: Deps, *, clock: Callable[[], datetime] | None = None):
        self.deps = deps
        self.clock = clock or (lambda: datetime.now(UTC))
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"

    async def run(self) -> None:
        if self.deps.prom is None:
            log.info("digest schedules not running: PROMETHEUS_URL is not set")
            return
        while True:
            try:
                await self.tick()
            except StoreUnavailable as exc:
                log.warning("digest schedules: store unavailable (%s); nothing posted, retrying", exc)
            except Exception:
                log.exception("digest schedules: tick failed")
            await asyncio.sleep(self._pause())

    def _pause(self) -> float:
        at = self.clock()
        upcoming = [s.schedule.next_after(at) for s in self.deps.catalog.digests]
        soonest = min((t for t in upcoming if t is not None), default=None)
        if soonest is None:
            return RECHECK
        return min(RECHECK, max(0.05, (soonest - at).total_seconds()))

    async def tick(self) -> list[str]:
        """Post every due slot this replica wins; returns the keys it posted."""
        posted = []
        for schedule in self.deps.catalog.digests:
            key = await self._due(schedule)
            if key:
                posted.append(key)
        return posted

    async def _due(self, schedule: DigestSchedule) -> str | None:
        store = self.deps.store
        at = self.clock()
        slots = schedule.schedule.slots(at - LOOKBACK, at)
        if not slots:
            return None
        slot = slots[-1]
        key = slot_key(schedule.name, slot)
        record = await store.get(key)
        last = await store.get(last_key(schedule.name))
        last_slot = datetime.fromisoformat(last["slot"]) if last and "slot" in last else None
        late = at - slot > ON_TIME
        if record is None:
            if late and last_slot is None:
                return None  # never posted before: a fresh install, not an outage
            claim = {"state": "claimed", "owner": self.owner, "claimed_at": at.isoformat()}
            if not await store.create(key, claim, ttl=KEY_TTL):
                return None  # another replica has it
        elif record.get("state") == "claimed" and at - datetime.fromisoformat(record["claimed_at"]) > LEASE:
            claim = {"state": "claimed", "owner": self.owner, "claimed_at": at.isoformat()}
            if not await store.compare_and_set(key, "claimed_at", record["claimed_at"], claim, ttl=KEY_TTL):
                return None
            late = True
        else:
            return None
        missed = [s for s in slots[:-1] if last_slot is not None and s > last_slot]
        note = None
        if late:
            note = f"posted late: the {_local(slot, schedule)} slot was missed while the bot was down"
            if missed:
                note += f"; {len(missed)} earlier slot(s) were missed too"
        try:
            await self._post(schedule, note)
        except (SlackError, StoreUnavailable, OSError) as exc:
            log.warning("digest %s could not be posted (%s); releasing the slot for a retry", key, exc)
            await store.delete(key, if_field="owner", equals=self.owner)
            return None
        done = {"state": "posted", "owner": self.owner, "posted_at": self.clock().isoformat(), "late": late}
        await store.compare_and_set(key, "owner", self.owner, done, ttl=KEY_TTL)
        await store.put(last_key(schedule.name), {"slot": slot.isoformat()}, ttl=KEY_TTL)
        return key

    async def _post(self, schedule: DigestSchedule, late: str | None) -> None:
        channel = channel_of(self.deps, schedule)
        env = self.deps.catalog.environment
        view: DigestReport | ErrorDigest | PeriodDigest
        if schedule.kind == "health":
            view = await health_digest(self.deps, schedule.window, f"PayFlow daily checklist · {env}", late)
        elif schedule.kind == "weekly":
            view = await weekly_digest(self.deps, schedule.window, f"PayFlow weekly review · {env}", late)
        elif schedule.kind == "monthly":
            view = await monthly_digest(self.deps, f"PayFlow monthly review · {env}", late)
        else:
            view = await error_digest(self.deps, schedule.window, f"PayFlow error rates · {env}", late)
        await self.deps.notifier.post(channel, view)


@background
async def scheduler(deps: Deps) -> None:
    await Scheduler(deps).run()
