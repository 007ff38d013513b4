"""The weekly and monthly reviews: the guide's weekly checklist (performance against last week,
capacity) and its monthly one (availability against the SLO, the error budget, what changed and
what broke). Posted on the catalog's schedules (handlers/digest.py's scheduler) and on demand
with `/payflow digest now weekly|monthly`.

Prometheus is asked one query per figure for all services (`by (service)`); "last week" is the
same expression evaluated 7 days earlier in that same query. Changes come from the gate's change
records (read only), incidents from the alert groups the store keeps. A figure that cannot be
read says why; the review is posted anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bot.config.catalog import Catalog
from bot.domain.gate.engine import Gate
from bot.domain.gate.record import DONE, parse_iso
from bot.domain.views import VERDICTS, Figure, PeriodDigest, PeriodService, worst
from bot.gateways.kube_objects import KubeError, Snapshot
from bot.gateways.prom import Pair, Prom, PromError, Reading
from bot.gateways.store import StoreUnavailable
from handlers.alerts import GROUP_TTL
from handlers.alerts import PREFIX as ALERT_GROUPS
from handlers.base import Deps
from handlers.digest_lines import extra_lines
from handlers.metrics import (
    availability_figure,
    availability_text,
    error_figure,
    latency_figure,
    percent,
    saturation_figure,
)
from handlers.status import service_status

WEEK, MONTH = timedelta(days=7), timedelta(days=30)
NO_PROMETHEUS = "PROMETHEUS_URL not set: no traffic, latency, availability or saturation figures"
RESTARTS = (
    "sum by (container) (increase(kube_pod_container_status_restarts_total"
    '{{namespace="{namespace}"}}[{period}]))'
)
NOT_STATED = "—"  # the figure is missing for a reason stated once in the digest
BUDGET_WARN = 0.75  # three quarters of the month's error budget spent: worth a look


def _missing(problem: str) -> Pair:
    return Pair(Reading(None, problem), Reading(None, problem))


def _compared(fig: Figure, before: Figure, pair: Pair, earlier: str) -> Figure:
    """`fig` (this period, judged as usual) with last period's figure and the change beside it."""
    if pair.now.value is None:
        return fig
    if pair.before.value is None:
        return replace(fig, value=f"{fig.value} ({earlier}: {pair.before.problem or 'no data'})")
    delta = ""
    if pair.before.value and fig.label == "requests":
        delta = f", {round((pair.now.value - pair.before.value) / pair.before.value * 100):+d} %"
    return replace(fig, value=f"{fig.value} ({earlier} {before.value}{delta})")


def _requests(reading: Reading) -> Figure:
    if reading.value is None:
        return Figure("requests", reading.problem or "no data", "", "unknown")
    return Figure("requests", f"{reading.value:.1f}/s", "", "info")


async def _snapshot(deps: Deps, unavailable: list[str]) -> Snapshot | None:
    try:
        return await deps.kube.snapshot()
    except KubeError as exc:
        unavailable.append(f"pods and replicas: {exc}")
        return None


async def change_counts(deps: Deps, since: datetime) -> tuple[dict[str, tuple[int, int]], str | None]:
    """Per service: (deploys done, rollbacks done) since `since`, from the gate's change records."""
    try:
        changes = await Gate(deps).records.all()
    except StoreUnavailable as exc:
        return {}, f"change records: {exc}"
    counts: dict[str, tuple[int, int]] = {}
    for c in changes:
        if c.state != DONE or parse_iso(c.switched_at or c.decided_at or c.created_at) < since:
            continue
        deploys, rollbacks = counts.get(c.service, (0, 0))
        counts[c.service] = (deploys, rollbacks + 1) if c.is_rollback else (deploys + 1, rollbacks)
    return counts, None


async def incident_counts(deps: Deps, since: datetime) -> tuple[dict[str, int], str | None]:
    """Alert groups whose first alert started since `since`, per service ("" without one)."""
    try:
        groups = await deps.store.scan(ALERT_GROUPS)
    except StoreUnavailable as exc:
        return {}, f"alert groups: {exc}"
    counts: dict[str, int] = {}
    for group in groups.values():
        starts = [s[1] for s in (group.get("states") or {}).values() if isinstance(s, list) and s[1]]
        if starts and parse_iso(min(starts)) >= since:
            service = group.get("service") or ""
            counts[service] = counts.get(service, 0) + 1
    return counts, None


def _changes_figure(counts: tuple[int, int]) -> Figure:
    deploys, rollbacks = counts
    verdict = "warn" if rollbacks else "info"
    return Figure("changes", f"{deploys} deployed, {rollbacks} rolled back", "", verdict)


def _changes_total(counts: dict[str, tuple[int, int]], problem: str | None, period: str) -> Figure:
    if problem:
        return Figure("Changes", f"unknown ({problem})", "", "unknown")
    deploys = sum(d for d, _ in counts.values())
    rollbacks = sum(r for _, r in counts.values())
    where = f" across {len(counts)} service(s)" if counts else ""
    return Figure(
        "Changes",
        f"{deploys} deployed, {rollbacks} rolled back {period}{where}",
        "",
        "warn" if rollbacks else "info",
    )


async def _restarts(
    prom: Prom, catalog: Catalog, period: str, at: datetime | None
) -> tuple[dict[str, Reading], str | None]:
    """Restarts over the period from kube-state-metrics, mapped from containers to services;
    None as the problem and an empty map when Prometheus has no such series."""
    try:
        query = RESTARTS.format(namespace=catalog.namespace, period=period)
        found = await prom.by_label(query, "container", at)
    except PromError as exc:
        return {}, str(exc)
    by_container = {catalog.container_name(s): s for s in catalog.services}
    return {by_container[c]: r for c, r in found.items() if c in by_container}, None


def _sorted(services: list[PeriodService]) -> tuple[PeriodService, ...]:
    return tuple(sorted(services, key=lambda s: (VERDICTS.index(s.verdict), s.name)))


def _dedupe(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


async def weekly_digest(
    deps: Deps, span: str, title: str, late: str | None = None, *, at: datetime | None = None
) -> PeriodDigest:
    """This week against last week per service, peaks against limits, replicas, restarts, changes."""
    prom: Prom | None = deps.prom
    catalog, slos = deps.catalog, deps.catalog.slos
    unavailable: list[str] = []
    notes: list[str] = [f"CPU and memory: the highest {span} average of the week against the limits"]
    since = (at or datetime.now(UTC)) - WEEK
    compared: dict[str, dict[str, Pair]] = {}
    peaks: dict[str, dict[str, Reading]] = {}
    restarts: dict[str, Reading] = {}
    if prom is None:
        unavailable.append(NO_PROMETHEUS)
        snap, (changes, changes_problem), extra = await asyncio.gather(
            _snapshot(deps, unavailable), change_counts(deps, since), extra_lines(deps, "weekly")
        )
        restarts_problem: str | None = NO_PROMETHEUS
    else:
        figures = {
            "requests": prom.expr("rps", window="7d"),
            "error rate": prom.expr("error_rate", window="7d"),
            "p95": prom.expr("latency", window="7d", quantile=0.95),
            "availability": prom.expr("availability", window="7d"),
        }
        (
            (compared, problems),
            (peaks, peak_problem),
            (restarts, restarts_problem),
            snap,
            (changes, changes_problem),
            extra,
        ) = await asyncio.gather(
            prom.compare(figures, WEEK, at=at),
            prom.peaks("7d", span, at),
            _restarts(prom, catalog, "7d", at),
            _snapshot(deps, unavailable),
            change_counts(deps, since),
            extra_lines(deps, "weekly"),
        )
        unavailable += problems
        if peak_problem:
            unavailable.append(f"CPU/memory peaks: {peak_problem}")
    # a figure missing for a reason listed once under "unavailable" shows a bare "—"
    failed = {p.split(": ", 1)[0] for p in unavailable} | ({"all"} if prom is None else set())
    from_snapshot = not restarts and snap is not None
    if from_snapshot:
        why = "Prometheus has no kube_pod_container_status_restarts_total"
        notes.append(
            f"restarts: the pods' own restart counts (since each pod started; {restarts_problem or why})"
        )
    elif restarts:
        notes.append("restarts: kube_pod_container_status_restarts_total over the week")

    def pair(figure: str, service: str) -> Pair:
        default = _missing(NOT_STATED if failed & {figure, "all"} else "no data")
        return compared.get(figure, {}).get(service, default)

    rows = []
    for name in catalog.services:
        p = {f: pair(f, name) for f in ("requests", "error rate", "p95", "availability")}
        judged: list[tuple[Callable[[Reading], Figure], str]] = [
            (_requests, "requests"),
            (lambda r: error_figure(r, slos), "error rate"),
            (lambda r: latency_figure("p95", r.scaled(1000), slos.p95_ms), "p95"),
            (lambda r: availability_figure(r, slos), "availability"),
        ]
        figs = [_compared(fn(p[f].now), fn(p[f].before), p[f], "last week") for fn, f in judged]
        peak_problem_text = NOT_STATED if failed & {"CPU/memory peaks", "all"} else "no data"
        for label, key in (("CPU peak", "cpu"), ("mem peak", "memory")):
            figs.append(
                saturation_figure(label, peaks.get(name, {}).get(key, Reading(None, peak_problem_text)))
            )
        figs.append(_replicas(catalog, name, snap))
        figs.append(_restarts_figure(catalog, name, restarts, snap, from_snapshot))
        figs.append(_changes_figure(changes.get(name, (0, 0))))
        rows.append(PeriodService(name, worst(f.verdict for f in figs), tuple(figs)))
    summary = [_changes_total(changes, changes_problem, "this week"), *extra]
    return PeriodDigest(
        title, "weekly", "7d", _sorted(rows), tuple(summary), tuple(notes), _dedupe(unavailable), late
    )


def _replicas(catalog: Catalog, service: str, snap: Snapshot | None) -> Figure:
    """Ready and desired pods of the live color against the catalog's maximum: capacity headroom."""
    most = catalog.services[service].max_replicas
    if snap is None:
        return Figure("replicas", "unknown", f"max {most}", "unknown")
    live = next((c for c in service_status(catalog, service, snap).colors if c.live), None)
    if live is None:
        return Figure("replicas", "no live color", f"max {most}", "unknown")
    verdict = "warn" if live.desired >= most else "info"
    return Figure("replicas", f"{live.ready}/{live.desired} (max {most})", "", verdict)


def _restarts_figure(
    catalog: Catalog, service: str, restarts: dict[str, Reading], snap: Snapshot | None, from_snapshot: bool
) -> Figure:
    if from_snapshot and snap is not None:
        count = sum(c.restarts for c in service_status(catalog, service, snap).colors)
    elif service in restarts and restarts[service].value is not None:
        count = round(restarts[service].value or 0)
    elif restarts:
        count = 0  # Prometheus has the series for others: none of this service's pods restarted
    else:
        return Figure("restarts", "unknown", "", "unknown")
    return Figure("restarts", str(count), "", "warn" if count else "info")


async def monthly_digest(
    deps: Deps, title: str, late: str | None = None, *, at: datetime | None = None
) -> PeriodDigest:
    """Availability over 30 days against the SLO, the error budget spent, changes and incidents."""
    prom: Prom | None = deps.prom
    catalog, slos = deps.catalog, deps.catalog.slos
    since = (at or datetime.now(UTC)) - MONTH
    unavailable: list[str] = []
    availability: dict[str, Reading] = {}
    problem = "no data"

    async def read_availability() -> None:
        nonlocal availability, problem
        if prom is None:
            unavailable.append(NO_PROMETHEUS)
            problem = NOT_STATED
            return
        try:
            availability = await prom.by_label(prom.expr("availability", window="30d"), "service", at)
        except PromError as exc:
            unavailable.append(f"availability: {exc}")
            problem = NOT_STATED

    _, (changes, changes_problem), (incidents, incidents_problem), extra = await asyncio.gather(
        read_availability(),
        change_counts(deps, since),
        incident_counts(deps, since),
        extra_lines(deps, "monthly"),
    )
    allowed = 1 - slos.availability
    rows = []
    for name in catalog.services:
        reading = availability.get(name, Reading(None, problem))
        figs = [availability_figure(reading, slos), _budget(reading, allowed)]
        figs.append(_changes_figure(changes.get(name, (0, 0))))
        count = incidents.get(name, 0)
        figs.append(Figure("incidents", str(count), "", "warn" if count else "info"))
        rows.append(PeriodService(name, worst(f.verdict for f in figs), tuple(figs)))
    if incidents_problem:
        incident_line = Figure("Incidents", f"unknown ({incidents_problem})", "", "unknown")
    else:
        total = sum(incidents.values())
        unowned = incidents.get("", 0)
        text = f"{total} alert group(s) started in the last 30 days" + (
            f", {unowned} naming no service" if unowned else ""
        )
        incident_line = Figure("Incidents", text, "", "warn" if total else "info")
    summary = [_changes_total(changes, changes_problem, "in 30 days"), incident_line, *extra]
    notes = (
        f"error budget: the share of the allowed {percent(allowed)} unavailability "
        f"(SLO {availability_text(slos.availability)}) used in 30 days",
        f"incidents: alert groups the store still holds (kept {GROUP_TTL // 86_400} days after their "
        "last notification, so quiet older ones are not counted)",
    )
    return PeriodDigest(
        title, "monthly", "30d", _sorted(rows), tuple(summary), notes, _dedupe(unavailable), late
    )


def _budget(reading: Reading, allowed: float) -> Figure:
    if reading.value is None:
        return Figure("error budget", reading.problem or "no data", "≤ 100 %", "unknown")
    spent = (1 - reading.value) / allowed if allowed else 0.0
    verdict = "bad" if spent > 1 else "warn" if spent > BUDGET_WARN else "ok"
    return Figure("error budget", f"{spent * 100:.0f} % spent", "≤ 100 %", verdict)
