"""PNG charts for Slack. matplotlib is imported inside `render_png`, with the Agg backend: no
display is needed, and `serve` never pays for matplotlib unless someone asks for a chart.

The worker draws through `render_png_isolated`: each chart in a short-lived child process
(`python -m bot.gateways.charts`), at most RENDER_SLOTS at once. matplotlib costs ~50 MB to import and
each figure drawn at once ~10 MB that the allocator keeps: drawn in the worker's threads, a
burst of `metrics` commands took the worker from ~110 MB to 260 MB and it never gave it back.
A child returns every byte when it exits, and the worker's memory stays flat.

A chart is a convenience, never the answer itself: when it cannot be drawn (a read-only root
filesystem leaves matplotlib no cache directory) the caller shows `text_table` instead."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

MAX_LINES = 10
RENDER_SLOTS = 2  # charts drawn at once (one per core of the pod)
RENDER_TIMEOUT = 30.0  # seconds for one child to start, draw and answer; then it is killed
_UNAVAILABLE_EXIT = 3  # the child's exit status for ChartUnavailable (its message on stderr)
_ROOT = Path(__file__).resolve().parents[2]
MAX_MARKERS = 10
# Each deployment color is drawn in its own color, whatever the order of the series; other
# series get colors that can be mistaken for neither (nor for the SLO line's red).
COLOR_OF = {"blue": "#1f77b4", "green": "#2ca02c"}
OTHERS = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#ff7f0e")
STYLES = ("-", "--", ":", "-.")


class ChartUnavailable(Exception):
    """The chart could not be drawn here; the message says why, for the note next to the table."""


@dataclass(frozen=True)
class Line:
    label: str
    points: tuple[tuple[float, float], ...]  # (unix time, value); NaN leaves a gap
    color: str | None = None  # a deployment color ("blue", "green"): drawn in that color


@dataclass(frozen=True)
class Marker:
    """A moment worth seeing on the time axis, e.g. traffic switched to green."""

    at: float  # unix time
    label: str


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    lines: tuple[Line, ...]
    threshold: float | None = None  # drawn as a dashed line, e.g. the SLO
    threshold_label: str = "SLO"
    notes: list[str] = field(default_factory=list)
    markers: tuple[Marker, ...] = ()


def _writable(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


def ensure_config_dir() -> str | None:
    """matplotlib needs a writable MPLCONFIGDIR for its font cache (default ~/.config/matplotlib,
    which a pod with readOnlyRootFilesystem and uid 10001 does not have). Point it at a private
    folder in the temp dir (an emptyDir in the pod) unless it is set and writable; None when
    nothing writable exists, and the chart cannot be drawn."""
    current = os.environ.get("MPLCONFIGDIR")
    if current and _writable(Path(current)):
        return current
    try:
        path = Path(tempfile.gettempdir()) / f"payflow-matplotlib-{os.getuid()}"
        path.mkdir(mode=0o700, exist_ok=True)
    except (OSError, FileNotFoundError):
        return None
    if not _writable(path):
        return None
    os.environ["MPLCONFIGDIR"] = str(path)
    return str(path)


def _series_styles(lines: tuple[Line, ...]) -> list[tuple[str, str]]:
    """(color, linestyle) per line: blue and green in their colors; several series of one color
    (two services' blue) told apart by the line style, consistently in the order given."""
    used: dict[str, int] = {}
    others = iter(OTHERS * (1 + len(lines) // len(OTHERS)))
    styles = []
    for line in lines:
        color = COLOR_OF.get(line.color or "") or next(others)
        n = used.get(color, 0)
        used[color] = n + 1
        styles.append((color, STYLES[n % len(STYLES)]))
    return styles


def render_png(title: str, panels: list[Panel], *, width: float = 9.0) -> bytes:
    """Panels stacked vertically, sharing the time axis; returns PNG bytes. Raises
    ChartUnavailable when matplotlib cannot run here."""
    if ensure_config_dir() is None:
        raise ChartUnavailable("no writable directory for matplotlib's cache (set MPLCONFIGDIR or TMPDIR)")
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.dates as mdates
        from matplotlib.figure import Figure
    except (ImportError, OSError, RuntimeError) as exc:
        raise ChartUnavailable(f"matplotlib cannot start: {exc}") from None

    fig = Figure(figsize=(width, 2.6 * len(panels) + 0.6), dpi=100, layout="constrained")
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    fig.suptitle(title, fontsize=11)
    for ax, panel in zip(axes, panels, strict=True):
        drawn = 0
        shown = panel.lines[:MAX_LINES]
        for line, (color, style) in zip(shown, _series_styles(shown), strict=True):
            xs = [datetime.fromtimestamp(t, UTC) for t, _ in line.points]
            ys = [v if math.isfinite(v) else math.nan for _, v in line.points]
            ax.plot(xs, ys, label=line.label, linewidth=1.4, color=color, linestyle=style)
            drawn += 1
        if panel.threshold is not None:
            ax.axhline(
                panel.threshold, color="#d62728", linestyle="--", linewidth=1.0, label=panel.threshold_label
            )
        for marker in panel.markers[-MAX_MARKERS:]:
            at = datetime.fromtimestamp(marker.at, UTC)
            ax.axvline(at, color="#444444", linestyle=":", linewidth=1.2)
            ax.annotate(
                marker.label,
                xy=(at, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(3, -10),
                textcoords="offset points",
                fontsize=7,
                color="#444444",
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


def _number(value: float) -> str:
    if not math.isfinite(value):
        return "—"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def text_table(panels: list[Panel]) -> list[str]:
    """What the chart would have shown, as rows: each series' last, lowest, mean and highest
    value, and the markers; bounded like the chart (MAX_LINES series per panel)."""
    rows: list[tuple[str, ...]] = [("series", "last", "min", "mean", "max")]
    for panel in panels:
        unit = f" ({panel.unit})" if panel.unit else ""
        for line in panel.lines[:MAX_LINES]:
            values = [v for _, v in line.points if math.isfinite(v)]
            name = f"{panel.title}{unit}: {line.label}"[:60]
            if values:
                stats = (values[-1], min(values), sum(values) / len(values), max(values))
                rows.append((name, *(_number(v) for v in stats)))
            else:
                rows.append((name, "—", "—", "—", "—"))
        if len(panel.lines) > MAX_LINES:
            rows.append(
                (f"{panel.title}: {len(panel.lines) - MAX_LINES} more series not shown", "", "", "", "")
            )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    ]
    markers = sorted({(m.at, m.label) for p in panels for m in p.markers})[-MAX_MARKERS:]
    lines += [f"{datetime.fromtimestamp(at, UTC):%Y-%m-%d %H:%M} UTC  {label}" for at, label in markers]
    return lines


def _encode(title: str, panels: list[Panel], width: float) -> bytes:
    return json.dumps(
        {"title": title, "width": width, "panels": [dataclasses.asdict(p) for p in panels]}
    ).encode()


def _decode(data: bytes) -> tuple[str, list[Panel], float]:
    doc = json.loads(data)
    panels = [
        Panel(
            title=p["title"],
            unit=p["unit"],
            lines=tuple(
                Line(
                    label=ln["label"],
                    points=tuple((float(t), float(v)) for t, v in ln["points"]),
                    color=ln["color"],
                )
                for ln in p["lines"]
            ),
            threshold=p["threshold"],
            threshold_label=p["threshold_label"],
            notes=list(p["notes"]),
            markers=tuple(Marker(at=float(m["at"]), label=m["label"]) for m in p["markers"]),
        )
        for p in doc["panels"]
    ]
    return doc["title"], panels, float(doc["width"])


_slots: asyncio.Semaphore | None = None


async def render_png_isolated(
    title: str, panels: list[Panel], *, width: float = 9.0, timeout: float = RENDER_TIMEOUT
) -> bytes:
    """`render_png` in a child process that exits when the chart is drawn (see the module's
    docstring). Raises ChartUnavailable when it cannot be drawn here or in time; RuntimeError
    when the child failed otherwise."""
    global _slots
    if ensure_config_dir() is None:  # the child inherits the folder chosen here
        raise ChartUnavailable("no writable directory for matplotlib's cache (set MPLCONFIGDIR or TMPDIR)")
    if _slots is None:
        _slots = asyncio.Semaphore(RENDER_SLOTS)
    path = os.pathsep.join(filter(None, (str(_ROOT), os.environ.get("PYTHONPATH"))))
    env = {**os.environ, "PYTHONPATH": path}
    async with _slots:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.gateways.charts",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            png, err = await asyncio.wait_for(proc.communicate(_encode(title, panels, width)), timeout)
        except TimeoutError:
            raise ChartUnavailable(f"drawing it took longer than {timeout:g} s") from None
        finally:
            if proc.returncode is None:  # timed out or cancelled: never leave a child behind
                proc.kill()
                await proc.wait()
    why = err.decode(errors="replace").strip()[-500:]
    if proc.returncode == _UNAVAILABLE_EXIT:
        raise ChartUnavailable(why)
    if proc.returncode != 0 or not png:
        raise RuntimeError(f"the chart renderer exited with status {proc.returncode}: {why}")
    return png


def main() -> int:
    """The child: a chart request (JSON) on stdin, the PNG on stdout."""
    title, panels, width = _decode(sys.stdin.buffer.read())
    try:
        png = render_png(title, panels, width=width)
    except ChartUnavailable as exc:
        sys.stderr.write(str(exc))
        return _UNAVAILABLE_EXIT
    sys.stdout.buffer.write(png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
