"""Slack Web API gateway: post, update in place, answer a slash command, read user groups.

Every outgoing message is redacted here, whatever produced it. Rate limits (429) are retried
after Retry-After by slack_sdk; nothing else is retried, so a message is never posted twice.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.blocks import Message
from bot.messages import MessageRef
from bot.redact import redact, redact_file, redact_payload

log = logging.getLogger(__name__)

SLACK_API_URL = "https://slack.com/api/"


class SlackError(Exception):
    """Slack refused a call; `code` is Slack's error string, e.g. not_in_channel. `str()` is fit to
    show a user: what Slack said, or what to do about it when we know."""

    def __init__(self, method: str, code: str, explanation: str | None = None):
        super().__init__(explanation or f"Slack {method} failed: {code}")
        self.method = method
        self.code = code


# Files are shared only where the bot is a member: `chat:write.public` lets it post messages in
# public channels it has not joined, but not files (charts, long log excerpts).
NOT_A_MEMBER = (
    "Slack shares files only in channels the bot is a member of (chat:write.public covers "
    "messages, not files): invite it with `/invite @payflow-bot` and ask again"
)
UPLOAD_ERRORS = {"not_in_channel": NOT_A_MEMBER, "channel_not_found": NOT_A_MEMBER}


def make_client(token: str | None, base_url: str | None = None, timeout: int = 10) -> AsyncWebClient:
    base = base_url or SLACK_API_URL
    client = AsyncWebClient(token=token, base_url=base if base.endswith("/") else base + "/", timeout=timeout)
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=2))
    return client


def outgoing(message: Message) -> dict:
    """A message as it may leave for Slack: every string in it (text, blocks, button values, URLs)
    through the one redaction point. Posts, updates, ephemeral replies, response_url answers and
    the slash command's ack (bot/app.py) all take this; uploads take `redact_file`."""
    payload: dict = {"text": message.text}
    if message.blocks:
        payload["blocks"] = message.blocks
    return cast(dict, redact_payload(payload))


_payload = outgoing  # the name the delivery code below uses


class SlackGateway:
    def __init__(self, client: AsyncWebClient):
        self.client = client

    async def _call(self, method: str, **kwargs: object) -> dict:
        try:
            resp = await self.client.api_call(method, json=kwargs)
        except SlackApiError as exc:
            raise SlackError(method, str(exc.response.get("error", "unknown_error"))) from None
        return dict(resp.data) if isinstance(resp.data, dict) else {}

    async def post(self, channel: str, message: Message, thread_ts: str | None = None) -> MessageRef:
        extra = {"thread_ts": thread_ts} if thread_ts else {}
        data = await self._call("chat.postMessage", channel=channel, **_payload(message), **extra)
        return MessageRef(str(data["channel"]), str(data["ts"]))

    async def update(self, ref: MessageRef, message: Message) -> None:
        await self._call("chat.update", channel=ref.channel, ts=ref.ts, **_payload(message))

    async def ephemeral(self, channel: str, user: str, message: Message) -> None:
        await self._call("chat.postEphemeral", channel=channel, user=user, **_payload(message))

    async def permalink(self, ref: MessageRef) -> str | None:
        try:
            resp = await self.client.chat_getPermalink(channel=ref.channel, message_ts=ref.ts)
        except SlackApiError:
            return None
        return resp.get("permalink")

    async def respond(
        self, response_url: str, message: Message, *, public: bool = False, replace: bool = False
    ) -> None:
        """Answer a slash command through its response_url: works even where the bot is not a member.
        `replace`: the answer takes the place of the clicked message (its buttons go with it)."""
        body = {"response_type": "in_channel" if public else "ephemeral", **_payload(message)}
        if replace:
            body["replace_original"] = True
        await self._send_response(response_url, body)

    async def respond_delete(self, response_url: str) -> None:
        """Remove the clicked message (a private prompt whose answer went elsewhere)."""
        await self._send_response(response_url, {"delete_original": True})

    async def _send_response(self, response_url: str, body: dict[str, Any]) -> None:
        resp = await AsyncWebhookClient(response_url, timeout=10).send_dict(body)
        if resp.status_code != 200:
            raise SlackError("response_url", f"HTTP {resp.status_code}")

    async def upload(
        self,
        channel: str,
        filename: str,
        content: bytes | str,
        *,
        title: str | None = None,
        comment: str | None = None,
        thread_ts: str | None = None,
    ) -> str:
        """Share a file (a chart, a long log excerpt) through Slack's three-step upload; text in
        any encoding is redacted like messages, binary content (a PNG) goes byte for byte.
        Returns the file ID."""
        content = redact_file(content)
        filename, title = redact(filename), redact(title) if title else None
        extra = {"thread_ts": thread_ts} if thread_ts else {}
        try:
            resp = await self.client.files_upload_v2(
                channel=channel,
                filename=filename,
                content=content,
                title=title or filename,
                initial_comment=redact(comment) if comment else None,
                **extra,
            )
        except SlackApiError as exc:
            code = str(exc.response.get("error", "unknown_error"))
            raise SlackError("files.upload", code, UPLOAD_ERRORS.get(code)) from None
        files = resp.get("files") or [resp.get("file") or {}]
        return str(files[0].get("id", ""))

    async def group_members(self, group_id: str) -> frozenset[str]:
        try:
            resp = await self.client.usergroups_users_list(usergroup=group_id)
        except SlackApiError as exc:
            raise SlackError("usergroups.users.list", str(exc.response.get("error"))) from None
        return frozenset(resp.get("users", []))
