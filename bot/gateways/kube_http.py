"""Many small GETs on the event loop: `/payflow health` probes every service's `/health`, through
the API server's service proxy or directly. Through the official Kubernetes client each probe
cost ~0.65 ms of CPU plus a hop to a pool thread (and eight threads fighting for the GIL doubled
that); httpx's async client ~2 ms; aiohttp with kept-alive connections ~0.2 ms.

`GetPool` is one aiohttp session per event loop (`per_loop.PerLoop`) with at most `limit`
requests in flight; `ApiServerHttp` is the API server through it, read from
the official client's configuration — same server, CA, client certificate and bearer token
(refreshed by the client's own hook, so in-cluster tokens rotate). Everything else stays on the
official client (`kube.Kube`)."""

from __future__ import annotations

import asyncio
import base64
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp

from bot.gateways.kube_objects import NotStarted, Unreachable
from bot.gateways.per_loop import PerLoop

BODY_LIMIT = 64 * 1024  # a /health answer is small; a proxied page is never read whole
HEADERS_FOR = 1.0  # seconds the auth headers are reused (a health of 1,000 probes asks once)


def supports(configuration: Any) -> bool:
    """False when the client goes through an HTTP proxy: that stays with the official client."""
    return not getattr(configuration, "proxy", None)


def _tls(configuration: Any) -> ssl.SSLContext | bool:
    if not configuration.host.startswith("https"):
        return False
    if not configuration.verify_ssl:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        data = getattr(configuration, "ca_cert_data", None)
        if isinstance(data, bytes):
            data = data.decode()
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert, cadata=data)
        if configuration.assert_hostname is False:
            context.check_hostname = False
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context


class GetPool:
    """GETs at most `limit` at once per event loop, each with ONE deadline; never retried."""

    def __init__(self, limit: int, tls: Callable[[], ssl.SSLContext | bool] | None = None) -> None:
        self._limit = limit
        self._make_tls = tls
        self._tls: ssl.SSLContext | bool | None = None  # built on first use (it reads CA files)
        self._sessions = PerLoop(self._new_session)

    def _new_session(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        if self._tls is None:
            self._tls = self._make_tls() if self._make_tls is not None else True
        connector = aiohttp.TCPConnector(limit=self._limit, ssl=self._tls)
        return aiohttp.ClientSession(connector=connector), asyncio.Semaphore(self._limit)

    async def get(
        self,
        url: str,
        *,
        timeout: float,
        headers: Mapping[str, str] | Callable[[], Awaitable[Mapping[str, str]]] | None = None,
        server_hostname: str | None = None,
        on_start: Callable[[float], None] | None = None,
        start_by: float | None = None,
    ) -> tuple[int, bytes]:
        """(status, the body up to its end or its first BODY_LIMIT bytes). The deadline starts when
        a slot is taken, not while waiting for one; that wait ends at `start_by` (the loop's time)
        with NotStarted, and the request is never sent. `headers` may be an async function (the
        API server's credentials): it is called once the slot is taken, within the deadline.
        TimeoutError when there was no whole answer within `timeout` (a body that trickles or
        stalls included); aiohttp.ClientError or OSError when there was no answer at all."""
        loop = asyncio.get_running_loop()
        session, slots = self._sessions.get()
        wait = None if start_by is None else max(0.0, start_by - loop.time())
        try:
            # Not asyncio.wait_for: on Python 3.11 it hands back a slot taken just as its caller
            # was cancelled, swallowing the cancel (and the request is sent anyway).
            async with asyncio.timeout(wait):
                await slots.acquire()
        except TimeoutError:
            raise NotStarted("not sent: every connection stayed busy") from None
        try:
            if on_start is not None:
                on_start(loop.time())
            async with asyncio.timeout(timeout):
                sent = await headers() if callable(headers) else headers
                async with session.get(
                    url, headers=sent, server_hostname=server_hostname, allow_redirects=False
                ) as resp:
                    return resp.status, await _body(resp)
        finally:
            slots.release()

    async def close(self) -> None:
        """Close the session of the running loop (the others' loops are gone or not ours)."""
        made = self._sessions.pop()
        if made is not None:
            await made[0].close()


async def _body(resp: aiohttp.ClientResponse) -> bytes:
    """The body to its end, or its first BODY_LIMIT bytes. One `read(n)` is not enough: it gives
    what has arrived so far, and a body flushed in pieces would be cut at the first."""
    parts: list[bytes] = []
    size = 0
    while size < BODY_LIMIT:
        part = await resp.content.read(BODY_LIMIT - size)
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


class ApiServerHttp:
    """GETs to the API server through a `GetPool`, failures said as the Kubernetes gateway says them."""

    def __init__(self, configuration: Any, limit: int) -> None:
        self._configuration = configuration
        self._base = configuration.host.rstrip("/")
        self._server_hostname = getattr(configuration, "tls_server_name", None) or None
        self._pool = GetPool(limit, lambda: _tls(configuration))
        self._cached_headers: dict[str, str] = {}
        self._headers_until = 0.0
        self._headers_lock = threading.Lock()  # one refresh at a time, whichever loop asks
        self._refreshing: asyncio.Future[dict[str, str]] | None = None

    async def _headers(self) -> dict[str, str]:
        """The client's own auth headers, asked again after HEADERS_FOR seconds: its hook refreshes
        tokens (it re-reads the in-cluster token every minute). Asked in a thread, never on the
        loop: for a kubeconfig's exec plugin (EKS, GKE) or OIDC provider the hook runs a
        subprocess or an HTTP request when the token has expired. Concurrent probes share one
        refresh; an error of the hook is Unreachable, as it was through the official client."""
        if self._headers_until > time.monotonic():
            return self._cached_headers
        loop = asyncio.get_running_loop()
        refresh = self._refreshing
        if refresh is None or refresh.done() or refresh.get_loop() is not loop:
            refresh = self._refreshing = asyncio.ensure_future(asyncio.to_thread(self._fresh_headers))
            refresh.add_done_callback(lambda done: done.cancelled() or done.exception())  # retrieved
        try:
            return await asyncio.shield(refresh)  # a probe that gives up leaves it to the others
        except Exception as exc:
            raise Unreachable(f"Kubernetes credentials not available: {type(exc).__name__}") from None

    def _fresh_headers(self) -> dict[str, str]:
        with self._headers_lock:
            now = time.monotonic()
            if self._headers_until <= now:
                self._cached_headers, self._headers_until = self._auth_headers(), now + HEADERS_FOR
            return self._cached_headers

    def _auth_headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json, */*"}
        for setting in self._configuration.auth_settings().values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[setting["key"]] = setting["value"]
        if self._configuration.username and "authorization" not in headers:
            pair = f"{self._configuration.username}:{self._configuration.password or ''}"
            headers["authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        return headers

    async def get(
        self,
        path: str,
        *,
        timeout: float,
        on_start: Callable[[float], None] | None = None,
        start_by: float | None = None,
    ) -> tuple[int, bytes]:
        """`GetPool.get` of `path` on the API server; Unreachable when it did not answer in time
        or could not be reached, NotStarted when no connection came free by `start_by`."""
        try:
            return await self._pool.get(
                self._base + path,
                timeout=timeout,
                headers=self._headers,
                server_hostname=self._server_hostname,
                on_start=on_start,
                start_by=start_by,
            )
        except TimeoutError:
            raise Unreachable(f"Kubernetes API did not answer within {timeout:g} s") from None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, ConnectionRefusedError):
                raise Unreachable("Kubernetes API not reachable (connection refused)") from None
            raise Unreachable(f"Kubernetes API not reachable: {type(exc.os_error).__name__}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise Unreachable(f"Kubernetes API not reachable: {type(exc).__name__}") from None

    async def close(self) -> None:
        await self._pool.close()
