"""Handlers speak to people through this: views in, Slack messages out. It is the seam that
keeps Block Kit and the Web API out of the command logic."""

from __future__ import annotations

from bot.blocks import render
from bot.slack import MessageRef, SlackGateway
from bot.views import View


class Notifier:
    def __init__(self, slack: SlackGateway):
        self.slack = slack

    async def post(self, channel: str, view: View, thread: MessageRef | None = None) -> MessageRef:
        return await self.slack.post(channel, render(view), thread_ts=thread.ts if thread else None)

    async def update(self, ref: MessageRef, view: View) -> None:
        await self.slack.update(ref, render(view))

    async def tell(self, channel: str, user: str, view: View) -> None:
        """Only `user` sees it."""
        await self.slack.ephemeral(channel, user, render(view))

    async def permalink(self, ref: MessageRef) -> str | None:
        return await self.slack.permalink(ref)

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
        return await self.slack.upload(
            channel, filename, content, title=title, comment=comment, thread_ts=thread.ts if thread else None
        )
