"""The HTTP face of the bot: Slack events, health, readiness and metrics, served by uvicorn."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from slack_bolt.request.async_request import AsyncBoltRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from bot.alert_webhook import alertmanager_route
from bot.runtime import Runtime

log = logging.getLogger(__name__)

SLACK_PATH = "/slack/events"
READY_TIMEOUT = 2.0


MAX_BODY = 1_000_000  # Slack's payloads are a few KB; refuse anything absurd before parsing it


class SlackEndpoint:
    """`POST /slack/events` as a lean ASGI endpoint in front of the rest of the web app.

    Bolt verifies and dispatches; queued jobs start only after the response has been handed to
    the server (`Jobs.after_response`), and the time to the ack is recorded. Skipping the
    framework's request/response objects on this one hot path keeps acks in single-digit ms.
    """

    def __init__(self, app: ASGIApp, runtime: Runtime):
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != SLACK_PATH:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        if scope["method"] != "POST":
            await _reply(send, 405, "Method Not Allowed")
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_BODY:
                await _reply(send, 413, "Payload Too Large")
                return
            if not message.get("more_body"):
                break
        headers: dict[str, list[str]] = {}
        for key, value in scope["headers"]:
            headers.setdefault(key.decode("latin-1").lower(), []).append(value.decode("latin-1"))
        request = AsyncBoltRequest(
            body=body.decode("utf-8", errors="replace"),
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
        )
        with self.runtime.jobs.after_response():
            response = await self.runtime.bolt.async_dispatch(request)
            await _reply(send, response.status, response.body, response.first_headers_without_set_cookie())
        self.runtime.telemetry.ack_seconds.observe(time.perf_counter() - started)


async def _reply(send: Send, status: int, body: str, headers: dict[str, str] | None = None) -> None:
    data = body.encode()
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    if not any(k == b"content-type" for k, _ in raw):
        raw.append((b"content-type", b"text/plain; charset=utf-8"))
    raw = [(k, v) for k, v in raw if k != b"content-length"] + [(b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


async def _check(name: str, probe: Any) -> tuple[str, str]:
    try:
        await asyncio.wait_for(probe, READY_TIMEOUT)
        return name, "ok"
    except Exception as exc:
        return name, f"unavailable: {type(exc).__name__}: {exc}"[:200]


def build_web(runtime: Runtime) -> ASGIApp:
    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        checks = dict(
            await asyncio.gather(
                _check("redis" if runtime.settings.redis_url else "store", runtime.store.ping()),
                _check("kubernetes", runtime.kube.ping()),
            )
        )
        checks["jobs"] = runtime.jobs.health()
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)

    async def metrics(request: Request) -> Response:
        return Response(runtime.telemetry.exposition(), media_type="text/plain; version=0.0.4")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if runtime.runs_jobs_here:
            await runtime.start()
        yield
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
    return SlackEndpoint(app, runtime)


def uvicorn_server(runtime: Runtime, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(
        build_web(runtime), host=host, port=port, log_level="warning", access_log=False, lifespan="on"
    )
    return uvicorn.Server(config)
