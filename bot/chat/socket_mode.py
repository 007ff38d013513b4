"""Socket Mode's lifecycle for `serve`: refuse a rejected app token at once, report the socket in
readiness, close it with a proper close frame on SIGTERM.

The SDK's client retries a failed connect every few seconds forever; with a revoked or mistyped
token that is a pod that never serves and never says why. So the app token is tried once here
(`apps.connections.open`) before the SDK takes over, and anything but a URL ends start-up.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError

log = logging.getLogger(__name__)

OPEN_TIMEOUT = 10.0  # apps.connections.open, one call
CONNECT_TIMEOUT = 30.0  # the websocket handshake, retries included
CLOSE_TIMEOUT = 5.0  # close frame and session teardown on shutdown

# Errors that no retry can fix: the token itself is wrong.
TOKEN_ERRORS = {
    "invalid_auth": "the token is not valid (mistyped, or from another workspace)",
    "not_authed": "no token reached Slack",
    "token_revoked": "the token was revoked",
    "account_inactive": "the app or its workspace was deactivated",
    "not_allowed_token_type": "this is not an app-level token (xapp-…)",
    "missing_scope": "the app-level token lacks connections:write",
}


class SocketModeRefused(Exception):
    """Socket Mode cannot start; `str()` says what to fix, fit for stderr (never the token)."""


class SocketMode:
    def __init__(self, bolt: AsyncApp, app_token: str):
        self._bolt = bolt
        self._app_token = app_token
        self.handler: AsyncSocketModeHandler | None = None  # made on the loop: it opens an aiohttp session
        self._opened = False

    async def open(self) -> None:
        """Connect, or raise SocketModeRefused: a rejected token or an unreachable Slack ends here."""
        self.handler = AsyncSocketModeHandler(self._bolt, self._app_token)
        client = self.handler.client
        try:
            answer = await asyncio.wait_for(
                client.web_client.apps_connections_open(app_token=self._app_token), OPEN_TIMEOUT
            )
        except SlackApiError as exc:
            error = str(exc.response.get("error", "unknown"))
            why = TOKEN_ERRORS.get(error, "see Slack's documentation of apps.connections.open")
            raise SocketModeRefused(
                f"Slack refused SLACK_APP_TOKEN ({error}): {why}. Create an app-level token with "
                "connections:write under Basic Information → App-Level Tokens"
            ) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise SocketModeRefused(
                f"Slack's apps.connections.open did not answer ({type(exc).__name__}) within "
                f"{OPEN_TIMEOUT:.0f} s"
            ) from None
        client.wss_uri = answer["url"]
        try:
            await asyncio.wait_for(self.handler.connect_async(), CONNECT_TIMEOUT)
        except TimeoutError:
            await self.close()
            raise SocketModeRefused(
                f"the Socket Mode websocket did not open within {CONNECT_TIMEOUT:.0f} s"
            ) from None
        self._opened = True
        log.info("connected to Slack in Socket Mode")

    async def state(self) -> str:
        if self.handler is None or not self._opened:
            return "not connected yet"
        if await self.handler.client.is_connected():
            return "ok"
        return "closed" if self.handler.client.closed else "websocket not connected (reconnecting)"

    async def close(self) -> None:
        """A close frame (1000), then the HTTP session; bounded so shutdown cannot hang on Slack."""
        if self.handler is None or self.handler.client.closed:
            return
        try:
            await asyncio.wait_for(self.handler.close_async(), CLOSE_TIMEOUT)
            log.info("Socket Mode connection closed")
        except Exception as exc:  # shutting down: say it and go on draining
            log.warning("Socket Mode connection did not close cleanly: %s", type(exc).__name__)
