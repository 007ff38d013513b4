"""Slack's Socket Mode endpoint, locally, for `serve --socket-mode` in tests: point the Slack
stand-in's `apps.connections.open` at `url` (``slack.socket_url = server.url``)."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from websockets.asyncio.server import ServerConnection, serve


class SocketModeServer:
    """Slack's Socket Mode endpoint, locally: says hello, sends envelopes, records acks and how
    each connection was closed (1000 is a close frame from the bot, 1006 a dropped TCP stream)."""

    def __init__(self) -> None:
        self.url = ""
        self.acks: list[dict[str, Any]] = []
        self.close_codes: list[int | None] = []
        self.connections: list[ServerConnection] = []
        self.refusing = False  # answer handshakes with 503, as an endpoint that is down
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(
            target=self._loop.run_until_complete, args=(self._main(),), daemon=True
        )

    async def _handler(self, ws: ServerConnection) -> None:
        self.connections.append(ws)
        await ws.send(json.dumps({"type": "hello", "num_connections": 1, "debug_info": {"host": "local"}}))
        try:
            async for raw in ws:
                self.acks.append(json.loads(raw))
        finally:
            self.close_codes.append(ws.close_code)

    async def _main(self) -> None:
        self._stop = asyncio.Event()

        def gate(connection: ServerConnection, request: Any) -> Any:
            return connection.respond(503, "unavailable\n") if self.refusing else None

        async with serve(self._handler, "127.0.0.1", 0, process_request=gate) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            self.url = f"ws://127.0.0.1:{port}/link/?ticket=test"
            self._started.set()
            await self._stop.wait()

    def start(self) -> SocketModeServer:
        self._thread.start()
        assert self._started.wait(10)
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def send(self, envelope: dict[str, Any]) -> None:
        ws = self.connections[-1]
        asyncio.run_coroutine_threadsafe(ws.send(json.dumps(envelope)), self._loop).result(5)

    def drop_all(self) -> None:
        """Slack going away: close every connection (the SDK then reconnects)."""
        for ws in list(self.connections):
            asyncio.run_coroutine_threadsafe(ws.close(1001, "going away"), self._loop).result(5)
