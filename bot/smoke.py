"""The guide's "test the green environment" step, made strict: the idle color's health URL must
answer 200 — with the version we deployed, when it says one — several times in a row."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import httpx

from bot.config import Catalog, Color
from bot.kube import Kube


@dataclass(frozen=True)
class Probe:
    ok: bool
    summary: str  # one line for the approver, e.g. "200 ok v1.2.3 (12 ms)"


@dataclass(frozen=True)
class SmokeResult:
    passed: bool
    probes: tuple[Probe, ...]

    @property
    def lines(self) -> tuple[str, ...]:
        return tuple(f"{'✓' if p.ok else '✗'} {p.summary}" for p in self.probes)


def _judge(status: int, body: str, version: str, elapsed_ms: float) -> Probe:
    reported = None
    try:
        data = json.loads(body)
        if isinstance(data, dict):
            reported = data.get("version")
    except ValueError:
        pass
    took = f"({elapsed_ms:.0f} ms)"
    if status != 200:
        return Probe(False, f"HTTP {status}: {body.strip()[:120]} {took}")
    if reported is not None and reported != version:
        return Probe(False, f"200 but reports version {reported}, expected {version} {took}")
    return Probe(True, f"200 {reported or 'ok'} {took}")


async def _once(catalog: Catalog, kube: Kube, service: str, color: Color, version: str) -> Probe:
    env, spec = catalog.env, catalog.service(service)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        if env.smoke.via == "apiserver":
            name = catalog.k8s_service_name(service, color)
            status, body = await asyncio.wait_for(
                kube.proxy_get(name, spec.port, spec.health_path), env.smoke.timeout_seconds
            )
        else:
            async with httpx.AsyncClient(timeout=env.smoke.timeout_seconds) as client:
                resp = await client.get(catalog.health_url(service, color))
                status, body = resp.status_code, resp.text
    except (TimeoutError, httpx.HTTPError) as exc:
        return Probe(False, f"no answer: {type(exc).__name__} after {(loop.time() - started) * 1000:.0f} ms")
    return _judge(status, body, version, (loop.time() - started) * 1000)


async def smoke_test(catalog: Catalog, kube: Kube, service: str, color: Color, version: str) -> SmokeResult:
    """Passes after `successes` consecutive good answers; fails when attempts run out first."""
    smoke = catalog.env.smoke
    probes: list[Probe] = []
    streak = 0
    for attempt in range(smoke.attempts):
        if attempt:
            await asyncio.sleep(smoke.interval_seconds)
        probe = await _once(catalog, kube, service, color, version)
        probes.append(probe)
        streak = streak + 1 if probe.ok else 0
        if streak >= smoke.successes:
            return SmokeResult(True, tuple(probes[-streak:]))
    return SmokeResult(False, tuple(probes[-smoke.successes :]))
