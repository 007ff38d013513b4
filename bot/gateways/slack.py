"""Slack Web API gateway: post, update in place, answer a slash command, read user groups.

Every outgoing message is redacted here, whatever produced it. Deliveries (post, update,
ephemeral, response_url, upload) go through one loop with one explicit deadline per delivery
(`DeliveryPolicy.total_seconds`): 429 is retried after Retry-After, 5xx, timeouts and dropped
connections with backoff, anything else Slack refuses is final at once. slack_sdk's own retry
handlers are switched off: they count attempts rather than time, sleep whatever Retry-After
says past any deadline, and remember nothing across a restart. What a job already delivered is
kept in the outbox (`bot/gateways/outbox.py`), so running the job again never posts twice. Updates of one
message go out one at a time in the order they were asked for, so a retried update can never
land after a newer one.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.base.messages import MessageRef
from bot.base.redact import redact, redact_file, redact_payload
from bot.gateways.outbox import Outbox
from bot.gateways.per_loop import PerLoop


@dataclass(frozen=True)
class Attachment:
    """A file that goes with a message (posted in its thread): the full table of a long view."""

    filename: str
    content: str
    title: str


@dataclass(frozen=True)
class Message:
    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    files: tuple[Attachment, ...] = ()


log = logging.getLogger(__name__)

SLACK_API_URL = "https://slack.com/api/"
T = TypeVar("T")

# Slack answers these with HTTP 200 and ok=false when it is its own fault: worth another try.
_TRANSIENT_CODES = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable"})


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


class DeliveryFailed(SlackError):
    """Slack kept failing (5xx, 429, timeouts) until the delivery's deadline: given up."""


@dataclass(frozen=True)
class DeliveryPolicy:
    total_seconds: float = 60.0  # one deadline per delivery, retries included
    attempt_seconds: float = 10.0  # one HTTP attempt, never more than what is left
    first_backoff: float = 0.25
    max_backoff: float = 8.0


class _Retry(Exception):
    def __init__(self, reason: str, after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.after = after


def make_client(token: str | None, base_url: str | None = None, timeout: int = 10) -> AsyncWebClient:
    base = base_url or SLACK_API_URL
    client = AsyncWebClient(token=token, base_url=base if base.endswith("/") else base + "/", timeout=timeout)
    client.retry_handlers = []  # no hidden retries: the gateway's own loop has the deadline
    return client


def outgoing(message: Message) -> dict[str, Any]:
    """A message as it may leave for Slack: every string in it (text, blocks, button values, URLs)
    through the one redaction point. Posts, updates, ephemeral replies, response_url answers and
    the slash command's ack (bot/chat/app.py) all take this; uploads take `redact_file`."""
    payload: dict[str, Any] = {"text": message.text}
    if message.blocks:
        payload["blocks"] = message.blocks
    return cast(dict[str, Any], redact_payload(payload))


_payload = outgoing  # the name the delivery code below uses


def _retry_after(headers: Mapping[str, Any] | None) -> float | None:
    headers = headers or {}
    for key in headers:
        if str(key).lower() == "retry-after":
            value = headers[key]
            value = value[0] if isinstance(value, list) else value
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                return None
    return None


def _classify(status: int, code: str, headers: Mapping[str, Any] | None, method: str) -> Exception:
    """What one failed answer means: retry (and when), or final."""
    if status == 429 or code == "ratelimited":
        return _Retry("429 rate limited", _retry_after(headers) or 1.0)
    if status >= 500 or (status == 200 and code in _TRANSIENT_CODES):
        return _Retry(f"HTTP {status} {code}".strip())
    code = code or f"HTTP {status}"
    return SlackError(method, code, UPLOAD_ERRORS.get(code) if method == "files.upload" else None)


Event = Callable[[str, str, str], None]  # (event, method, reason): "retry" / "failed"


class SlackGateway:
    def __init__(
        self,
        client: AsyncWebClient,
        *,
        policy: DeliveryPolicy | None = None,
        outbox: Outbox | None = None,
        on_event: Event | None = None,
    ):
        self.client = client
        self.policy = policy or DeliveryPolicy()
        self.outbox = outbox
        self.on_event = on_event or (lambda event, method, reason: None)
        self._message_locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}
        self._sessions = PerLoop(
            lambda: aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=client.timeout))
        )

    def _web(self) -> AsyncWebClient:
        """The client, with one kept-alive session per event loop for every Web API call:
        slack_sdk otherwise opens a session — a new TLS handshake with slack.com — per call."""
        self.client.session = self._sessions.get()
        return self.client

    async def close(self) -> None:
        """Close the Web API session of the running loop (when the process stops)."""
        session = self._sessions.pop()
        if session is not None:
            await session.close()
        self.client.session = None

    # -- the delivery loop ------------------------------------------------------------------

    async def _deliver(self, method: str, destination: str, attempt: Callable[[float], Awaitable[T]]) -> T:
        """`attempt(timeout)` until it succeeds, fails for good, or the deadline passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.policy.total_seconds
        backoff, tries = self.policy.first_backoff, 0
        while True:
            left = deadline - loop.time()
            tries += 1
            try:
                async with asyncio.timeout(min(self.policy.attempt_seconds, left)):
                    return await attempt(min(self.policy.attempt_seconds, left))
            except _Retry as exc:
                reason, wait = exc.reason, exc.after
            except TimeoutError:
                reason, wait = "timed out", None
            except (aiohttp.ClientConnectionError, aiohttp.ServerDisconnectedError, ConnectionError) as exc:
                reason, wait = f"connection: {type(exc).__name__}", None
            if wait is None:
                wait = backoff * (0.5 + random.random() / 2)
                backoff = min(backoff * 2, self.policy.max_backoff)
            left = deadline - loop.time()
            if wait >= left:
                self.on_event("failed", method, reason)
                log.error(
                    "Slack delivery given up: %s to %s after %d attempt(s) in %.0f s: %s",
                    method,
                    redact(destination),
                    tries,
                    self.policy.total_seconds - left,
                    redact(reason),
                )
                raise DeliveryFailed(method, f"gave up after {tries} attempts: {reason}")
            self.on_event("retry", method, reason)
            log.info("Slack %s: %s; retrying in %.2f s", method, reason, wait)
            await asyncio.sleep(wait)

    async def _api(self, method: str, destination: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        async def attempt(timeout: float) -> dict[str, Any]:
            try:
                resp = await self._web().api_call(method, json=kwargs)
            except SlackApiError as exc:
                response = exc.response
                code = str(response.get("error", "")) if isinstance(response.data, dict) else ""
                raise _classify(response.status_code, code, response.headers, method) from None
            return dict(resp.data) if isinstance(resp.data, dict) else {}

        return await self._deliver(method, destination, attempt)

    async def _call(self, method: str, **kwargs: object) -> dict[str, Any]:
        """One Web API call (reads too) under the delivery deadline."""
        return await self._api(method, str(kwargs.get("channel", "")), dict(kwargs))

    async def _once(
        self, method: str, destination: str, send: Callable[[], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        """Deliver at most once per place in a job: a rerun gets the first answer back."""
        key = self.outbox.key(method, destination) if self.outbox else None
        if self.outbox is not None and (done := await self.outbox.delivered(key)) is not None:
            log.info("%s to %s already delivered by an earlier run of this job", method, destination)
            return done
        answer = await send()
        if self.outbox is not None:
            await self.outbox.record(key, answer)
        return answer

    @asynccontextmanager
    async def _in_order(self, ref: MessageRef) -> AsyncIterator[None]:
        """Updates of one message leave one at a time, first asked first sent (asyncio.Lock is FIFO)."""
        key = (ref.channel, ref.ts)
        lock, users = self._message_locks.get(key) or (asyncio.Lock(), 0)
        self._message_locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._message_locks[key]
            if users <= 1:
                del self._message_locks[key]
            else:
                self._message_locks[key] = (lock, users - 1)

    # -- what handlers use ------------------------------------------------------------------

    async def post(self, channel: str, message: Message, thread_ts: str | None = None) -> MessageRef:
        extra = {"thread_ts": thread_ts} if thread_ts else {}
        payload = {"channel": channel, **_payload(message), **extra}
        where = f"{channel}/{thread_ts or ''}"

        async def send() -> dict[str, Any]:
            data = await self._api("chat.postMessage", channel, payload)
            return {"channel": str(data["channel"]), "ts": str(data["ts"])}

        data = await self._once("chat.postMessage", where, send)
        return MessageRef(str(data["channel"]), str(data["ts"]))

    async def update(self, ref: MessageRef, message: Message) -> None:
        payload = {"channel": ref.channel, "ts": ref.ts, **_payload(message)}
        async with self._in_order(ref):
            await self._api("chat.update", ref.channel, payload)

    async def ephemeral(self, channel: str, user: str, message: Message) -> None:
        payload = {"channel": channel, "user": user, **_payload(message)}

        async def send() -> dict[str, Any]:
            await self._api("chat.postEphemeral", channel, payload)
            return {"sent": True}

        await self._once("chat.postEphemeral", f"{channel}/{user}", send)

    async def permalink(self, ref: MessageRef) -> str | None:
        try:
            resp = await self._web().chat_getPermalink(channel=ref.channel, message_ts=ref.ts)
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
        async def attempt(timeout: float) -> dict[str, Any]:
            client = AsyncWebhookClient(response_url, timeout=max(1, int(timeout)), retry_handlers=[])
            resp = await client.send_dict(body)
            if resp.status_code != 200:
                raise _classify(resp.status_code, str(resp.body or "")[:60], resp.headers, "response_url")
            return {"sent": True}

        async def send() -> dict[str, Any]:
            return await self._deliver("response_url", "response_url", attempt)

        await self._once("response_url", response_url, send)

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

        async def attempt(timeout: float) -> dict[str, Any]:
            try:
                resp = await self._web().files_upload_v2(
                    channel=channel,
                    filename=filename,
                    content=content,
                    title=title or filename,
                    initial_comment=redact(comment) if comment else None,
                    thread_ts=thread_ts or None,
                )
            except SlackApiError as exc:
                response = exc.response
                code = str(response.get("error", "")) if isinstance(response.data, dict) else ""
                raise _classify(response.status_code, code, response.headers, "files.upload") from None
            files = resp.get("files") or [resp.get("file") or {}]
            return {"id": str(files[0].get("id", ""))}

        async def send() -> dict[str, Any]:
            return await self._deliver("files.upload", channel, attempt)

        return str((await self._once("files.upload", f"{channel}/{thread_ts or ''}", send))["id"])

    async def group_members(self, group_id: str) -> frozenset[str]:
        try:
            resp = await self._web().usergroups_users_list(usergroup=group_id)
        except SlackApiError as exc:
            raise SlackError("usergroups.users.list", str(exc.response.get("error"))) from None
        return frozenset(resp.get("users", []))
