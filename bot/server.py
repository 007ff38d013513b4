"""The HTTP face of the bot: Slack events, health, readiness and metrics, served by uvicorn."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from bot.runtime import Runtime

log = logging.getLogger(__name__)

SLACK_PATH = "/slack/events"
READY_TIMEOUT = 2.0


class AckFirst:
    """Runs queued work only after the Slack response has been sent, and times the ack."""

    def __init__(self, app: ASGIApp, runtime: Runtime):
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != SLACK_PATH:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message: dict[str, Any]) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.runtime.telemetry.ack_seconds.observe(time.perf_counter() - started)

        with self.runtime.jobs.after_response():
            await self.app(scope, receive, timed_send)


async def _check(name: str, probe: Any) -> tuple[str, str]:
    try:
        await asyncio.wait_for(probe, READY_TIMEOUT)
        return name, "ok"
    except Exception as exc:
        return name, f"unavailable: {type(exc).__name__}: {exc}"[:200]


def build_web(runtime: Runtime) -> ASGIApp:
    slack_handler = AsyncSlackRequestHandler(runtime.bolt)

    async def slack_events(request: Request) -> Response:
        return await slack_handler.handle(request)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        checks = dict(
            await asyncio.gather(
                _check("redis" if runtime.settings.redis_url else "store", runtime.store.ping()),
                _check("kubernetes", runtime.kube.ping()),
            )
        )
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)

    async def metrics(request: Request) -> Response:
        return Response(runtime.telemetry.exposition(), media_type="text/plain; version=0.0.4")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        log.info("shutting down: waiting for work in flight")
        await runtime.close()

    app = Starlette(
        routes=[
            Route(SLACK_PATH, slack_events, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    return AckFirst(app, runtime)


def uvicorn_server(runtime: Runtime, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(
        build_web(runtime), host=host, port=port, log_level="warning", access_log=False, lifespan="on"
    )
    return uvicorn.Server(config)
