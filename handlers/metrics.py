"""`/payflow metrics <service> [window]` and `/payflow query <promql> [--window d]`.

Figures are judged against the catalog's SLOs; a figure Prometheus could not give is shown as
what it is (no data, NaN, unavailable and why), never as healthy.
"""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import timedelta

from bot import durations
from bot.charts import Line, Panel, render_png
from bot.commands import Metrics, Query
from bot.config import SLOs
from bot.kube import KubeError
from bot.prom import Prom, PromError, PromQueryError, Reading, Scalar, ServiceFigures, now
from bot.slack import SlackError
from bot.topology import live_color
from bot.views import Figure, MetricsReport, Notice, QueryTable, Reply, Tone
from handlers.base import Context

log = logging.getLogger(__name__)

NO_PROMETHEUS = (
    "No Prometheus configured: set PROMETHEUS_URL to the Prometheus that scrapes PayFlow "
    "(in `make run`, install the `prometheus` package and restart)."
)
CHART_POINTS = 240
MAX_ROWS = 20
SATURATION = 0.8  # the guide: CPU and memory under 80 % on average


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
    objective = f"≤ {slo_ms:g} ms" if slo_ms is not None else ""
    if reading.value is None:
        return Figure(label, _missing(reading), objective, "unknown")
    verdict = "ok" if slo_ms is None or reading.value <= slo_ms else "bad"
    return Figure(label, f"{reading.value:.0f} ms", objective, verdict)


def rps_figure(reading: Reading) -> Figure:
    if reading.value is None:
        return Figure("requests", _missing(reading), "", "unknown")
    return Figure("requests", f"{reading.value:.1f}/s", "", "ok")


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


async def _upload_chart(ctx: Context, filename: str, title: str, panels: list[Panel]) -> str:
    """Render off the event loop and upload; returns a note when it could not be done."""
    try:
        png = await asyncio.to_thread(render_png, title, panels)
        await ctx.notifier.upload(ctx.channel, filename, png, title=title, thread=ctx.message)
    except SlackError as exc:
        log.warning("chart upload failed: %s", exc)
        return f"the chart could not be uploaded ({exc})"
    return ""


async def show_metrics(cmd: Metrics, ctx: Context) -> Reply:
    prom: Prom | None = ctx.deps.prom
    if prom is None:
        return Reply(Notice(NO_PROMETHEUS, Tone.WARNING))
    slos = ctx.catalog.slos
    figures_task = asyncio.ensure_future(prom.service_figures(cmd.service, cmd.window))
    live = await _live(ctx, cmd.service)
    try:
        figures = golden_figures(await figures_task, slos)
    except PromError as exc:
        unavailable = Reading(None, f"unavailable: {exc}")
        figures = golden_figures(ServiceFigures(*(unavailable,) * 5), slos)
        report = MetricsReport(cmd.service, cmd.window, figures, live, "no chart: Prometheus did not answer")
        await ctx.notifier.post(ctx.channel, report, thread=ctx.message)
        return Reply(None, detail=f"{cmd.window}: Prometheus: {exc}")
    await ctx.notifier.post(
        ctx.channel, MetricsReport(cmd.service, cmd.window, figures, live), thread=ctx.message
    )
    note = await _metrics_chart(ctx, prom, cmd)
    detail = f"{cmd.window}" + (f"; {note}" if note else "")
    if note:
        await ctx.notifier.tell(
            ctx.channel, ctx.actor, Notice(note[0].upper() + note[1:] + ".", Tone.WARNING)
        )
    return Reply(None, detail=detail)


async def _metrics_chart(ctx: Context, prom: Prom, cmd: Metrics) -> str:
    seconds = durations.seconds(cmd.window)
    end = now()
    step = step_for(seconds)
    # rates over a few steps, never less than a minute: smooth enough to read, short enough to move
    rate_window = durations.label(max(60, step * 4))
    exprs = {
        "error_rate": prom.expr("error_rate", service=cmd.service, by="service", window=rate_window),
        "p95": prom.expr("latency", service=cmd.service, by="service", window=rate_window, quantile=0.95),
    }
    try:
        found = await prom.batch_range(exprs, end - timedelta(seconds=seconds), end, step)
    except PromError as exc:
        return f"no chart: {exc}"
    slos = ctx.catalog.slos
    errors = [Line("error rate", tuple((t, v * 100) for t, v in s.points)) for s in found["error_rate"]]
    p95 = [Line("p95", tuple((t, v * 1000) for t, v in s.points)) for s in found["p95"]]
    panels = [
        Panel("Error rate", "%", tuple(errors), slos.error_rate * 100, f"SLO {percent(slos.error_rate)}"),
        Panel("Latency p95", "ms", tuple(p95), slos.p95_ms, f"SLO {slos.p95_ms:g} ms"),
    ]
    title = f"{cmd.service} · last {cmd.window}"
    return await _upload_chart(ctx, f"{cmd.service}-{cmd.window}.png", title, panels)


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
    lines = tuple(Line(_labels(dict(s.labels))[:60] or "value", s.points) for s in series)
    title = f"{cmd.promql[:90]} · last {cmd.window}"
    note = await _upload_chart(ctx, "query.png", title, [Panel(cmd.promql[:100], "", lines)])
    if note:
        return Reply(Notice(note[0].upper() + note[1:] + ".", Tone.WARNING), detail=f"{detail}; {note}")
    return Reply(None, detail=f"{detail}; {len(series)} series charted")
