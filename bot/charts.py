"""PNG charts for Slack. matplotlib is imported inside `render_png`, with the Agg backend: no
display is needed, and `serve` never pays for matplotlib unless someone asks for a chart."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

MAX_LINES = 10


@dataclass(frozen=True)
class Line:
    label: str
    points: tuple[tuple[float, float], ...]  # (unix time, value); NaN leaves a gap


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    lines: tuple[Line, ...]
    threshold: float | None = None  # drawn as a dashed line, e.g. the SLO
    threshold_label: str = "SLO"
    notes: list[str] = field(default_factory=list)


def render_png(title: str, panels: list[Panel], *, width: float = 9.0) -> bytes:
    """Panels stacked vertically, sharing the time axis; returns PNG bytes."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, 2.6 * len(panels) + 0.6), dpi=100, layout="constrained")
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    fig.suptitle(title, fontsize=11)
    for ax, panel in zip(axes, panels, strict=True):
        drawn = 0
        for line in panel.lines[:MAX_LINES]:
            xs = [datetime.fromtimestamp(t, UTC) for t, _ in line.points]
            ys = [v if math.isfinite(v) else math.nan for _, v in line.points]
            ax.plot(xs, ys, label=line.label, linewidth=1.4)
            drawn += 1
        if panel.threshold is not None:
            ax.axhline(
                panel.threshold, color="#d62728", linestyle="--", linewidth=1.0, label=panel.threshold_label
            )
        if not drawn:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="grey")
        ax.set_title(panel.title, fontsize=9, loc="left")
        ax.set_ylabel(panel.unit, fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=7)
        ax.set_ylim(bottom=0)
        if drawn or panel.threshold is not None:
            ax.legend(fontsize=7, loc="upper left")
        if len(panel.lines) > MAX_LINES:
            ax.text(
                0.99,
                0.02,
                f"{len(panel.lines) - MAX_LINES} more series not drawn",
                transform=ax.transAxes,
                ha="right",
                fontsize=7,
                color="grey",
            )
    axes[-1].xaxis.set_major_formatter(mdates.DateFormatter("%H:%M\n%m-%d", tz=UTC))
    axes[-1].set_xlabel("UTC", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
