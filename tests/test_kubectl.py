"""The operations guide's kubectl commands against the sandbox: a real client that no one here
wrote, over TLS verified with the kubeconfig's CA, with watches and server-side Tables.

Skipped (with the reason) where kubectl is not installed.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from sandbox.cluster import Cluster
from sandbox.k8s_api import SandboxServer
from sandbox.local import wait_until

pytestmark = pytest.mark.skipif(
    shutil.which("kubectl") is None,
    reason="kubectl is not on this machine (install it to run the operations guide against the sandbox)",
)

NS = "payflow"
# The guide's traffic switch, verbatim: without pathType, which a real API server rejects.
GUIDE_PATCH = (
    '{"spec":{"rules":[{"host":"payflow.com","http":{"paths":[{"path":"/","backend":'
    '{"service":{"name":"api-gateway-green","port":{"number":3000}}}}]}}]}}'
)
FIXED_PATCH = GUIDE_PATCH.replace('"path":"/",', '"path":"/","pathType":"Prefix",')


class Kubectl:
    def __init__(self, kubeconfig: Path, home: Path) -> None:
        dropped = ("KUBECONFIG", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY")
        self.env = {k: v for k, v in os.environ.items() if k not in dropped}
        self.env.update(KUBECONFIG=str(kubeconfig), HOME=str(home))  # its discovery cache goes to HOME
        self.home = home

    def __call__(
        self, command: str, *, ok: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """One guide line (without the leading `kubectl`), with a deadline."""
        done = subprocess.run(
            ["kubectl", *shlex.split(command)],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if ok:
            assert done.returncode == 0, f"kubectl {command}: {done.stderr}"
        return done

    def popen(self, command: str) -> subprocess.Popen[str]:
        """A long-running kubectl whose stdout the test reads; stderr goes to a file, as a pipe
        nobody reads would block kubectl once full."""
        with (self.home / "kubectl-popen.stderr").open("a") as stderr:
            return subprocess.Popen(
                ["kubectl", *shlex.split(command)],
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )


@pytest.fixture
def kubectl(sandbox: SandboxServer, k8s_view, tmp_path: Path) -> Kubectl:  # k8s_view: seeded and settled
    return Kubectl(sandbox.write_kubeconfig(tmp_path / "kubeconfig"), tmp_path)


def _backend(cluster: Cluster) -> str:
    ingress = cluster.get("Ingress", NS, "payflow-ingress")
    return ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]


def _columns(table: str) -> tuple[list[str], dict[str, list[str]]]:
    head, *rows = table.strip().splitlines()
    return head.split(), {r.split()[0]: r.split()[1:] for r in rows}


def test_the_guides_blue_green_steps(kubectl: Kubectl, cluster: Cluster):
    # Step 1: deploy to green
    out = kubectl("set image deployment/api-gateway-green api-gateway=payflow/api-gateway:v1.2.3 -n payflow")
    assert out.stdout.strip() == "deployment.apps/api-gateway-green image updated"
    assert (
        "v1.2.3"
        in cluster.get("Deployment", NS, "api-gateway-green")["spec"]["template"]["spec"]["containers"][0][
            "image"
        ]
    )
    assert kubectl("scale deployment/api-gateway-green --replicas=3 -n payflow").stdout.strip() == (
        "deployment.apps/api-gateway-green scaled"
    )
    rollout = kubectl("rollout status deployment/api-gateway-green -n payflow --timeout=30s")
    assert rollout.stdout.strip().endswith('deployment "api-gateway-green" successfully rolled out')
    assert rollout.stderr == ""  # no "falling back" warning: the watch was served
    deployments = kubectl("get deployments -n payflow").stdout
    header, rows = _columns(deployments)
    assert header == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert rows["api-gateway-green"][:3] == ["3/3", "3", "3"] and rows["api-gateway-blue"][:3] == [
        "3/3",
        "3",
        "3",
    ]

    # Step 3: switch traffic. The guide's line verbatim is refused like a real API server refuses it ...
    writes = cluster.writes("Ingress", NS, "payflow-ingress")
    refused = kubectl(f"patch ingress payflow-ingress -n payflow -p '{GUIDE_PATCH}'", ok=False)
    assert refused.returncode != 0
    assert (
        'spec.rules[0].http.paths[0].pathType: Unsupported value: supported values: "Exact"' in refused.stderr
    )
    assert (
        _backend(cluster) == "api-gateway-blue" and cluster.writes("Ingress", NS, "payflow-ingress") == writes
    )
    # ... and goes through with pathType
    assert "patched" in kubectl(f"patch ingress payflow-ingress -n payflow -p '{FIXED_PATCH}'").stdout
    assert _backend(cluster) == "api-gateway-green"

    # Step 4: monitor (the guide follows with -f; the last lines are what a test can wait for)
    lines = kubectl("logs deployment/api-gateway-green -n payflow --tail=5").stdout.splitlines()
    assert len(lines) == 5 and all("[api-gateway v1.2.3]" in line for line in lines)

    # Step 5: scale down blue
    kubectl("scale deployment/api-gateway-blue --replicas=0 -n payflow")
    assert cluster.get("Deployment", NS, "api-gateway-blue")["spec"]["replicas"] == 0


def test_troubleshooting_commands(kubectl: Kubectl, cluster: Cluster):
    header, rows = _columns(kubectl("get pods -n payflow").stdout)
    assert header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    pod = next(name for name in rows if name.startswith("api-gateway-blue-"))
    assert rows[pod][:3] == ["1/1", "Running", "0"]
    described = kubectl(f"describe pod {pod} -n payflow").stdout
    assert (
        f"Name:             {pod}" in described
        and "Controlled By:  ReplicaSet/api-gateway-blue-" in described
    )
    assert "Ready:          True" in described
    assert "Controlled By" in kubectl("describe pods -n payflow").stdout
    assert "[api-gateway v1.0.0]" in kubectl(f"logs {pod} -n payflow").stdout
    services = kubectl("get services -n payflow").stdout
    assert _columns(services)[1]["api-gateway-blue"][:1] == ["ClusterIP"] and "3000/TCP" in services
    nothing = kubectl("get pods -n payflow -l app=postgres")
    assert nothing.stdout == "" and nothing.stderr.strip() == "No resources found in payflow namespace."

    before = {p["metadata"]["name"] for p in cluster.list("Pod", NS, label_selector="app=wallet-service")}
    assert "restarted" in kubectl("rollout restart deployment/wallet-service-blue -n payflow").stdout
    kubectl("rollout status deployment/wallet-service-blue -n payflow --timeout=30s")
    after = {p["metadata"]["name"] for p in cluster.list("Pod", NS, label_selector="app=wallet-service")}
    assert len(after) == 3 and not before & after
    template = cluster.get("Deployment", NS, "wallet-service-blue")["spec"]["template"]
    assert "kubectl.kubernetes.io/restartedAt" in template["metadata"]["annotations"]


def test_get_watch_prints_each_change(kubectl: Kubectl, cluster: Cluster):
    watcher = kubectl.popen("get deployments -n payflow -w")
    try:
        assert watcher.stdout is not None
        assert watcher.stdout.readline().split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
        for _ in range(8):  # the current state first
            watcher.stdout.readline()
        cluster.patch("Deployment", NS, "auth-service-green", {"spec": {"replicas": 2}})
        stdout = watcher.stdout
        # readline blocks only until kubectl prints the next change
        shown = lambda: stdout.readline().split()[:2] == ["auth-service-green", "2/2"]  # noqa: E731
        wait_until(shown, 10, "kubectl get -w to show auth-service-green 2/2", poll=0)
    finally:
        watcher.terminate()
        watcher.wait(5)


def test_a_stale_scale_replace_is_409(kubectl: Kubectl, cluster: Cluster):
    scale = json.loads(
        kubectl("get deployment/api-gateway-blue -n payflow --subresource=scale -o json").stdout
    )
    cluster.patch("Deployment", NS, "api-gateway-blue", {"spec": {"replicas": 4}})  # someone else's write
    scale["spec"]["replicas"] = 6
    path = f"/apis/apps/v1/namespaces/{NS}/deployments/api-gateway-blue/scale"
    stale = kubectl(f"replace --raw {path} -f -", stdin=json.dumps(scale), ok=False)
    assert stale.returncode != 0
    assert "the object has been modified; please apply your changes to the latest version" in stale.stderr
    assert cluster.get("Deployment", NS, "api-gateway-blue")["spec"]["replicas"] == 4
