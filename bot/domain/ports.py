"""What the domain needs from the chat edge, said as a Protocol so that the domain and the
handlers never import the edge: views in, message references out. `bot/chat/notifier.py`
implements it on Slack's Web API."""

from __future__ import annotations

from typing import Protocol

from bot.base.messages import MessageRef
from bot.domain.views import View


class Notifier(Protocol):
    async def post(self, channel: str, view: View, thread: MessageRef | None = None) -> MessageRef: ...

    async def update(self, ref: MessageRef, view: View) -> None: ...

    async def tell(self, channel: str, user: str, view: View) -> None:
        """Only `user` sees it."""

    async def permalink(self, ref: MessageRef) -> str | None: ...

    async def upload(
        self,
        channel: str,
        filename: str,
        content: bytes | str,
        *,
        title: str | None = None,
        comment: str | None = None,
        thread: MessageRef | None = None,
    ) -> str:
        """A file in the channel (or thread): charts, long log excerpts. Text is redacted."""
