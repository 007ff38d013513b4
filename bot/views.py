"""What handlers return: results in domain terms. `bot/blocks.py` turns them into Slack messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from bot.config import Color
from bot.store import AuditEntry


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


View = Notice | StatusReport | Scaled | AuditPage | HelpPage


@dataclass(frozen=True)
class Reply:
    """A view and who sees it: the requester only, or the whole channel."""

    view: View | None  # None: the handler has said all there is to say
    public: bool = False
    detail: str = ""  # what the audit entry says beyond the outcome
    target: str | None = None  # the service, when the command did not name it
    audited: bool = False  # the handler wrote its own audit entries
