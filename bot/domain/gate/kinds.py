"""Every kind of approval-gated change, by the name its records carry. Importing this module
registers each kind's words (record.WORDINGS) as well, so whatever renders a change can name it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from bot.domain.gate import bluegreen, user_unlock
from bot.domain.gate.messages import Gateways
from bot.domain.gate.record import Change, Check


class Kind(Protocol):
    """What a kind of change does in each phase (a module such as bot/domain/gate/bluegreen.py)."""

    async def prepare(
        self, deps: Gateways, change: Change, step: Callable[..., Awaitable[None]]
    ) -> tuple[str, ...]: ...
    async def recheck(self, deps: Gateways, change: Change) -> str | None: ...
    async def apply(self, deps: Gateways, change: Change) -> str: ...
    async def applied(self, deps: Gateways, change: Change) -> bool: ...
    def schedule(self, deps: Gateways, change: Change) -> tuple[float, float]: ...
    async def check(self, deps: Gateways, change: Change) -> Check: ...
    async def clean_up(self, deps: Gateways, change: Change) -> str: ...
    async def revert(self, deps: Gateways, change: Change, requester: str, reason: str) -> Change: ...


KINDS: dict[str, Kind] = {  # a module is a Kind
    "deploy": bluegreen,
    "rollback": bluegreen,
    "user_unlock": user_unlock,
}
