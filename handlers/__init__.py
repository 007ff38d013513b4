"""Command logic, one module per command family, in domain terms only."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bot.commands import Audit, Command, Help, Scale, Status
from bot.roles import Role
from bot.views import Reply
from handlers.audit import show_audit
from handlers.base import Context, Deps
from handlers.help import show_help
from handlers.scale import scale
from handlers.status import show_status

Handler = Callable[[Any, Context], Awaitable[Reply]]


@dataclass(frozen=True)
class ActionSpec:
    """A button: who may press it, and what pressing it does (`value` is the button's value)."""

    role: Role
    handler: Callable[[str, Context], Awaitable[Reply]]


# Buttons, by action name (rendered as action_id "payflow:<name>").
ACTIONS: dict[str, ActionSpec] = {}

# Long-running services started with the runtime where jobs run: resuming changes, schedules.
SERVICES: list[Callable[[Deps], Awaitable[None]]] = []

HANDLERS: dict[type, Handler] = {
    Help: show_help,
    Status: show_status,
    Scale: scale,
    Audit: show_audit,
}


def handler_for(command: Command) -> Handler:
    return HANDLERS[type(command)]
