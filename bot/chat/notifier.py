"""Handlers speak to people through this: views in, Slack messages out. It is the seam that
keeps Block Kit and the Web API out of the command logic."""

from __future__ import annotations

import logging

from bot.base.messages import MessageRef
from bot.chat.blocks import Message, render
from bot.domain.views import View
from bot.gateways.slack import SlackError, SlackGateway

log = logging.getLogger(__name__)


async def post_with_files(
    slack: SlackGateway, channel: str, message: Message, thread_ts: str | None = None
) -> MessageRef:
    """Post a message, then its files (a long view's full table) in its thread. A file Slack
    refuses is said in the thread: the message already counts every row, so nothing is lost."""
    ref = await slack.post(channel, message, thread_ts=thread_ts)
    for f in message.files:
        try:
            await slack.upload(
                ref.channel, f.filename, f.content, title=f.title, thread_ts=thread_ts or ref.ts
            )
        except SlackError as exc:
            log.warning("could not attach %s: %s", f.filename, exc)
            note = Message(
                f"⚠️ The full table ({f.filename}) could not be attached (Slack: {exc.code}); "
                "invite the bot to this channel to get it."
            )
            await slack.post(ref.channel, note, thread_ts=thread_ts or ref.ts)
    return ref


class SlackNotifier:
    """bot.domain.ports.Notifier on Slack's Web API: views are rendered here, at the edge."""

    def __init__(self, slack: SlackGateway):
        self.slack = slack

    async def post(self, channel: str, view: View, thread: MessageRef | None = None) -> MessageRef:
        return await post_with_files(self.slack, channel, render(view), thread.ts if thread else None)

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
