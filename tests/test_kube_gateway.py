"""The Kubernetes gateway against the sandbox API server: our types, conflicts, errors."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from bot.gateways import kube_http
from bot.gateways.kube import Kube
from bot.gateways.kube_objects import Conflict, KubeError, NotFound, Unreachable


@pytest.fixture
def kube(kubeconfig, k8s_view):
    gateway = Kube.connect("payflow", kubeconfig=str(kubeconfig), timeout=3)
    yield gateway
    gateway.close()


def test_snapshot_reads_the_namespace(kube):
    snap = asyncio.run(kube.snapshot())
    blue = snap.deployments["api-gateway-blue"]
    assert (blue.desired, blue.ready, blue.tag, blue.rollout_complete) == (3, 3, "v1.0.0", True)
    assert sum(blue.owns(p) for p in snap.pods) == 3
    assert snap.ingresses["payflow-ingress"].backend("payflow.com", "/") == "api-gateway-blue"
    assert snap.ingresses["payflow-ingress"].backend("payflow.com", "/wallet") == "wallet-service-blue"


def test_concurrent_snapshots_share_one_read(kube, sandbox):
    async def go():
        return await asyncio.gather(*(kube.snapshot() for _ in range(10)))

    snaps = asyncio.run(go())
    assert all(s is snaps[0] for s in snaps)


def test_scale_write_is_conditional_on_the_replicas_read(kube, k8s_view):
    async def go():
        read = await kube.read_scale("api-gateway-blue")
        await kube.write_scale("api-gateway-blue", 4, expected=read.replicas)
        with pytest.raises(Conflict):  # someone else's write in between: replicas are no longer 3
            await kube.write_scale("api-gateway-blue", 9, expected=read.replicas)
        # status churn during the rollout of the first write does not get in the way
        await kube.write_scale("api-gateway-blue", 5, expected=4)

    asyncio.run(go())
    assert k8s_view.replicas("api-gateway-blue") == 5


def test_errors_are_typed(kube, sandbox, kubeconfig):
    with pytest.raises(NotFound):
        asyncio.run(kube.read_scale("no-such-deployment"))
    sandbox.stop()
    with pytest.raises(Unreachable):
        asyncio.run(kube.deployments())


def test_wrong_token_is_refused(kubeconfig, k8s_view):
    kubeconfig.write_text(kubeconfig.read_text().replace("token:", "token: x", 1))
    gateway = Kube.connect("payflow", kubeconfig=str(kubeconfig), timeout=3)
    try:
        with pytest.raises(KubeError, match="refused the bot's credentials \\(401\\)"):
            asyncio.run(gateway.deployments())
    finally:
        gateway.close()


# --- the service proxy (aiohttp on the loop: /payflow health's thousand GETs) -----------------


def _proxy_get(gateway: Kube, service: str, port: int = 8080, path: str = "/health") -> tuple[int, str]:
    async def once() -> tuple[int, str]:
        try:
            return await gateway.proxy_get(service, port, path, timeout=2)
        finally:
            await gateway.aclose()

    return asyncio.run(once())


def test_proxy_get_answers_what_the_backend_says(kube, catalog):
    port = catalog.service("api-gateway").port
    status, body = _proxy_get(kube, "api-gateway-blue", port)
    assert status == 200 and json.loads(body)["version"] == "v1.0.0"


def test_proxy_get_says_the_api_servers_own_refusal_in_words(kube):
    assert _proxy_get(kube, "no-such-service") == (
        404,
        'Kubernetes answered 404: services "no-such-service" not found',
    )


def test_proxy_get_with_a_wrong_token_is_refused_and_names_the_credentials(kubeconfig, k8s_view):
    kubeconfig.write_text(kubeconfig.read_text().replace("token:", "token: x", 1))
    gateway = Kube.connect("payflow", kubeconfig=str(kubeconfig), timeout=3)
    assert _proxy_get(gateway, "api-gateway-blue") == (401, "Kubernetes refused the bot's credentials (401)")
    gateway.close()


def test_proxy_get_follows_a_rotated_token(kube, sandbox, kubeconfig, catalog):
    """The client's refresh hook (an in-cluster token is re-read every minute) is asked again
    once the cached headers are a second old: a rotated token is used, not the first one."""
    port = catalog.service("api-gateway").port
    assert _proxy_get(kube, "api-gateway-blue", port)[0] == 200

    def rotated(configuration) -> None:  # what the in-cluster loader's hook does, new token
        configuration.api_key["BearerToken"] = "Bearer a-rotated-token-the-sandbox-never-issued"

    kube._api.configuration.refresh_api_key_hook = rotated
    time.sleep(kube_http.HEADERS_FOR)
    assert _proxy_get(kube, "api-gateway-blue", port)[0] == 401


def test_proxy_get_of_a_stopped_api_server_is_unreachable(kube, sandbox):
    sandbox.stop()
    with pytest.raises(Unreachable, match="Kubernetes API not reachable"):
        _proxy_get(kube, "api-gateway-blue")
