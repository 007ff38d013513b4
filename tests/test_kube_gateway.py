"""The Kubernetes gateway against the sandbox API server: our types, conflicts, errors."""

from __future__ import annotations

import asyncio

import pytest

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
