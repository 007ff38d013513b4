"""`/payflow health`'s and the deploy smoke test's probes against backends (and API servers) that
misbehave: a body in pieces, a body that trickles or never ends, a 401 of the backend's own, a
reason long enough to be cut, a health path that climbs out of the service proxy, credentials
that an exec plugin refreshes, a probe cancelled as its turn comes, an API server that stops
between the ingresses and the rest of the namespace.

Real parts: the sandbox API server, and `ScriptedHttp` (tests/support/scripted_http.py) in the
role of a broken backend or of an API server's proxy relaying one. No timing assertions beyond
generous bounds that say "one deadline, not a hang"."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.base.redact import redact
from bot.config.catalog import Catalog, CatalogError, Smoke, parse_catalog
from bot.domain.smoke import smoke_test
from bot.domain.topology import live_color
from bot.gateways import healthcheck
from bot.gateways.healthcheck import get_health, probe_health, probe_many
from bot.gateways.kube import Kube
from bot.gateways.kube_http import BODY_LIMIT, GetPool
from bot.gateways.kube_objects import Unreachable
from sandbox.k8s_api import SandboxServer
from sandbox.local import wait_until
from tests.support.blackhole import BlackHole
from tests.support.loopback import kubeconfig_at
from tests.support.scripted_http import HANG, Script, ScriptedHttp, answer_json, chunk, head

SERVICE = "api-gateway"
PROXY_PATH = b"GET /api/v1/namespaces/payflow/services/api-gateway-blue:8080/proxy/health"


def _fake_apiserver(path: Path, server: ScriptedHttp) -> Kube:
    """A Kube whose API server is `server` (plain HTTP, a bearer token), on its aiohttp path."""
    return Kube.connect("payflow", kubeconfig=str(kubeconfig_at(path, server)), timeout=3)


def _probed(catalog: Catalog, via: str, server: ScriptedHttp, timeout: float = 2.0) -> Catalog:
    """`catalog` with `SERVICE` on port 8080 probed through `server`: as its own backend
    (`direct`), or as the API server whose service proxy relays the backend (`apiserver`)."""
    smoke = Smoke(via=via, timeout_seconds=timeout, successes=1, attempts=1)  # type: ignore[arg-type]
    env = catalog.env.model_copy(update={"smoke": smoke})
    spec = catalog.service(SERVICE).model_copy(update={"port": 8080, "health_url": server.url + "/health"})
    return catalog.model_copy(
        update={
            "environments": {**catalog.environments, catalog.environment: env},
            "services": {**catalog.services, SERVICE: spec},
        }
    )


@pytest.fixture(params=["direct", "apiserver"])
def via(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _run(kube: Kube, coro: Any) -> Any:
    async def run() -> Any:
        try:
            return await coro
        finally:
            await kube.aclose()
            await healthcheck.close()

    return asyncio.run(run())


# --- bodies: in pieces, trickling, endless --------------------------------------------------------


def _in_pieces(version: str) -> Any:
    body = json.dumps({"status": "ok", "version": version}).encode()

    def answer(_request: bytes) -> Script:
        return [head(200, length=len(body)) + body[:15], 0.2, body[15:]]  # two TCP segments

    return answer


def test_a_health_answer_sent_in_pieces_is_read_whole(catalog: Catalog, tmp_path: Path, via: str) -> None:
    """A backend (or a proxy) may flush its body in several writes: the version is in the last
    one. Read only the first, the version was lost and the deploy smoke test, which must catch a
    color running the wrong version, passed it."""
    with ScriptedHttp(_in_pieces("v1.0.0")) as server:
        kube = _fake_apiserver(tmp_path / "kc", server)
        probed = _probed(catalog, via, server)
        answer = _run(kube, get_health(probed, kube, SERVICE, "blue"))
        assert (answer.status, answer.version) == (200, "v1.0.0"), answer

        kube = _fake_apiserver(tmp_path / "kc", server)
        smoke = _run(kube, smoke_test(probed, kube, SERVICE, "blue", "v2.0.0"))
    assert not smoke.passed, smoke.lines
    assert "reports version v1.0.0, expected v2.0.0" in smoke.lines[0]
    if via == "apiserver":
        assert server.requests[0].startswith(PROXY_PATH)


def test_a_body_that_trickles_and_never_ends_costs_one_deadline_and_is_no_answer(
    catalog: Catalog, tmp_path: Path, via: str
) -> None:
    """Headers and a first byte, then nothing, the connection held open: not a 200 made of one
    byte, but no whole answer within the probe's one deadline."""

    def trickle(_request: bytes) -> Script:
        return [head(200, length=1000) + b"{", 0.1, b'"status"', HANG]

    with ScriptedHttp(trickle) as server:
        kube = _fake_apiserver(tmp_path / "kc", server)
        started = time.monotonic()
        result = _run(kube, probe_health(_probed(catalog, via, server, timeout=0.5), kube, SERVICE, "blue"))
        took = time.monotonic() - started
        wait_until(lambda: server.hung_up == 1, 5, "the probe to let go of the connection")
    assert not result.ok and result.ran, result.summary
    said = "no answer within 0.5 s" if via == "direct" else "Kubernetes API did not answer within 0.5 s"
    assert result.summary.startswith(f"/health no answer: {said}"), result.summary
    assert took < 5, "one deadline, not a hang"


def test_an_endless_body_is_read_up_to_the_limit_and_the_connection_let_go() -> None:
    """A page that never ends (chunked, a megabyte after a megabyte): the first BODY_LIMIT bytes,
    at once, and the connection closed rather than kept for the next probe."""

    def endless(_request: bytes) -> Script:
        return itertools.chain([head(200, chunked=True)], itertools.repeat(chunk(b"x" * 65536)))

    pool = GetPool(2)

    async def get() -> tuple[int, bytes]:
        try:
            return await pool.get(server.url + "/health", timeout=5)
        finally:
            await pool.close()

    with ScriptedHttp(endless) as server:
        started = time.monotonic()
        status, body = asyncio.run(get())
        took = time.monotonic() - started
        wait_until(lambda: server.hung_up == 1, 5, "the connection to be closed")
    assert (status, len(body)) == (200, BODY_LIMIT)
    assert took < 5


# --- whose refusal: the backend's 401 or the API server's -----------------------------------------


def test_a_backends_own_401_is_its_answer_not_the_bots_credentials(catalog: Catalog, tmp_path: Path) -> None:
    """The service proxy relays the backend's status: a /health behind its own auth answers 401
    with its own body. That is the backend's answer (its reason shown), not "Kubernetes refused
    the bot's credentials", which would send the operator to the bot's RBAC."""
    body = json.dumps({"status": "unauthorized", "reason": "this /health wants its own token"}).encode()
    with ScriptedHttp(answer_json(401, body)) as server:
        kube = _fake_apiserver(tmp_path / "kc", server)
        result = _run(kube, probe_health(_probed(catalog, "apiserver", server), kube, SERVICE, "blue"))
    assert result.summary.startswith("/health 401: this /health wants its own token"), result.summary


def test_the_api_servers_own_403_still_names_the_credentials(catalog: Catalog, tmp_path: Path) -> None:
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": 'services "api-gateway-blue" is forbidden: User "bot" cannot get resource '
        '"services/proxy"',
        "reason": "Forbidden",
        "code": 403,
    }
    with ScriptedHttp(answer_json(403, json.dumps(status).encode())) as server:
        kube = _fake_apiserver(tmp_path / "kc", server)
        result = _run(kube, probe_health(_probed(catalog, "apiserver", server), kube, SERVICE, "blue"))
    assert result.summary.startswith("/health 403: Kubernetes refused the bot's credentials (403)"), (
        result.summary
    )


# --- what reaches Slack: a reason cut short must not cut a card number short -----------------------


CARD = "4111 1111 1111 1111"  # a test Visa number: Luhn-valid


@pytest.mark.parametrize(
    "body",
    [
        # plain text: the first 120 characters are the reason
        ("upstream said: " + "y" * 90 + " card " + CARD + " declined").encode(),
        # JSON: its reason, cut
        json.dumps({"status": "down", "reason": "charge failed " + "x" * 91 + " " + CARD}).encode(),
    ],
)
def test_a_reason_cut_short_never_ends_inside_a_card_number(
    catalog: Catalog, tmp_path: Path, body: bytes
) -> None:
    """The reason is cut to a line; a cut through a card number leaves its first twelve digits,
    which the redaction point downstream cannot recognise any more (no Luhn check without the
    rest). What the redaction point is given must not hold them."""
    with ScriptedHttp(answer_json(503, body)) as server:
        kube = _fake_apiserver(tmp_path / "kc", server)
        result = _run(kube, probe_health(_probed(catalog, "direct", server), kube, SERVICE, "blue"))
    shown = redact(result.summary)
    assert shown.startswith("/health 503: "), shown
    assert "4111" not in shown, shown


# --- the health path stays on the service -----------------------------------------------------------


def _catalog_with_health_path(path: str) -> Catalog:
    return parse_catalog(
        {
            "environments": {"production": {"smoke": {"via": "apiserver"}}},
            "services": {SERVICE: {"port": 8080, "health_path": path}},
        }
    )


@pytest.mark.parametrize(
    "path", ["/../../../configmaps", "/health/../../../../api/v1/secrets", "/./health", "/%2e%2e/x", "/a/.."]
)
def test_a_health_path_that_climbs_out_of_the_service_is_refused_by_the_catalog(path: str) -> None:
    """The probe's URL is normalized on the way out (`..` segments resolved): through the API
    server's service proxy, `health_path: /../../../configmaps` became a GET of the namespace's
    ConfigMaps with the bot's credentials, and a 200 said "healthy"."""
    with pytest.raises(CatalogError) as info:
        _catalog_with_health_path(path)
    assert any(p.startswith(f"services.{SERVICE}.health_path:") for p in info.value.problems), info.value


@pytest.mark.parametrize(
    "path", ["/health", "/actuator/health", "/healthz?verbose=1", "/v1.2/health", "/..."]
)
def test_ordinary_health_paths_are_accepted(path: str) -> None:
    assert _catalog_with_health_path(path).service(SERVICE).health_path == path


# --- credentials refreshed by an exec plugin: off the event loop -------------------------------------


EXEC_PLUGIN = """
import json, pathlib, sys, time
from datetime import datetime, timedelta, timezone
state, token = pathlib.Path(sys.argv[1]), sys.argv[2]
n = len(list(state.glob("run-*")))
(state / f"run-{n}").touch()
if n:  # a refresh: wait (generously) for the event loop to show it is still running
    end = time.monotonic() + 10
    while not (state / "loop-ran").exists() and time.monotonic() < end:
        time.sleep(0.02)
    (state / f"saw-{n}").write_text("loop ran" if (state / "loop-ran").exists() else "loop blocked")
expires = (datetime.now(timezone.utc) + timedelta(seconds=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",
                  "status": {"token": token, "expirationTimestamp": expires}}))
"""


def test_credentials_an_exec_plugin_refreshes_are_fetched_off_the_event_loop(
    sandbox: SandboxServer, kubeconfig: Path, catalog: Catalog, tmp_path: Path, k8s_view: Any
) -> None:
    """A kubeconfig whose token comes from an exec plugin (EKS, GKE) and expires: the client's
    hook runs the plugin again, a subprocess that may take seconds. The official client ran that
    hook in its threads; the service proxy must not run it on the event loop, which every other
    command (and the worker's heartbeat) shares. The plugin here waits for a task on the loop to
    run: on the loop, it would wait in vain."""
    state = tmp_path / "plugin"
    state.mkdir()
    (tmp_path / "plugin.py").write_text(EXEC_PLUGIN)
    config = yaml.safe_load(kubeconfig.read_text())
    token = config["users"][0]["user"]["token"]
    config["users"][0]["user"] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": sys.executable,
            "args": [str(tmp_path / "plugin.py"), str(state), token],
        }
    }
    exec_kubeconfig = tmp_path / "exec.kubeconfig"
    exec_kubeconfig.write_text(yaml.safe_dump(config))
    kube = Kube.connect(catalog.namespace, kubeconfig=str(exec_kubeconfig), timeout=15)
    assert [p.name for p in state.glob("run-*")] == ["run-0"], "the plugin ran once, at connect"
    port = catalog.service(SERVICE).port

    async def probe() -> tuple[int, str]:
        async def loop_runs() -> None:
            (state / "loop-ran").touch()

        ticker = asyncio.ensure_future(loop_runs())
        answer = await kube.proxy_get(f"{SERVICE}-blue", port, "/health", timeout=15)
        await ticker
        return answer

    status, _ = _run(kube, probe())
    assert status == 200
    assert (state / "saw-1").read_text() == "loop ran"


# --- cancellation: a probe cancelled as a connection comes free -------------------------------------


@pytest.mark.parametrize("depth", range(6))
def test_a_probe_cancelled_as_its_turn_comes_ends_cancelled(depth: int) -> None:
    """One connection, held by a request to a black hole; a second waits for it. The holder is
    cancelled (the slot comes free) and, a few loop turns later, so is the waiter: whichever
    turn the cancel lands on, the waiter ends cancelled, and the slot is free for the next
    probe. (Python 3.11's `wait_for` returned the slot instead, swallowing the cancel, when it
    landed between the slot's hand-over and the waiter's wake-up: the request went out anyway.)"""
    pool = GetPool(1)

    async def main() -> tuple[BaseException | None, tuple[int, bytes]]:
        loop = asyncio.get_running_loop()
        holder = asyncio.ensure_future(pool.get(hole.url + "/held", timeout=30))
        waiter = asyncio.ensure_future(pool.get(ok.url + "/waiting", timeout=5, start_by=loop.time() + 30))
        while hole.connections == 0:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)

        def later(n: int) -> None:
            if n:
                loop.call_soon(later, n - 1)
            else:
                waiter.cancel()

        holder.cancel()
        loop.call_soon(later, depth)
        await asyncio.gather(holder, return_exceptions=True)
        (outcome,) = await asyncio.gather(waiter, return_exceptions=True)
        try:
            after = await pool.get(ok.url + "/after", timeout=5, start_by=loop.time() + 2)
        finally:
            await pool.close()
        return (outcome if isinstance(outcome, BaseException) else None), after

    with BlackHole() as hole, ScriptedHttp(answer_json(200, b"{}")) as ok:
        outcome, after = asyncio.run(main())
        asked = [r.split(b" ")[1] for r in ok.requests]
    assert isinstance(outcome, asyncio.CancelledError), f"the waiter was not cancelled: {outcome!r}"
    assert asked[-1:] == [b"/after"], asked
    assert after == (200, b"{}")


# --- the API server stops between the ingresses and the rest ------------------------------------------


def test_an_api_server_that_stops_after_the_ingresses_fails_every_reader_and_every_probe_at_once(
    sandbox: SandboxServer, kubeconfig: Path, catalog: Catalog, k8s_view: Any
) -> None:
    kube = Kube.connect(catalog.namespace, kubeconfig=str(kubeconfig), timeout=3)

    async def main() -> list[Any]:
        read = kube.read_namespace()
        status = asyncio.ensure_future(kube.snapshot())  # `/payflow status` joins the same read
        # Awaited directly (not shielded): this task wakes before the read sends the rest, so
        # the API server is gone before the Services, deployments and pods are asked for.
        ingresses = await read.ingresses
        sandbox.stop()
        targets: list[Any] = [(n, live_color(catalog, n, ingresses, {})) for n in catalog.services]
        probing = asyncio.ensure_future(probe_many(catalog, kube, targets))
        return list(await asyncio.gather(read.snapshot, status, probing, return_exceptions=True))

    started = time.monotonic()
    snapshot, status, probes = _run(kube, main())
    assert time.monotonic() - started < 10, "one deadline, not a hang"
    assert isinstance(snapshot, Unreachable) and str(snapshot).startswith("Kubernetes API not reachable")
    assert isinstance(status, Unreachable) and str(status) == str(snapshot)
    for p in probes:
        assert p.ran and not p.ok and p.summary.startswith("/health no answer: Kubernetes API not reachable")
