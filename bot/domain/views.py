"""What handlers return: results in domain terms. `bot/chat/blocks/` turns them into Slack messages."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from bot.config.catalog import Color
from bot.domain.gate.record import Change
from bot.gateways.store import AuditEntry


class Tone(Enum):
    INFO = "info"
    SUCCESS = "success"
    WARNING = "warning"
    ERROR = "error"
    WORKING = "working"


@dataclass(frozen=True)
class Confirm:
    title: str
    text: str
    ok: str = "Yes"
    cancel: str = "Cancel"


@dataclass(frozen=True)
class Button:
    """A button in domain terms: `action` names a registered action, `value` is its argument."""

    label: str
    action: str
    value: str = ""
    style: str | None = None  # "primary" | "danger"
    confirm: Confirm | None = None


@dataclass(frozen=True)
class Notice:
    """A short answer to the requester alone."""

    text: str
    tone: Tone = Tone.INFO
    usage: str | None = None
    buttons: tuple[Button, ...] = ()


@dataclass(frozen=True)
class ColorStatus:
    color: Color
    deployment: str
    live: bool
    version: str | None
    desired: int
    ready: int
    restarts: int
    rollout: str  # complete | progressing | deadline exceeded | missing | scaled to zero
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    live: Color | None
    colors: tuple[ColorStatus, ...]
    problems: tuple[str, ...] = ()

    @property
    def healthy(self) -> bool:
        return not self.problems and not any(c.problems for c in self.colors)


@dataclass(frozen=True)
class StatusReport:
    environment: str
    namespace: str
    services: tuple[ServiceStatus, ...]


@dataclass(frozen=True)
class Scaled:
    actor: str
    service: str
    color: Color
    before: int
    after: int


@dataclass(frozen=True)
class AuditPage:
    entries: tuple[AuditEntry, ...]
    service: str | None
    limit: int


@dataclass(frozen=True)
class HelpEntry:
    usage: str
    summary: str
    examples: tuple[str, ...]
    role: str | None


@dataclass(frozen=True)
class HelpPage:
    entries: tuple[HelpEntry, ...]
    detailed: bool = False
    footer: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ChangeCard:
    """A blue-green change as a message: the progress message in the requester's channel and the
    approval request share it, so both always show what the record holds."""

    change: Change
    headline: str
    lines: tuple[str, ...] = ()
    buttons: tuple[Button, ...] = ()
    tone: Tone = Tone.INFO
    approval: bool = False  # show everything an approver must see


@dataclass(frozen=True)
class ChangeList:
    changes: tuple[Change, ...]
    service: str | None


@dataclass(frozen=True)
class Reply:
    """A view and who sees it: the requester only, or the whole channel."""

    view: View | None  # None: the handler has said all there is to say
    public: bool = False
    detail: str = ""  # what the audit entry says beyond the outcome
    target: str | None = None  # the service, when the command did not name it
    audited: bool = False  # the handler wrote its own audit entries
    outcome: str = "ok"  # how the audit records it: "lost" for a click that another click beat


# --- metrics, query, health, digests --------------------------------------------------------

# Worst first: a figure we could not read is never shown as healthy.
VERDICTS = ("bad", "unknown", "warn", "ok")


def worst(verdicts: Iterable[str]) -> str:
    found = set(verdicts)
    return next((v for v in VERDICTS if v in found), "ok")


@dataclass(frozen=True)
class Figure:
    """One figure against its objective: `value` is the figure as shown, or why there is none."""

    label: str
    value: str
    objective: str = ""  # e.g. "< 0.1 %"
    verdict: str = "ok"  # one of VERDICTS, or "info": a figure without an objective (p99, requests)


@dataclass(frozen=True)
class MetricsReport:
    service: str
    window: str
    figures: tuple[Figure, ...]
    live: str | None = None
    note: str = ""  # e.g. why there is no chart
    coverage: str = ""  # when the window holds less data than asked, and what the figures cover
    business: tuple[Figure, ...] = ()  # platform totals over the window against a day earlier

    @property
    def verdict(self) -> str:
        return worst(f.verdict for f in self.figures)


@dataclass(frozen=True)
class QueryTable:
    """An instant query's answer: one row per series (labels, value), at most `MAX_ROWS` shown."""

    promql: str
    rows: tuple[tuple[str, str], ...]
    total: int
    scalar: bool = False


@dataclass(frozen=True)
class HealthItem:
    """A service or a dependency: its verdict and what backs it, one short line each."""

    name: str
    kind: str  # "service" | "dependency"
    verdict: str
    lines: tuple[str, ...] = ()


@dataclass(frozen=True)
class HealthReport:
    environment: str
    items: tuple[HealthItem, ...]  # worst first
    notes: tuple[str, ...] = ()  # figures that are unavailable, and why

    @property
    def verdict(self) -> str:
        return worst(i.verdict for i in self.items)


@dataclass(frozen=True)
class DigestService:
    name: str
    verdict: str
    live: str | None
    version: str | None
    ready: int
    desired: int
    figures: tuple[Figure, ...]


@dataclass(frozen=True)
class DigestReport:
    """The guide's daily checklist as one message: verdict first, then one line per service."""

    title: str
    services: tuple[DigestService, ...]  # worst first
    dependencies: tuple[HealthItem, ...]
    alerts: Figure
    window: str
    unavailable: tuple[str, ...] = ()  # "error rate, p95 …: Prometheus unreachable (…)"
    late: str | None = None  # "posted late: the 09:00 slot was missed while the bot was down"
    business: tuple[Figure, ...] = ()  # platform totals over a day against the day before ("info")
    extra: tuple[Figure, ...] = ()  # lines other commands add (handlers/digest_lines.py)

    @property
    def verdict(self) -> str:
        return worst(
            [s.verdict for s in self.services]
            + [d.verdict for d in self.dependencies]
            + [self.alerts.verdict]
            + [f.verdict for f in self.extra]
        )


@dataclass(frozen=True)
class PeriodService:
    """One service in the weekly or monthly review: its figures, each against the period before
    or the SLO."""

    name: str
    verdict: str
    figures: tuple[Figure, ...]


@dataclass(frozen=True)
class PeriodDigest:
    """The weekly review (this week against last week, capacity) or the monthly one (availability
    against the SLO, the error budget, changes and incidents): verdict first, then platform
    lines, then one line per service."""

    title: str
    kind: str  # weekly | monthly
    period: str  # "7d", "30d"
    services: tuple[PeriodService, ...]  # worst first
    summary: tuple[Figure, ...] = ()  # platform lines: changes, incidents, restarts, backups…
    notes: tuple[str, ...] = ()  # where a figure comes from when that is not obvious
    unavailable: tuple[str, ...] = ()
    late: str | None = None

    @property
    def verdict(self) -> str:
        return worst([s.verdict for s in self.services] + [f.verdict for f in self.summary])


@dataclass(frozen=True)
class ErrorDigest:
    """The hourly error-rate summary: one figure per service, breaches first."""

    title: str
    window: str
    rows: tuple[tuple[str, Figure], ...]
    unavailable: tuple[str, ...] = ()
    late: str | None = None

    @property
    def verdict(self) -> str:
        return worst(f.verdict for _, f in self.rows)


@dataclass(frozen=True)
class ScheduleInfo:
    name: str
    kind: str
    cron: str
    timezone: str
    channel: str
    next_at: datetime | None


@dataclass(frozen=True)
class DigestSchedules:
    schedules: tuple[ScheduleInfo, ...]
    running: bool  # False: this bot posts no scheduled digests (no Prometheus configured)


# --- logs and alerts ----------------------------------------------------------------------


@dataclass(frozen=True)
class LogExcerpt:
    """Log lines of a service's live color, merged across pods in time order, already redacted."""

    service: str
    color: Color
    pods: int
    lines: tuple[str, ...]
    errors_only: bool = False
    since_seconds: int | None = None
    redacted: int = 0  # lines in which something was redacted
    problems: tuple[str, ...] = ()  # pods whose log could not be read, and why
    private: bool = False  # shown only to the asker: logs can hold customer data

    @property
    def headline(self) -> str:
        what = "ERROR lines" if self.errors_only else "log lines"
        since = f" from the last {_duration(self.since_seconds)}" if self.since_seconds else ""
        pods = f"{self.pods} pod{'s' * (self.pods != 1)}"
        return f"{self.service} ({self.color}): {len(self.lines)} {what}{since}, {pods}"


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class AlertLine:
    """One alert of an Alertmanager group, as the channel sees it."""

    name: str
    status: str  # firing | resolved
    summary: str
    starts_at: datetime | None = None
    ends_at: datetime | None = None  # set once resolved
    instance: str = ""  # what distinguishes it from the other alerts of the group


@dataclass(frozen=True)
class AlertGroupCard:
    """The one message of an Alertmanager group, updated in place as its alerts fire and resolve."""

    title: str
    status: str  # firing | resolved: firing while any alert of the group fires
    alerts: tuple[AlertLine, ...]
    service: str | None = None
    severity: str | None = None
    labels: tuple[tuple[str, str], ...] = ()  # labels all its alerts share, beyond the headline's
    source: str | None = None  # Alertmanager's external URL
    silenced_by: str | None = None
    silenced_until: datetime | None = None
    truncated: int = 0  # alerts Alertmanager left out of the notification
    buttons: tuple[Button, ...] = ()
    counts: tuple[int, int] | None = None  # (firing, resolved) of the whole group, when more than shown


@dataclass(frozen=True)
class AlertChanges:
    """A thread reply under the group's message: what fired and what resolved since the last one."""

    fired: tuple[AlertLine, ...]
    resolved: tuple[AlertLine, ...]


# --- reports: any command's answer from a few typed parts, rendered by one rule -------------------


@dataclass(frozen=True)
class Facts:
    """Labelled values ("Connections: 12 of 100"), one per line; `tone` marks the block."""

    items: tuple[tuple[str, str], ...]
    title: str = ""


@dataclass(frozen=True)
class Table:
    """Rows in columns. Rows whose `attention` is True are problems and are shown first; when the
    table does not fit a message, the others are counted and every row goes out as a file."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    title: str = ""
    empty: str = "nothing to show"
    attention: tuple[bool, ...] = ()  # per row; empty: none needs attention
    noun: str = "rows"
    note: str = ""  # said under the table, e.g. "the 10 largest of 412 tables"

    def __post_init__(self) -> None:
        """A wrong shape is the handler's mistake: it fails in the handler (answered and audited
        as an internal error), not in the renderer once the audit says the command succeeded."""
        if self.attention and len(self.attention) != len(self.rows):
            raise ValueError(f"{len(self.attention)} attention flags for {len(self.rows)} rows")
        ragged = [n for n, row in enumerate(self.rows) if len(row) != len(self.columns)]
        if ragged:
            raise ValueError(
                f"row {ragged[0]} has {len(self.rows[ragged[0]])} cells for {len(self.columns)} columns"
            )


@dataclass(frozen=True)
class Text:
    """A paragraph of mrkdwn (already escaped where it holds outside text)."""

    text: str
    tone: Tone | None = None


Part = Facts | Table | Text


@dataclass(frozen=True)
class Report:
    """A command's answer made of parts: what new commands return, so that adding one touches
    only its own module. `filename` names the file a table too long for Slack goes out in."""

    title: str
    parts: tuple[Part, ...]
    tone: Tone = Tone.INFO
    footer: str = ""
    buttons: tuple[Button, ...] = ()
    filename: str = "report.txt"

    def __post_init__(self) -> None:
        if sum(isinstance(p, Table) for p in self.parts) > 1:
            raise ValueError("a report holds at most one table (the one that may go out as a file)")


# Every view bot/chat/blocks/ has a rendering for (tests/test_views.py holds the two lists equal):
# what handlers answer with and what the Notifier posts.
View = (
    Notice
    | StatusReport
    | Scaled
    | AuditPage
    | HelpPage
    | ChangeCard
    | ChangeList
    | MetricsReport
    | QueryTable
    | HealthReport
    | DigestReport
    | PeriodDigest
    | ErrorDigest
    | DigestSchedules
    | LogExcerpt
    | AlertGroupCard
    | AlertChanges
    | Report
)
