"""The HTTP face of the bot: Slack events, health, readiness and metrics, served by uvicorn."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, Protocol
from urllib.parse import parse_qsl

import uvicorn
from slack_bolt.request.async_request import AsyncBoltRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bot.chat.app import SignatureCheck, payload_problem
from bot.shell.alert_webhook import alertmanager_route
from bot.shell.runtime import Runtime

log = logging.getLogger(__name__)

SLACK_PATH = "/slack/events"
READY_TIMEOUT = 2.0


MAX_BODY = 1_000_000  # Slack's payloads are a few KB; refuse anything absurd before parsing it
MAX_HEAD = 64 * 1024  # request line and headers; Slack's are well under 4 KB
MAX_FIELDS = 100  # a slash command has about 15 form fields, an interaction one
MAX_DEPTH = 32  # a block_actions payload nests about 10 deep; deeper is not from Slack
FORM = "application/x-www-form-urlencoded"


class BadRequest(Exception):
    """A request refused with `status`; `reason` is fixed text, safe to log and to answer."""

    def __init__(self, status: int, reason: str, size: int | None = None):
        super().__init__(reason)
        self.status, self.reason, self.size = status, reason, size


class ClientGone(Exception):
    """The client closed the connection before sending the whole body: nobody to answer."""


async def _read_body(receive: Receive, headers: dict[str, list[str]], body: bytearray) -> None:
    """Into `body`, refusing (413) as soon as it is larger than anything Slack sends."""
    declared = _one(headers, "content-length") or ""
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise BadRequest(413, f"larger than {MAX_BODY} bytes", int(declared))
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        body += message.get("body", b"")
        if len(body) > MAX_BODY:
            raise BadRequest(413, f"larger than {MAX_BODY} bytes")
        if not message.get("more_body"):
            return


def _too_deep(value: object, limit: int = MAX_DEPTH) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return False


def parse_slack_body(body: bytes, content_type: str | None) -> dict[str, Any]:
    """What Slack sends to a slash command or interactivity URL: a strict form, its `payload`
    field (interactions) as a JSON object. Any deviation is the sender's error: `BadRequest`."""
    if (content_type or "").partition(";")[0].strip().lower() != FORM:
        raise BadRequest(415, f"Content-Type must be {FORM}, as Slack sends it")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=True,
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except ValueError:  # includes UnicodeDecodeError
        raise BadRequest(400, "the body is not a well-formed UTF-8 form") from None
    form = dict(pairs)
    if len(form) != len(pairs):
        raise BadRequest(400, "a form field is given more than once")
    if "payload" not in form:
        return form
    try:
        payload = json.loads(form["payload"])
    except (ValueError, RecursionError):
        raise BadRequest(400, "the payload field is not valid JSON") from None
    if not isinstance(payload, dict):
        raise BadRequest(400, "the payload field is not a JSON object")
    if _too_deep(payload):
        raise BadRequest(400, f"the payload nests deeper than {MAX_DEPTH} levels")
    return payload


class BoundedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol (the fast one) with a bound on the request head: httptools
    itself buffers a request line or header of any size (a 20 MB header was read whole). Past
    MAX_HEAD bytes without the end of the headers: 431, one log line, connection closed. (A head
    that ends within the read that crosses the bound passes: memory stays bounded by one read.)"""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._in_head, self._head = True, 0

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head += len(data)
        super().data_received(data)
        if self._in_head and self._head > MAX_HEAD and not self.transport.is_closing():
            remote = self.client[0] if self.client else "?"
            log.warning("refused a request from %s: headers larger than %d bytes", remote, MAX_HEAD)
            reason = f"request headers larger than {MAX_HEAD} bytes".encode()
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"connection: close\r\ncontent-length: " + str(len(reason)).encode() + b"\r\n\r\n" + reason
            )
            self.transport.close()

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head, self._head = True, 0
        super().on_message_complete()


class RefusalLog:
    """One line per refused request, up to `burst` at once and `per_second` after that: a flood
    of forged requests must not become a flood of log lines. The next line that is written says
    how many were left out."""

    def __init__(self, *, burst: int = 100, per_second: float = 20.0):
        self.burst, self.per_second = burst, per_second
        self._tokens, self._at, self.dropped = float(burst), time.monotonic(), 0

    def log(self, remote: str, reason: str, size: int) -> None:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.per_second)
        self._at = now
        if self._tokens < 1:
            self.dropped += 1
            return
        self._tokens -= 1
        more = f"; {self.dropped} more refused requests were not logged" if self.dropped else ""
        self.dropped = 0
        log.warning("refused a Slack request from %s: %s (%d bytes)%s", remote, reason, size, more)


class SlackEndpoint:
    """`POST /slack/events` as a lean ASGI endpoint in front of the rest of the web app.

    Every request is verified here, before its body is parsed: this endpoint cannot be built
    without a `SignatureCheck`, and only HTTP mode builds it (Socket Mode serves no Slack route).
    A refused request costs one log line (reason, size, remote address), never its body; so does a
    signed one that is not a well-formed slash command or click of this app (the same check as
    the Bolt middleware that guards Socket Mode). Bolt
    gets the verified, parsed payload and dispatches; queued jobs start only after the response
    has been handed to the server (`Jobs.after_response`), and the time to the ack is recorded.
    Skipping the framework's request/response objects on this hot path keeps acks in single-digit ms.
    """

    def __init__(self, app: ASGIApp, runtime: Runtime, signature: SignatureCheck):
        self.app = app
        self.runtime = runtime
        self.signature = signature
        self.refusals = RefusalLog()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != SLACK_PATH:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers: dict[str, list[str]] = {}
        for key, value in scope["headers"]:
            headers.setdefault(key.decode("latin-1").lower(), []).append(value.decode("latin-1"))
        remote = (scope.get("client") or ("?",))[0]
        body = bytearray()
        try:
            if scope["method"] != "POST":
                raise BadRequest(405, "only POST")
            await _read_body(receive, headers, body)
            rejection = self.signature.rejection(
                _one(headers, "x-slack-request-timestamp"), _one(headers, "x-slack-signature"), bytes(body)
            )
            if rejection is not None:
                raise BadRequest(rejection.status, rejection.reason)
            payload = parse_slack_body(bytes(body), _one(headers, "content-type"))
            problem = payload_problem(payload, self.runtime.settings.command)
            if problem is not None:
                raise BadRequest(400, problem)
            request = self._bolt_request(payload, headers)
        except ClientGone:
            return
        except BadRequest as exc:
            size = exc.size if exc.size is not None else len(body)
            self.refusals.log(remote, exc.reason, size)
            await _reply(send, exc.status, exc.reason, {"allow": "POST"} if exc.status == 405 else None)
            return
        with self.runtime.jobs.after_response():
            response = await self.runtime.bolt.async_dispatch(request)
            await _reply(send, response.status, response.body, response.first_headers_without_set_cookie())
        self.runtime.telemetry.ack_seconds.observe(time.perf_counter() - started)

    @staticmethod
    def _bolt_request(payload: dict[str, Any], headers: dict[str, list[str]]) -> AsyncBoltRequest:
        """Bolt reads fields as it builds its context; a field of the wrong type fails there.
        `mode="socket_mode"` is how Bolt takes a parsed body: the signature was checked above."""
        try:
            return AsyncBoltRequest(
                body=payload, headers=dict(headers), mode="socket_mode"
            )  # dict(): invariance
        except Exception:
            raise BadRequest(400, "a payload field has the wrong type") from None


def _one(headers: dict[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    return values[0] if values else None


async def _reply(send: Send, status: int, body: str, headers: dict[str, str] | None = None) -> None:
    data = body.encode()
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    if not any(k == b"content-type" for k, _ in raw):
        raw.append((b"content-type", b"text/plain; charset=utf-8"))
    raw = [(k, v) for k, v in raw if k != b"content-length"] + [(b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


async def _check(name: str, probe: Awaitable[object]) -> tuple[str, str]:
    try:
        await asyncio.wait_for(probe, READY_TIMEOUT)
        return name, "ok"
    except Exception as exc:
        return name, f"unavailable: {type(exc).__name__}: {exc}"[:200]


class SocketLink(Protocol):
    """The Socket Mode connection, when `serve` runs in Socket Mode (bot/chat/socket_mode.py)."""

    async def state(self) -> str: ...

    async def close(self) -> None: ...


def build_web(runtime: Runtime, *, socket_mode: bool = False, socket: SocketLink | None = None) -> ASGIApp:
    """HTTP mode: the Slack events route, always verified, in front of the rest. Socket Mode:
    health, readiness, metrics and the Alertmanager webhook only; /slack/events is a 404.
    `socket`: the Socket Mode connection, part of readiness and closed first on shutdown."""
    socket_mode = socket_mode or socket is not None

    async def healthz(request: Request) -> Response:
        """Liveness: fails only when the worker cannot be kept up (restarting the pod may help)."""
        jobs = runtime.jobs.health()
        return PlainTextResponse("ok" if jobs == "ok" else jobs, status_code=200 if jobs == "ok" else 503)

    async def dependencies() -> dict[str, str]:
        """Redis and Kubernetes, probed with a deadline. Reported, never part of readiness: a Redis
        blip must not take every replica out of the Service at once (Slack would then show users
        `dispatch_failed` instead of the bot's own "store unreachable, nothing done")."""
        checks = dict(
            await asyncio.gather(
                _check("redis" if runtime.settings.redis_url else "store", runtime.store.ping()),
                _check("kubernetes", runtime.kube.ping()),
            )
        )
        for name, state in checks.items():
            runtime.telemetry.dependency_up.labels(name).set(1 if state == "ok" else 0)
        return checks

    async def readyz(request: Request) -> Response:
        """Ready = can answer Slack: this web process is up (it answers), the worker is up, and in
        Socket Mode the websocket is open."""
        checks = {"jobs": runtime.jobs.health()}
        if socket is not None:
            checks["socket"] = await socket.state()
        ready = all(v == "ok" for v in checks.values())
        body = {"ready": ready, **await dependencies(), **checks}
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics(request: Request) -> Response:
        await dependencies()
        return Response(runtime.telemetry.exposition(), media_type="text/plain; version=0.0.4")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if runtime.runs_jobs_here:
            await runtime.start()
        yield
        if socket is not None:
            await socket.close()  # no new events first, then the work in flight
        log.info("shutting down: waiting for work in flight")
        await runtime.close()

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            alertmanager_route(runtime),
        ],
        lifespan=lifespan,
    )
    if socket_mode:
        return app
    return SlackEndpoint(app, runtime, SignatureCheck(runtime.settings.slack_signing_secret))


def uvicorn_server(
    runtime: Runtime,
    host: str,
    port: int,
    *,
    socket_mode: bool = False,
    socket: SocketLink | None = None,
) -> uvicorn.Server:
    """`log_config=None`: uvicorn's records go through the process's one log setup (bot/base/logs.py)."""
    config = uvicorn.Config(
        build_web(runtime, socket_mode=socket_mode, socket=socket),
        host=host,
        port=port,
        log_level="warning",
        log_config=None,
        access_log=False,
        lifespan="on",
        http=BoundedHttpTools,
        ws="none",  # no websocket route: nothing to import for one (Socket Mode is a client)
    )
    return uvicorn.Server(config)
