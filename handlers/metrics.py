"""`/payflow metrics <service> [window]` and `/payflow query <promql> [--window d]`.

Figures are judged against the catalog's SLOs; a figure Prometheus could not give is shown as
what it is (no data, NaN, unavailable and why), never as healthy.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from datetime import timedelta

from bot.base import durations
from bot.base.roles import Role
from bot.config.catalog import Catalog, SLOs
from bot.domain.gate.engine import Gate
from bot.domain.gate.record import parse_iso
from bot.domain.topology import live_color
from bot.domain.views import Figure, MetricsReport, Notice, QueryTable, Reply, Tone
from bot.gateways.charts import ChartUnavailable, Line, Marker, Panel, render_png_isolated, text_table
from bot.gateways.kube_objects import KubeError
from bot.gateways.prom import Prom, PromError, PromQueryError, Reading, Scalar, Series, ServiceFigures, now
from bot.gateways.slack import SlackError
from bot.gateways.store import StoreUnavailable
from handlers.base import Context
from handlers.business_figures import business_figures
from handlers.registry import Usage, at_most, command, service_arg, shown

log = logging.getLogger(__name__)

NO_PROMETHEUS = (
    "No Prometheus configured: set PROMETHEUS_URL to the Prometheus that scrapes PayFlow "
    "(in `make run`, install the `prometheus` package and restart)."
)


DEFAULT_METRICS_WINDOW = "1h"
MIN_WINDOW, MAX_WINDOW = 60, 7 * 86_400
MAX_PROMQL = 300
WINDOW_OPTION = "--window"
_SLACK_ESCAPES = (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))
_SMART_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'"})


@dataclass(frozen=True)
class Metrics:
    service: str
    window: str = DEFAULT_METRICS_WINDOW


@dataclass(frozen=True)
class Query:
    promql: str
    window: str | None = None  # None: an instant query (a table); a window: a chart


def _window(word: str, command: str) -> str:
    try:
        seconds = durations.bounded(word, MIN_WINDOW, MAX_WINDOW)
    except durations.BadDuration:
        raise Usage(
            f"`{shown(word)}` is not a window I can use: say 1m to 7d, like `15m`, `1h` or `24h`.", command
        ) from None
    return durations.label(seconds)


def _parse_metrics(args: list[str], catalog: Catalog) -> Metrics:
    if not args:
        raise Usage("Say which service, e.g. `/payflow metrics api-gateway 1h`.", "metrics")
    at_most(args, 2, "metrics")
    service = service_arg(args[0], catalog, "metrics")
    return Metrics(service, _window(args[1], "metrics") if len(args) > 1 else DEFAULT_METRICS_WINDOW)


def _parse_query(args: list[str], catalog: Catalog) -> Query:
    """Everything up to an optional trailing `--window <duration>` is PromQL (a trailing bare
    duration would be ambiguous: `x offset 5m` is valid PromQL)."""
    words = list(args)  # a smart dash before `window` is `--` already (registry.parse)
    window = None
    if len(words) >= 2 and words[-2].lower() == WINDOW_OPTION:
        window = _window(words[-1], "query")
        words = words[:-2]
    elif words and words[-1].lower().startswith(WINDOW_OPTION + "="):
        window = _window(words[-1].partition("=")[2], "query")
        words = words[:-1]
    elif words and words[-1].lower() == WINDOW_OPTION:
        raise Usage("`--window` needs a duration, e.g. `--window 1h`.", "query")
    promql = " ".join(words)
    for escaped, plain in _SLACK_ESCAPES:  # Slack escapes these three in command text
        promql = promql.replace(escaped, plain)
    promql = promql.translate(_SMART_QUOTES)
    if not promql:
        raise Usage("Say which PromQL to run, e.g. `/payflow query up`.", "query")
    if len(promql) > MAX_PROMQL:
        raise Usage(
            f"That PromQL is {len(promql)} characters; at most {MAX_PROMQL}. Nothing was run.", "query"
        )
    return Query(promql, window)


CHART_POINTS = 240
MAX_ROWS = 20
SATURATION = 0.8  # the guide: CPU and memory under 80 % on average
TABLE_CHARS = 2400  # a chart's fallback table stays within one message section


def percent(ratio: float) -> str:
    pct = ratio * 100
    if pct == 0:
        return "0 %"
    if abs(pct) < 0.01:
        return f"{pct:.3f} %"
    if abs(pct) < 1:
        return f"{pct:.2f} %"
    return f"{pct:.1f} %"


def availability_text(ratio: float) -> str:
    return f"{ratio * 100:.3f} %".replace(".000 %", " %") if ratio < 1 else "100 %"


def _missing(reading: Reading) -> str:
    return reading.problem or "no data"


def error_figure(reading: Reading, slos: SLOs) -> Figure:
    objective = f"≤ {percent(slos.error_rate)}"
    if reading.value is None:
        return Figure("error rate", _missing(reading), objective, "unknown")
    verdict = "ok" if reading.value <= slos.error_rate else "bad"
    return Figure("error rate", percent(reading.value), objective, verdict)


def latency_figure(label: str, reading: Reading, slo_ms: float | None) -> Figure:
    """Without an SLO (p99) the figure is shown neutral: nothing to be within, so no ✅."""
    objective = f"≤ {slo_ms:g} ms" if slo_ms is not None else ""
    if reading.value is None:
        return Figure(label, _missing(reading), objective, "unknown")
    if slo_ms is None:
        return Figure(label, f"{reading.value:.0f} ms", "", "info")
    verdict = "ok" if reading.value <= slo_ms else "bad"
    return Figure(label, f"{reading.value:.0f} ms", objective, verdict)


def rps_figure(reading: Reading) -> Figure:
    """Traffic has no SLO: shown neutral, never as a ✅."""
    if reading.value is None:
        return Figure("requests", _missing(reading), "", "unknown")
    return Figure("requests", f"{reading.value:.1f}/s", "", "info")


def availability_figure(reading: Reading, slos: SLOs) -> Figure:
    objective = f"≥ {availability_text(slos.availability)}"
    if reading.value is None:
        return Figure("availability", _missing(reading), objective, "unknown")
    verdict = "ok" if reading.value >= slos.availability else "bad"
    return Figure("availability", availability_text(reading.value), objective, verdict)


def saturation_figure(label: str, reading: Reading) -> Figure:
    objective = f"< {SATURATION:.0%}"
    if reading.value is None:
        return Figure(label, _missing(reading), objective, "unknown")
    verdict = "ok" if reading.value < SATURATION else "warn"
    return Figure(label, f"{reading.value * 100:.0f} %", objective, verdict)


def golden_figures(f: ServiceFigures, slos: SLOs) -> tuple[Figure, ...]:
    return (
        error_figure(f.error_rate, slos),
        latency_figure("p95", f.p95_ms, slos.p95_ms),
        latency_figure("p99", f.p99_ms, None),
        rps_figure(f.rps),
        availability_figure(f.availability, slos),
    )


def step_for(window_seconds: int) -> int:
    return max(1, math.ceil(window_seconds / CHART_POINTS))


async def _live(ctx: Context, service: str) -> str | None:
    try:
        snap = await ctx.kube.snapshot()
    except KubeError:
        return None
    return live_color(ctx.catalog, service, snap.ingresses, snap.services)


def _human(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h" + (f" {rest} min" if rest else "")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _table_text(title: str, reason: str, panels: list[Panel]) -> str:
    """The chart's figures as a code block, within one message section (never cut silently)."""
    rows = text_table(panels)
    shown: list[str] = []
    for row in rows:
        if sum(len(r) + 1 for r in shown) + len(row) > TABLE_CHARS:
            break
        shown.append(row)
    more = (
        f"\n({len(rows) - len(shown)} more rows not shown; narrow the query)"
        if len(shown) < len(rows)
        else ""
    )
    head = f"📈 *{_escape(title)}*: {_escape(reason)}. The figures as a table instead:"
    return f"{head}\n```{_escape(chr(10).join(shown))}```{more}"


async def _draw(title: str, panels: list[Panel]) -> tuple[bytes | None, str]:
    """The PNG, or None and why: a chart that cannot be drawn is never an internal error."""
    try:
        return await render_png_isolated(title, panels), ""
    except ChartUnavailable as exc:
        log.warning("chart not drawn: %s", exc)
        return None, f"the chart could not be drawn here ({exc})"
    except Exception:
        log.exception("chart rendering failed")
        return None, "the chart could not be drawn (the error is logged)"


async def _upload_chart(ctx: Context, filename: str, title: str, panels: list[Panel]) -> str:
    """Render off the event loop and upload, next to the figures; when that cannot be done, post
    the chart's figures as a table with the reason. Returns that reason ("" when uploaded)."""
    png, reason = await _draw(title, panels)
    if png is not None:
        try:
            await ctx.notifier.upload(ctx.channel, filename, png, title=title, thread=ctx.message)
            return ""
        except SlackError as exc:
            log.warning("chart upload failed: %s", exc)
            reason = f"the chart could not be uploaded ({exc})"
    table = Notice(_table_text(title, reason, panels), Tone.WARNING)
    try:
        await ctx.notifier.post(ctx.channel, table, thread=ctx.message)
    except SlackError:
        await ctx.notifier.tell(ctx.channel, ctx.actor, table)
    return reason


async def switch_markers(
    ctx: Context, services: set[str] | None, start: float, end: float
) -> tuple[Marker, ...]:
    """Where traffic moved, from the change records: the moment that explains a chart's step."""
    try:
        one = next(iter(services)) if services is not None and len(services) == 1 else None
        changes = await Gate(ctx.deps).records.latest(one)
    except StoreUnavailable:
        return ()
    markers = []
    for change in changes:
        if not change.switched_at or (services is not None and change.service not in services):
            continue
        at = parse_iso(change.switched_at).timestamp()
        if start <= at <= end:
            who = "" if services is not None and len(services) == 1 else f"{change.service} "
            markers.append(Marker(at, f"{who}→ {change.to_color} {change.image_version}"))
    return tuple(sorted(markers, key=lambda m: m.at))


def _by_color(series: list[Series], scale: float) -> tuple[Line, ...]:
    lines = []
    for s in sorted(series, key=lambda s: dict(s.labels).get("color", "")):
        color = dict(s.labels).get("color") or None
        lines.append(Line(color or "all colors", tuple((t, v * scale) for t, v in s.points), color))
    return tuple(lines)


def _first_data(series: list[Series]) -> float | None:
    stamps = [t for s in series for t, v in s.points if math.isfinite(v)]
    return min(stamps) if stamps else None


@command(
    "metrics <service> [window]",
    summary=f"Error rate, p95, p99, requests/s and availability against the SLOs over a window "
    f"(1m–7d, default {DEFAULT_METRICS_WINDOW}), with a chart.",
    role=Role.VIEWER,
    examples=("/payflow metrics api-gateway", "/payflow metrics wallet-service 24h"),
    parse=_parse_metrics,
)
async def show_metrics(cmd: Metrics, ctx: Context) -> Reply:
    prom: Prom | None = ctx.deps.prom
    if prom is None:
        return Reply(
            Notice(NO_PROMETHEUS, Tone.WARNING), detail="Prometheus not configured", outcome="failed"
        )
    slos = ctx.catalog.slos
    seconds = durations.seconds(cmd.window)
    end = now()
    start = end - timedelta(seconds=seconds)
    step = step_for(seconds)
    # rates over a few steps, never less than a minute: smooth enough to read, short enough to move
    rate_window = max(60, step * 4)
    rate_label = durations.label(rate_window)
    exprs = {
        "rps": prom.expr("rps", service=cmd.service, by="color", window=rate_label),
        "error_rate": prom.expr("error_rate", service=cmd.service, by="color", window=rate_label),
        "p95": prom.expr("latency", service=cmd.service, by="color", window=rate_label, quantile=0.95),
    }
    figures_task = asyncio.ensure_future(prom.service_figures(cmd.service, cmd.window))
    # platform totals, not this service's: a "Business" line when the catalog's templates are set
    business_task = asyncio.ensure_future(business_figures(prom, cmd.window, "a day earlier"))
    live = await _live(ctx, cmd.service)
    try:
        raw = await figures_task
    except PromError as exc:  # no second deadline for the chart: one is enough to name the problem
        business_task.cancel()
        unavailable = Reading(None, f"unavailable: {exc}")
        figures = golden_figures(ServiceFigures(*(unavailable,) * 5), slos)
        report = MetricsReport(cmd.service, cmd.window, figures, live, "no chart: Prometheus did not answer")
        await ctx.notifier.post(ctx.channel, report, thread=ctx.message)
        return Reply(None, detail=f"{cmd.window}: Prometheus: {exc}", outcome="failed")
    try:
        found: dict[str, list[Series]] | None = await prom.batch_range(exprs, start, end, step)
        chart_problem = ""
    except PromError as exc:
        found, chart_problem = None, f"no chart: {exc}"
    coverage = ""
    first = _first_data(found["rps"]) if found else None
    if first is not None and first - start.timestamp() > rate_window + 2 * step:
        # counters that began inside the window: a rate over the whole window would divide
        # what little there is by all of it (0.2 req/s where 25.6 are served)
        covered = min(seconds, math.ceil((end.timestamp() - first) / 60) * 60)
        if covered < seconds:
            try:
                raw = await prom.service_figures(cmd.service, durations.label(covered))
                coverage = (
                    f"only {_human(covered)} of data in the {cmd.window} window: "
                    f"the figures are over those {_human(covered)}"
                )
            except PromError as exc:
                coverage = f"only {_human(covered)} of data in the {cmd.window} window ({exc})"
    figures = golden_figures(raw, slos)
    business = await business_task
    report = MetricsReport(
        cmd.service, cmd.window, figures, live, chart_problem, coverage=coverage, business=business
    )
    await ctx.notifier.post(ctx.channel, report, thread=ctx.message)
    detail = cmd.window + (f"; {coverage}" if coverage else "")
    if found is None:
        return Reply(None, detail=f"{detail}; {chart_problem}")
    markers = await switch_markers(ctx, {cmd.service}, start.timestamp(), end.timestamp())
    panels = [
        Panel("Requests", "req/s", _by_color(found["rps"], 1.0), markers=markers),
        Panel(
            "Error rate",
            "%",
            _by_color(found["error_rate"], 100.0),
            slos.error_rate * 100,
            f"SLO {percent(slos.error_rate)}",
            markers=markers,
        ),
        Panel(
            "Latency p95",
            "ms",
            _by_color(found["p95"], 1000.0),
            slos.p95_ms,
            f"SLO {slos.p95_ms:g} ms",
            markers=markers,
        ),
    ]
    title = f"{cmd.service} · last {cmd.window} · by color"
    note = await _upload_chart(ctx, f"{cmd.service}-{cmd.window}.png", title, panels)
    return Reply(None, detail=detail + (f"; chart as a table: {note}" if note else ""))


def _labels(labels: dict[str, str]) -> str:
    name = labels.get("__name__", "")
    rest = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{rest}}}" if rest or not name else name


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:.6g}"


@command(
    "query <promql> [--window <duration>]",
    summary=f"Run PromQL (at most {MAX_PROMQL} characters): the current value(s) as a table, or with "
    "`--window` a chart over that window (1m–7d).",
    role=Role.OPERATOR,
    examples=(
        '/payflow query sum by (service) (rate(http_requests_total{status=~"5.."}[5m]))',
        "/payflow query sum(rate(http_requests_total[5m])) --window 6h",
    ),
    parse=_parse_query,
)
async def run_query(cmd: Query, ctx: Context) -> Reply:
    prom: Prom | None = ctx.deps.prom
    if prom is None:
        return Reply(Notice(NO_PROMETHEUS, Tone.WARNING))
    detail = cmd.promql[:200] + (f" --window {cmd.window}" if cmd.window else "")
    try:
        if cmd.window is None:
            return await _instant(cmd, prom, detail)
        return await _chart(cmd, ctx, prom, detail)
    except PromQueryError as exc:
        return Reply(
            Notice(f"Prometheus refused the query: `{exc}`", Tone.ERROR), detail=f"{detail}: refused: {exc}"
        )
    except PromError as exc:
        return Reply(
            Notice(f"No answer: {exc}. Nothing else was tried.", Tone.ERROR), detail=f"{detail}: {exc}"
        )


async def _instant(cmd: Query, prom: Prom, detail: str) -> Reply:
    result = await prom.instant(cmd.promql)
    if isinstance(result, Scalar):
        table = QueryTable(cmd.promql, (("scalar", _number(result.value)),), 1, scalar=True)
        return Reply(table, public=True, detail=detail)
    ordered = sorted(result, key=lambda s: _labels(dict(s.labels)))
    rows = tuple((_labels(dict(s.labels)), _number(s.value)) for s in ordered[:MAX_ROWS])
    return Reply(QueryTable(cmd.promql, rows, len(result)), public=True, detail=detail)


async def _chart(cmd: Query, ctx: Context, prom: Prom, detail: str) -> Reply:
    assert cmd.window is not None
    seconds = durations.seconds(cmd.window)
    end = now()
    series = await prom.range(cmd.promql, end - timedelta(seconds=seconds), end, step_for(seconds))
    if not series:
        return Reply(
            Notice(f"`{cmd.promql}` returned no series over the last {cmd.window}.", Tone.WARNING),
            detail=detail,
        )
    lines = tuple(
        Line(_labels(dict(s.labels))[:60] or "value", s.points, dict(s.labels).get("color")) for s in series
    )
    named = {dict(s.labels).get("service") for s in series}
    services = None if None in named else {n for n in named if n}
    start, stop = (end - timedelta(seconds=seconds)).timestamp(), end.timestamp()
    markers = await switch_markers(ctx, services, start, stop)
    title = f"{cmd.promql[:90]} · last {cmd.window}"
    note = await _upload_chart(ctx, "query.png", title, [Panel(cmd.promql[:100], "", lines, markers=markers)])
    if note:
        return Reply(None, detail=f"{detail}; chart as a table: {note}")
    return Reply(None, detail=f"{detail}; {len(series)} series charted")
