"""`POST /alertmanager`: Alertmanager's webhook, in the web process that acks Slack.

It must stay cheap: authenticate (constant time), validate the payload, put the notification into
the job queue and answer. Unlike a Slack ack it waits for that one enqueue (a Redis XADD with
REDIS_URL): Alertmanager never sends a notification again once it got 200, so 200 means "durably
queued", and a queue that is down or full answers 503, which Alertmanager retries.
Unconfigured, it answers 503 saying what to set: Alertmanager retries
5xx, so notifications sent before the bot is configured are not silently dropped.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.config.settings import Settings
from bot.gateways.alertmanager import BadWebhook, parse_webhook
from bot.gateways.jobs import QueueRefused
from bot.shell.runtime import Runtime
from handlers.alerts import AlertNotification

log = logging.getLogger(__name__)

PATH = "/alertmanager"
MAX_BODY = 5_000_000
NOT_CONFIGURED = (
    "the Alertmanager webhook is not configured: set ALERTMANAGER_WEBHOOK_TOKEN "
    "(or ALERTMANAGER_WEBHOOK_USER and ALERTMANAGER_WEBHOOK_PASSWORD) on the bot"
)


def _same(given: bytes, expected: bytes) -> bool:
    """Constant time, length included: compare digests, not the secrets themselves."""
    return hmac.compare_digest(hashlib.sha256(given).digest(), hashlib.sha256(expected).digest())


def configured(settings: Settings) -> bool:
    basic = settings.alertmanager_webhook_user and settings.alertmanager_webhook_password
    return bool(settings.alertmanager_webhook_token or basic)


def authorized(header: str | None, settings: Settings) -> bool:
    scheme, _, credentials = (header or "").strip().partition(" ")
    scheme, credentials = scheme.lower(), credentials.strip()
    if scheme == "bearer" and settings.alertmanager_webhook_token:
        return _same(credentials.encode(), settings.alertmanager_webhook_token.encode())
    user, password = settings.alertmanager_webhook_user, settings.alertmanager_webhook_password
    if scheme == "basic" and user and password:
        try:
            decoded = base64.b64decode(credentials, validate=True)
        except (binascii.Error, ValueError):
            return False
        return _same(decoded, f"{user}:{password}".encode())
    return False


async def _body(request: Request) -> bytes | None:
    """The body, or None once it is larger than anything Alertmanager sends."""
    if int(request.headers.get("content-length") or 0) > MAX_BODY:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return None
    return bytes(body)


def alertmanager_route(runtime: Runtime) -> Route:
    settings = runtime.settings

    async def receive(request: Request) -> Response:
        client = request.client.host if request.client else "?"
        if not configured(settings):
            log.warning("Alertmanager notification from %s refused: webhook not configured", client)
            return JSONResponse({"error": NOT_CONFIGURED}, status_code=503)
        if not authorized(request.headers.get("authorization"), settings):
            log.warning("Alertmanager notification from %s refused: bad or missing credentials", client)
            challenge = "Bearer" if settings.alertmanager_webhook_token else 'Basic realm="payflow-bot"'
            return JSONResponse(
                {"error": "missing or wrong credentials"},
                status_code=401,
                headers={"WWW-Authenticate": challenge},
            )
        body = await _body(request)
        if body is None:
            log.warning("Alertmanager notification from %s refused: larger than %d bytes", client, MAX_BODY)
            return JSONResponse(
                {"error": f"payload larger than {MAX_BODY} bytes; set max_alerts in Alertmanager"},
                status_code=413,
            )
        try:
            payload = parse_webhook(body)
        except BadWebhook as exc:
            log.warning("malformed Alertmanager notification from %s: %s", client, exc.reason)
            return JSONResponse({"error": f"malformed notification: {exc.reason}"}, status_code=400)
        try:  # Alertmanager does not send a notification again once it got a 2xx: queue it first
            await runtime.jobs.enqueue(AlertNotification(payload))
        except QueueRefused as exc:
            log.error("Alertmanager notification from %s not queued, answered 503: %s", client, exc)
            return JSONResponse({"error": f"not queued, retry: {exc}"}, status_code=503)
        return JSONResponse({"status": "accepted", "alerts": len(payload.alerts)})

    return Route(PATH, receive, methods=["POST"])
