"""What Slack sends to the bot: slash commands and button clicks, shaped and signed exactly as
Slack does (HMAC-SHA256 of `v0:{timestamp}:{body}` with the signing secret). Used by the
console, the tests and the benchmarks, so all three exercise the real verification path."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

TEAM_ID = "T0PAYFLOW"
APP_ID = "A0PAYFLOW"


@dataclass(frozen=True)
class SignedRequest:
    body: str
    headers: dict[str, str]


class SlackRequests:
    def __init__(self, signing_secret: str, response_url: str | None = None):
        self._verifier = SignatureVerifier(signing_secret)
        self.response_url = response_url

    def sign(
        self, body: str, *, timestamp: int | None = None, content_type: str | None = None
    ) -> SignedRequest:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        return SignedRequest(
            body,
            {
                "content-type": content_type or "application/x-www-form-urlencoded",
                "x-slack-request-timestamp": ts,
                "x-slack-signature": self._verifier.generate_signature(timestamp=ts, body=body) or "",
            },
        )

    def slash(
        self,
        text: str,
        *,
        user_id: str,
        user_name: str = "someone",
        channel_id: str,
        channel_name: str,
        command: str = "/payflow",
        response_url: str | None = None,
        timestamp: int | None = None,
    ) -> SignedRequest:
        form = {
            "token": "legacy-verification-token-unused",
            "team_id": TEAM_ID,
            "team_domain": "payflow",
            "channel_id": channel_id,
            "channel_name": channel_name,
            "user_id": user_id,
            "user_name": user_name,
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": response_url or self.response_url or "",
            "trigger_id": f"{int(time.time())}.{secrets.randbelow(10**9)}.{secrets.token_hex(8)}",
        }
        return self.sign(urlencode(form), timestamp=timestamp)

    def button(
        self,
        *,
        user_id: str,
        user_name: str = "someone",
        channel_id: str,
        channel_name: str,
        message: dict[str, Any],
        action: dict[str, Any],
        block_id: str,
        response_url: str | None = None,
        timestamp: int | None = None,
        ephemeral: bool = False,
    ) -> SignedRequest:
        """A block_actions click on `action` (a button element as posted) in `message`
        (`ephemeral`: a message only the clicker sees, e.g. a command's private answer)."""
        now = f"{time.time():.6f}"
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": TEAM_ID},
            "api_app_id": APP_ID,
            "token": "legacy-verification-token-unused",
            "container": {
                "type": "message",
                "message_ts": message["ts"],
                "channel_id": channel_id,
                "is_ephemeral": ephemeral,
            },
            "trigger_id": f"{int(time.time())}.{secrets.randbelow(10**9)}.{secrets.token_hex(8)}",
            "team": {"id": TEAM_ID, "domain": "payflow"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel_id, "name": channel_name},
            "message": message,
            "state": {"values": {}},
            "response_url": response_url or self.response_url or "",
            "actions": [
                {
                    "action_id": action["action_id"],
                    "block_id": block_id,
                    "text": action.get("text", {"type": "plain_text", "text": ""}),
                    "value": action.get("value", ""),
                    "style": action.get("style"),
                    "type": action.get("type", "button"),
                    "action_ts": now,
                }
            ],
        }
        return self.sign(urlencode({"payload": json.dumps(payload)}), timestamp=timestamp)
