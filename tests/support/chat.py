"""Drive the bot as Slack users would: signed slash commands over HTTP, then read what the bot
sent to the Slack stand-in and what it wrote to the cluster and the store."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from bot.gateways.store import AuditEntry
from sandbox import demo
from sandbox.slack_api import SlackApiStub
from sandbox.slack_requests import SlackRequests
from tests.support.bot_server import BotServer

OPS = (demo.OPS_CHANNEL_ID, demo.OPS_CHANNEL_NAME)


@dataclass
class Answer:
    """One command's visible results: the ack, ephemeral replies and channel posts."""

    ack: httpx.Response
    replies: list[dict[str, Any]]
    posts: list[dict[str, Any]]

    @property
    def ack_text(self) -> str:
        if not self.ack.content:
            return ""
        body = json.loads(self.ack.content)
        return body.get("text", "")

    @property
    def texts(self) -> list[str]:
        return [
            self.ack_text,
            *(r.get("text", "") for r in self.replies),
            *(p.get("text", "") for p in self.posts),
        ]

    def all_text(self) -> str:
        """Every text and block string the user could see, for content assertions."""
        return json.dumps([self.ack_text, self.replies, self.posts], ensure_ascii=False)


class Chat:
    def __init__(self, bot: BotServer, slack: SlackApiStub, requests: SlackRequests):
        self.bot = bot
        self.slack = slack
        self.requests = requests

    def send(
        self,
        text: str,
        *,
        user: str = "alice",
        channel: tuple[str, str] = OPS,
        timestamp: int | None = None,
        secret: SlackRequests | None = None,
    ) -> httpx.Response:
        who = demo.user(user)
        user_id, user_name = (who.id, who.name) if who else (user, user.lower())
        signed = (secret or self.requests).slash(
            text,
            user_id=user_id,
            user_name=user_name,
            channel_id=channel[0],
            channel_name=channel[1],
            timestamp=timestamp,
        )
        return self.bot.post(signed)

    def run(self, text: str, **kwargs: Any) -> Answer:
        calls_before = len(self.slack.calls_to("chat.postMessage"))
        replies_before = len(self.slack.responses)
        ack = self.send(text, **kwargs)
        assert ack.status_code == 200, ack.text
        self.bot.idle()
        replies = [c.params for c in self.slack.responses[replies_before:]]
        posts = [c.params for c in self.slack.calls_to("chat.postMessage")[calls_before:]]
        return Answer(ack, replies, posts)

    def audit(self, limit: int = 50) -> list[AuditEntry]:
        return self.bot.call(self.bot.runtime.store.audit(limit=limit))

    def messages(self, channel: str) -> list[Any]:
        """Current state of the messages in a channel (ID or #name), oldest first."""
        return self.slack.messages(channel)

    def click(self, message: Any, label: str, *, user: str = "bob", wait: bool = True) -> httpx.Response:
        """Press the button labelled `label` on a posted message, as `user`, signed like Slack."""
        for block in message.blocks or []:
            for el in block.get("elements", []) if block.get("type") == "actions" else []:
                if el.get("text", {}).get("text") == label:
                    who = demo.user(user)
                    user_id, user_name = (who.id, who.name) if who else (user, user.lower())
                    signed = self.requests.button(
                        user_id=user_id,
                        user_name=user_name,
                        channel_id=message.channel,
                        channel_name="payflow-approvals",
                        message={"ts": message.ts, "text": message.text, "blocks": message.blocks},
                        action=el,
                        block_id=block.get("block_id", ""),
                    )
                    response = self.bot.post(signed)
                    if wait:
                        self.bot.idle()
                    return response
        raise AssertionError(f"no button {label!r} on the message: {message.text}")
