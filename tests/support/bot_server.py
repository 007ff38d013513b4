"""The bot's real web app under uvicorn on a free port, in a thread with its own event loop,
so tests talk to it over HTTP exactly as Slack does."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx

from bot.shell.runtime import Runtime
from bot.shell.server import uvicorn_server
from sandbox.local import wait_until
from sandbox.slack_requests import SignedRequest

T = TypeVar("T")


class BotServer:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self._server = uvicorn_server(runtime, "127.0.0.1", 0)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="bot-server", daemon=True)
        self.url = ""
        self.http = httpx.Client(timeout=10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._server.serve())

    def start(self) -> BotServer:
        self._thread.start()

        def started() -> bool:
            assert self._server.started or self._thread.is_alive(), "the bot's web server stopped"
            return self._server.started

        wait_until(started, 10, "the bot's web server to start", poll=0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=40)
        self.http.close()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        """Run a coroutine on the bot's loop (where its Redis and HTTP clients live)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def post(self, signed: SignedRequest, path: str = "/slack/events") -> httpx.Response:
        return self.http.post(self.url + path, content=signed.body.encode(), headers=signed.headers)

    def get(self, path: str) -> httpx.Response:
        return self.http.get(self.url + path)

    def idle(self, timeout: float = 10) -> None:
        """Wait until the work queued after acks has finished."""
        if not self.call(self.runtime.jobs.drain(timeout), timeout + 1):
            raise AssertionError("background work still running")
