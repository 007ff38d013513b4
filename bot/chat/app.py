"""The Bolt app: Slack's signature check, the shape of what Slack sends, ack at once, hand on.

Over HTTP, `SignatureCheck` runs before anything reads the body and `payload_problem` before
Bolt sees it (bot/shell/server.py); in Socket Mode, Slack's authenticated socket replaces the signature
and `payload_problem` runs as Bolt middleware. So a listener only ever reads fields of the types it
expects, and bad input is a 400 with a reason, never a traceback.

`process_before_response=True` sends the response as soon as the listener returns, instead of
Bolt's default of polling every 10 ms for the ack; so the listener must only parse and queue.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeGuard
from urllib.parse import urlsplit

from slack_bolt.async_app import AsyncApp
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from bot.base.messages import MessageRef
from bot.chat.blocks import ACTION_PREFIX
from bot.chat.dispatch import Dispatcher, Invocation
from bot.gateways.jobs import Jobs
from bot.gateways.slack import SlackGateway, outgoing

log = logging.getLogger(__name__)


class _TokenFromClient(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN itself and warns that our client's token wins; it is the same
    token, so the warning would only teach on-call people to ignore warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


_bolt_log = logging.getLogger("slack_bolt")
_bolt_log.addFilter(_TokenFromClient())


MAX_AGE_SECONDS = 300  # Slack's advice: refuse signatures older than five minutes (replays)
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
_UNSAFE_URL = re.compile(r"[\x00-\x20\x7f-\U0010ffff]")  # a URL as Slack sends it is printable ASCII


@dataclass(frozen=True)
class Rejection:
    """Why a request is refused: the HTTP status and a reason safe to log and to answer."""

    status: int
    reason: str


class SignatureCheck:
    """Slack's request signing (HMAC-SHA256 of `v0:{timestamp}:{body}`), checked on the raw
    bytes. Unlike slack_sdk's verifier it never raises on a malformed header, and it cannot be
    built without a secret: the HTTP events route takes one of these, so it cannot run unverified.
    """

    def __init__(self, signing_secret: str | None, *, max_age: float = MAX_AGE_SECONDS):
        if not signing_secret or not signing_secret.strip():
            raise ValueError("the Slack events route needs SLACK_SIGNING_SECRET to verify requests")
        self._key = signing_secret.encode()
        self._max_age = max_age

    def rejection(
        self, timestamp: str | None, signature: str | None, body: bytes, now: float | None = None
    ) -> Rejection | None:
        if timestamp is None or signature is None:
            return Rejection(401, "missing X-Slack-Signature or X-Slack-Request-Timestamp")
        if not _TIMESTAMP.fullmatch(timestamp):
            return Rejection(400, "malformed X-Slack-Request-Timestamp (not a Unix time)")
        if abs((time.time() if now is None else now) - int(timestamp)) > self._max_age:
            return Rejection(401, "X-Slack-Request-Timestamp is more than five minutes off (replay?)")
        if not _SIGNATURE.fullmatch(signature):
            return Rejection(401, "malformed X-Slack-Signature")
        expected = hmac.new(self._key, b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
        if not hmac.compare_digest("v0=" + expected.hexdigest(), signature):
            return Rejection(401, "signature does not match")
        return None


def _is_str(value: object, *, required: bool = False) -> bool:
    return isinstance(value, str) and bool(value) if required else value is None or isinstance(value, str)


def _is_url(value: object) -> bool:
    """Absent, empty, or an absolute http(s) URL with a host: Slack's response_url is one."""
    if value is None or value == "":
        return True
    if not isinstance(value, str) or _UNSAFE_URL.search(value):
        return False
    try:
        parts = urlsplit(value)
        return parts.scheme in ("https", "http") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # "https://[::1", a port out of range
        return False


def _is_dict(value: object) -> TypeGuard[dict[str, Any] | None]:
    return value is None or isinstance(value, dict)


def payload_problem(body: object, command: str) -> str | None:
    """Why `body` (a parsed slash command or interaction) is not something this app handles, or
    None. Checks every field the listeners below read, with the type they read it as."""
    if not isinstance(body, dict):
        return "the payload is not a JSON object"
    if "command" in body:
        if body.get("command") != command:
            return f"this app handles only the {command} command"
        if not (
            _is_str(body.get("user_id"), required=True) and _is_str(body.get("channel_id"), required=True)
        ):
            return "a slash command needs user_id and channel_id"
        if not all(_is_str(body.get(k)) for k in ("text", "channel_name")):
            return "text and channel_name must be strings"
        if not _is_url(body.get("response_url")):
            return "response_url is not an http(s) URL"
        return None
    if body.get("type") != "block_actions":
        return "neither a slash command nor a block_actions interaction"
    user, container, channel = body.get("user"), body.get("container"), body.get("channel")
    if not (isinstance(user, dict) and _is_str(user.get("id"), required=True)):
        return "user.id is missing or not a string"
    if not (_is_dict(container) and _is_dict(channel)):
        return "container or channel has the wrong type"
    if not _is_url(body.get("response_url")):
        return "response_url is not an http(s) URL"
    if not all(_is_str((container or {}).get(k)) for k in ("message_ts", "channel_id")):
        return "container.message_ts and container.channel_id must be strings"
    if not all(_is_str((channel or {}).get(k)) for k in ("id", "name")):
        return "channel.id and channel.name must be strings"
    actions = body.get("actions")
    if not (isinstance(actions, list) and actions and all(isinstance(a, dict) for a in actions)):
        return "actions must be a non-empty list of objects"
    action = actions[0]
    if not (_is_str(action.get("action_id"), required=True) and _is_str(action.get("value"))):
        return "actions[0].action_id and value must be strings"
    if not action["action_id"].startswith(ACTION_PREFIX):
        return "not one of this app's buttons"
    return None


class WellFormed(AsyncMiddleware):
    """`payload_problem` as Bolt middleware, for what arrives over the Socket Mode socket (and the
    console's requests). A class,
    not `@app.middleware`: Bolt builds a function middleware's arguments from the payload
    (`body["actions"][0]` …) before the function runs, which is exactly what fails on bad input."""

    def __init__(self, command: str):
        self.command = command

    async def async_process(
        self, *, req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[BoltResponse]]
    ) -> BoltResponse:
        problem = payload_problem(req.body, self.command)
        if problem is None:
            return await next()
        log.warning("refused a Slack payload: %s", problem)
        # over the socket only a 200 is acked, and Slack redelivers what is not: ack, run nothing
        return BoltResponse(status=200 if req.mode == "socket_mode" else 400, body="")


def invocation(command: dict[str, Any]) -> Invocation:
    return Invocation(
        user_id=str(command.get("user_id", "")),
        channel_id=str(command.get("channel_id", "")),
        channel_name=command.get("channel_name"),
        text=str(command.get("text", "")),
        response_url=command.get("response_url"),
    )


def build_bolt(
    dispatcher: Dispatcher,
    jobs: Jobs,
    slack: SlackGateway,
    *,
    signing_secret: str | None,
    command: str = "/payflow",
) -> AsyncApp:
    """There is no switch for request verification: Bolt's own check stays on for anything
    handed to it as an HTTP request, and bot/shell/server.py verifies before it parses (see module doc)."""
    app = AsyncApp(
        name="payflow-bot",  # else Bolt reads the call stack's source files for one (≈0.1 s at start)
        client=slack.client,
        signing_secret=signing_secret or "",
        process_before_response=True,
        request_verification_enabled=True,
        # we take slash commands and interactivity only: no Events API subscriptions to filter
        ignoring_self_events_enabled=False,
        ignoring_self_assistant_message_events_enabled=False,
        url_verification_enabled=False,
        attaching_function_token_enabled=False,
        attaching_conversation_kwargs_enabled=False,
        logger=_bolt_log,
    )

    app.use(WellFormed(command))

    @app.command(command)
    async def on_command(ack: Any, command: dict[str, Any]) -> None:
        accepted = dispatcher.accept(invocation(command))
        if accepted.ack is None:
            await ack()
        else:
            await ack(**outgoing(accepted.ack))  # usage errors echo input: redacted like any message
        if accepted.job is not None:
            jobs.submit(accepted.job)

    @app.action(re.compile(f"^{re.escape(ACTION_PREFIX)}"))
    async def on_click(ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        container = body.get("container") or {}
        channel = body.get("channel") or {}
        inv = Invocation(
            user_id=str((body.get("user") or {}).get("id", "")),
            channel_id=str(channel.get("id") or container.get("channel_id") or ""),
            channel_name=channel.get("name"),
            response_url=body.get("response_url"),
            from_ephemeral=bool(container.get("is_ephemeral")),
        )
        ts = container.get("message_ts")
        message = MessageRef(inv.channel_id, str(ts)) if ts and inv.channel_id else None
        name = str(action.get("action_id", ""))[len(ACTION_PREFIX) :]
        accepted = dispatcher.accept_action(inv, name, str(action.get("value", "")), message)
        if accepted.job is not None:
            jobs.submit(accepted.job)

    @app.error
    async def on_error(error: Exception) -> None:
        log.exception("unhandled error in a Slack listener", exc_info=error)

    return app
