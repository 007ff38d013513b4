"""Command logic, one module per command family, in domain terms only."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bot.commands import Audit, Command, Help, Scale, Status
from bot.views import Reply
from handlers.audit import show_audit
from handlers.base import Context
from handlers.help import show_help
from handlers.scale import scale
from handlers.status import show_status

Handler = Callable[[Any, Context], Awaitable[Reply]]

HANDLERS: dict[type, Handler] = {
    Help: show_help,
    Status: show_status,
    Scale: scale,
    Audit: show_audit,
}


def handler_for(command: Command) -> Handler:
    return HANDLERS[type(command)]
