"""Probes for `/payflow health` and the deploy smoke test: a color's `/health` (directly, or
through the API server's service proxy when the catalog says the bot cannot reach Services
directly), and the optional TCP / HTTP probes of dependencies. Every probe has ONE deadline
that starts when its request does (not while it waits for a connection), never retries, and
reports what it saw. HTTP goes through shared, kept-alive aiohttp pools (`kube_http.GetPool`)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import aiohttp

from bot.base.redact import clip
from bot.config.catalog import Catalog, Color
from bot.config.metrics import Probe
from bot.gateways.kube import PROXY_LIMIT, Kube
from bot.gateways.kube_http import GetPool
from bot.gateways.kube_objects import NotStarted, Unreachable

PROBE_CONCURRENCY = PROXY_LIMIT  # probes in flight at once: the connections they share
# Direct probes (`smoke.via: direct`) share one connection pool per event loop, whoever asks.
DIRECT = GetPool(PROBE_CONCURRENCY)


async def close() -> None:
    """Close the direct probes' connections of the running loop (when the process stops)."""
    await DIRECT.close()


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    summary: str  # e.g. "200 v1.0.0 (12 ms)", "503: no ready endpoints", "refused (ConnectError)"
    ran: bool = True  # False: the probe never ran ("not checked"), so it says nothing of the service


@dataclass(frozen=True)
class HealthAnswer:
    """What a color's `/health` said: status None means no answer at all (`reason` says why)."""

    status: int | None
    reason: str
    version: str | None
    elapsed_ms: float


REASON_CHARS = 120  # a reason is one line of the health report


def _read(status: int, body: str, elapsed_ms: float) -> HealthAnswer:
    """The answer's version and reason. The reason is cut with `clip`, never in a number: a card
    number cut short keeps its first digits and loses the Luhn check that redaction needs."""
    version, reason = None, body.strip()
    try:
        data = json.loads(body)
        if isinstance(data, dict):
            version = data.get("version")
            reason = str(data.get("reason") or data.get("status") or reason)
    except ValueError:
        pass
    return HealthAnswer(status, clip(reason, REASON_CHARS, "…"), version, elapsed_ms)


async def get_health(
    catalog: Catalog, kube: Kube, service: str, color: Color, *, start_by: float | None = None
) -> HealthAnswer:
    """GET the color's health endpoint the way the catalog says it is reachable (directly, or
    through the API server's service proxy), within the smoke-test timeout. The one probe that
    `/payflow health` and the deploy smoke test share.

    The deadline and the elapsed time start when the request does: it may first wait for one of
    the connections every probe shares, and that wait is not the service's fault. `start_by`
    (the loop's time) bounds that wait: NotStarted when the request could not start by then."""
    smoke = catalog.env.smoke
    spec = catalog.service(service)
    loop = asyncio.get_running_loop()
    started = [loop.time()]

    def begun(at: float) -> None:
        started[0] = at

    try:
        if smoke.via == "apiserver":
            name = catalog.k8s_service_name(service, color)
            status, body = await kube.proxy_get(
                name,
                spec.port,
                spec.health_path,
                timeout=smoke.timeout_seconds,
                on_start=begun,
                start_by=start_by,
            )
        else:
            status, raw = await DIRECT.get(
                catalog.health_url(service, color),
                timeout=smoke.timeout_seconds,
                on_start=begun,
                start_by=start_by,
            )
            body = raw.decode("utf-8", "replace")
    except TimeoutError:
        reason = f"no answer within {smoke.timeout_seconds:g} s"
        return HealthAnswer(None, reason, None, (loop.time() - started[0]) * 1000)
    except Unreachable as exc:
        return HealthAnswer(None, str(exc), None, (loop.time() - started[0]) * 1000)
    except (aiohttp.ClientError, OSError) as exc:
        return HealthAnswer(None, _failure(exc), None, (loop.time() - started[0]) * 1000)
    return _read(status, body, (loop.time() - started[0]) * 1000)


def _failure(exc: BaseException) -> str:
    """What went wrong in a word: the OS's reason when there is one ("ConnectionRefusedError")."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return type(exc.os_error).__name__
    return type(exc).__name__


def _judged(answer: HealthAnswer) -> ProbeResult:
    took = f"({answer.elapsed_ms:.0f} ms)"
    if answer.status is None:
        return ProbeResult(False, f"/health no answer: {answer.reason} after {answer.elapsed_ms:.0f} ms")
    if answer.status != 200:
        return ProbeResult(False, f"/health {answer.status}: {answer.reason} {took}")
    return ProbeResult(True, f"/health 200 {answer.version or 'ok'} {took}")


async def probe_health(catalog: Catalog, kube: Kube, service: str, color: Color) -> ProbeResult:
    return _judged(await get_health(catalog, kube, service, color))


HEALTH_DEADLINE = 10.0  # seconds for all the probes of one `/payflow health`


def not_checked(why: str) -> ProbeResult:
    return ProbeResult(False, f"/health not checked: {why}", ran=False)


async def probe_many(
    catalog: Catalog,
    kube: Kube,
    targets: list[tuple[str, Color]],
    *,
    concurrency: int = PROBE_CONCURRENCY,
    deadline: float = HEALTH_DEADLINE,
) -> list[ProbeResult]:
    """Probe every (service, live color), at most `concurrency` at a time, all within ONE overall
    `deadline`. Each probe has its own deadline from the moment it starts, never counting its
    wait for a turn; a probe whose turn would come too late to finish in time does not start and
    is reported "not checked" — never "no answer", which would blame a service never asked. A
    probe that starts is given its whole deadline, so all are done by `deadline` (+1 s slack)."""
    loop = asyncio.get_running_loop()
    ends = loop.time() + deadline
    per_probe = catalog.env.smoke.timeout_seconds
    gate = asyncio.Semaphore(concurrency)
    why = f"the {deadline:g} s for all {len(targets)} probes ran out before its turn"

    async def one(service: str, color: Color) -> ProbeResult:
        async with gate:
            if loop.time() + per_probe > ends:
                return not_checked(why)
            try:
                answer = await get_health(catalog, kube, service, color, start_by=ends - per_probe)
            except NotStarted:  # no shared connection came free in time: never sent
                return not_checked(why)
            return _judged(answer)

    return list(await asyncio.gather(*(one(s, c) for s, c in targets)))


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
        status, _ = await DIRECT.get(probe.http, timeout=probe.timeout_seconds)
        took = (loop.time() - started) * 1000
        return ProbeResult(200 <= status < 300, f"http {status} ({took:.0f} ms)")
    except TimeoutError:
        what = f"tcp {probe.tcp}" if probe.tcp else "http"
        return ProbeResult(False, f"{what}: no answer within {probe.timeout_seconds:g} s")
    except (OSError, aiohttp.ClientError) as exc:
        what = f"tcp {probe.tcp}" if probe.tcp else "http"
        return ProbeResult(False, f"{what} failed: {_failure(exc)}")
