"""Direct probes for `/payflow health`: a color's `/health` (httpx, or through the API server's
service proxy when the catalog says the bot cannot reach Services directly), and the optional
TCP / HTTP probes of dependencies. Every probe has ONE deadline (httpx's own timeout is per
phase — connect, write, read — so a trickling server could take several) and reports what it
saw; httpx never retries."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import httpx

from bot.config import Catalog, Color
from bot.kube import Kube
from bot.metrics_config import Probe


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    summary: str  # e.g. "200 v1.0.0 (12 ms)", "503: no ready endpoints", "refused (ConnectError)"


@dataclass(frozen=True)
class HealthAnswer:
    """What a color's `/health` said: status None means no answer at all (`reason` says why)."""

    status: int | None
    reason: str
    version: str | None
    elapsed_ms: float


def _read(status: int, body: str, elapsed_ms: float) -> HealthAnswer:
    version, reason = None, body.strip()[:120]
    try:
        data = json.loads(body)
        if isinstance(data, dict):
            version = data.get("version")
            reason = str(data.get("reason") or data.get("status") or reason)[:120]
    except ValueError:
        pass
    return HealthAnswer(status, reason, version, elapsed_ms)


async def get_health(catalog: Catalog, kube: Kube, service: str, color: Color) -> HealthAnswer:
    """GET the color's health endpoint the way the catalog says it is reachable (directly, or
    through the API server's service proxy), within the smoke-test timeout. The one probe that
    `/payflow health` and the deploy smoke test share."""
    smoke = catalog.env.smoke
    spec = catalog.service(service)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        if smoke.via == "apiserver":
            name = catalog.k8s_service_name(service, color)
            status, body = await asyncio.wait_for(
                kube.proxy_get(name, spec.port, spec.health_path), smoke.timeout_seconds
            )
        else:
            async with httpx.AsyncClient(timeout=smoke.timeout_seconds) as client:
                resp = await asyncio.wait_for(
                    client.get(catalog.health_url(service, color)), smoke.timeout_seconds
                )
                status, body = resp.status_code, resp.text
    except (TimeoutError, httpx.TimeoutException):
        reason = f"no answer within {smoke.timeout_seconds:g} s"
        return HealthAnswer(None, reason, None, (loop.time() - started) * 1000)
    except httpx.HTTPError as exc:
        return HealthAnswer(None, type(exc).__name__, None, (loop.time() - started) * 1000)
    return _read(status, body, (loop.time() - started) * 1000)


async def probe_health(catalog: Catalog, kube: Kube, service: str, color: Color) -> ProbeResult:
    answer = await get_health(catalog, kube, service, color)
    took = f"({answer.elapsed_ms:.0f} ms)"
    if answer.status is None:
        return ProbeResult(False, f"/health no answer: {answer.reason} after {answer.elapsed_ms:.0f} ms")
    if answer.status != 200:
        return ProbeResult(False, f"/health {answer.status}: {answer.reason} {took}")
    return ProbeResult(True, f"/health 200 {answer.version or 'ok'} {took}")


async def probe_dependency(probe: Probe) -> ProbeResult:
    """A TCP connect or an HTTP GET that must answer 2xx."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        if probe.tcp is not None:
            host, _, port = probe.tcp.rpartition(":")
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host, int(port)), probe.timeout_seconds
            )
            writer.close()
            took = (loop.time() - started) * 1000
            return ProbeResult(True, f"tcp {probe.tcp} open ({took:.0f} ms)")
        assert probe.http is not None
        async with httpx.AsyncClient(timeout=probe.timeout_seconds) as client:
            resp = await asyncio.wait_for(client.get(probe.http), probe.timeout_seconds)
        took = (loop.time() - started) * 1000
        return ProbeResult(resp.is_success, f"http {resp.status_code} ({took:.0f} ms)")
    except (TimeoutError, httpx.TimeoutException):
        what = f"tcp {probe.tcp}" if probe.tcp else "http"
        return ProbeResult(False, f"{what}: no answer within {probe.timeout_seconds:g} s")
    except (OSError, httpx.HTTPError) as exc:
        what = f"tcp {probe.tcp}" if probe.tcp else "http"
        return ProbeResult(False, f"{what} failed: {type(exc).__name__}")
