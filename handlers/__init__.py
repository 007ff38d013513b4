"""Command logic, one module per command family, in domain terms only."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bot.base.roles import Role
from bot.domain.views import Reply
from handlers.alerts import group_metrics, silence_group
from handlers.approvals import approve, keep, reject, roll_back
from handlers.audit import show_audit
from handlers.base import Context, Deps
from handlers.changes import cancel, list_changes
from handlers.commands import (
    Audit,
    Cancel,
    Changes,
    Command,
    Deploy,
    Digest,
    Health,
    Help,
    Lock,
    Logs,
    Metrics,
    Query,
    Restart,
    Rollback,
    Scale,
    Status,
    Unlock,
)
from handlers.deploy import deploy, request_rollback_button, resume_changes, rollback
from handlers.digest import digest, scheduler
from handlers.health import show_health
from handlers.help import show_help
from handlers.locks import lock, unlock
from handlers.logs import show_logs
from handlers.metrics import run_query, show_metrics
from handlers.restart import ask_restart, restart
from handlers.scale import scale
from handlers.status import show_status

Handler = Callable[[Any, Context], Awaitable[Reply]]


@dataclass(frozen=True)
class ActionSpec:
    """A button: who may press it, and what pressing it does (`value` is the button's value)."""

    role: Role
    handler: Callable[[str, Context], Awaitable[Reply]]


# Buttons, by action name (rendered as action_id "payflow:<name>").
ACTIONS: dict[str, ActionSpec] = {
    "approve": ActionSpec(Role.APPROVER, approve),
    "reject": ActionSpec(Role.APPROVER, reject),
    "keep": ActionSpec(Role.APPROVER, keep),  # after an inconclusive bake
    "roll_back": ActionSpec(Role.OPERATOR, roll_back),  # requests a rollback: approval-gated
    "rollback": ActionSpec(Role.OPERATOR, request_rollback_button),
    "restart": ActionSpec(Role.OPERATOR, restart),
    "alert_metrics": ActionSpec(Role.VIEWER, group_metrics),
    "alert_silence": ActionSpec(Role.OPERATOR, silence_group),
}

# Long-running services started with the runtime where jobs run: resuming changes, schedules.
SERVICES: list[Callable[[Deps], Awaitable[None]]] = [resume_changes, scheduler]

HANDLERS: dict[type, Handler] = {
    Help: show_help,
    Status: show_status,
    Scale: scale,
    Audit: show_audit,
    Deploy: deploy,
    Rollback: rollback,
    Cancel: cancel,
    Changes: list_changes,
    Lock: lock,
    Unlock: unlock,
    Restart: ask_restart,
    Logs: show_logs,
    Metrics: show_metrics,
    Query: run_query,
    Health: show_health,
    Digest: digest,
}


def handler_for(command: Command) -> Handler:
    return HANDLERS[type(command)]
