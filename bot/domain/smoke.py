"""The guide's "test the green environment" step, made strict: the idle color's health URL must
answer 200 — with the version we deployed, when it says one — several times in a row."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from bot.config.catalog import Catalog, Color
from bot.gateways.healthcheck import HealthAnswer, get_health
from bot.gateways.kube import Kube


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


def _judge(answer: HealthAnswer, version: str) -> Probe:
    took = f"({answer.elapsed_ms:.0f} ms)"
    if answer.status is None:
        return Probe(False, f"no answer: {answer.reason} after {answer.elapsed_ms:.0f} ms")
    if answer.status != 200:
        return Probe(False, f"HTTP {answer.status}: {answer.reason} {took}")
    if answer.version is not None and answer.version != version:
        return Probe(False, f"200 but reports version {answer.version}, expected {version} {took}")
    return Probe(True, f"200 {answer.version or 'ok'} {took}")


async def smoke_test(catalog: Catalog, kube: Kube, service: str, color: Color, version: str) -> SmokeResult:
    """Passes after `successes` consecutive good answers; fails when attempts run out first."""
    smoke = catalog.env.smoke
    probes: list[Probe] = []
    streak = 0
    for attempt in range(smoke.attempts):
        if attempt:
            await asyncio.sleep(smoke.interval_seconds)
        probe = _judge(await get_health(catalog, kube, service, color), version)
        probes.append(probe)
        streak = streak + 1 if probe.ok else 0
        if streak >= smoke.successes:
            return SmokeResult(True, tuple(probes[-streak:]))
    return SmokeResult(False, tuple(probes[-smoke.successes :]))
