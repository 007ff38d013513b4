"""The sandbox at PayFlow-at-scale sizes (issue 9): a catalog grown to 1,000 services seeds, serves
and scrapes completely; `payflow-bot sandbox --services N` hands out that catalog. Timings are
in bench/, not here: these tests prove completeness and the bad-input answers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bot.config.catalog import Catalog, load_catalog
from sandbox.cluster import Cluster
from sandbox.local import ROOT, wait_until
from sandbox.seed import seed, wait_until_ready, with_services

NS = "payflow"


def test_a_thousand_services_seed_serve_and_scrape_completely(catalog: Catalog):
    grown = with_services(catalog, 1000)
    assert len(grown.services) == 1000 and list(grown.services)[:4] == list(catalog.services)
    cluster = seed(Cluster(ready_delay=0.0, env={}), grown)
    wait_until_ready(cluster, grown, timeout=30)
    assert len(cluster.list("Deployment", NS)) == 2000
    [ingress] = cluster.list("Ingress", NS)
    paths = {p["path"]: p["backend"]["service"]["name"] for p in ingress["spec"]["rules"][0]["http"]["paths"]}
    assert paths["/svc-0996"] == "svc-0996-blue" and len(paths) == 1000

    cluster.traffic.advance(cluster.now())
    cluster.traffic.advance(cluster.now() + 10)
    text = cluster.traffic.exposition()
    served = {
        line.split('service="', 1)[1].split('"', 1)[0]
        for line in text.splitlines()
        if line.startswith("http_requests_total{") and 'color="blue",status="200"' in line
    }
    assert served == set(grown.services)


def test_growing_below_the_catalog_is_refused(catalog: Catalog):
    try:
        with_services(catalog, 3)
    except ValueError as exc:
        assert "already has 4 services" in str(exc)
    else:
        raise AssertionError("3 services accepted for a catalog of 4")


def _sandbox_cli(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    command = [
        sys.executable,
        "-m",
        "bot.shell.cli",
        "sandbox",
        "--kubeconfig",
        str(tmp_path / "kubeconfig"),
        *args,
    ]
    with (tmp_path / "sandbox.stderr").open("w") as stderr:  # a file: an unread pipe would fill up
        return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True)


def test_the_sandbox_command_writes_the_grown_catalog(tmp_path: Path):
    proc = _sandbox_cli(tmp_path, "--services", "12")
    try:
        wait_until((tmp_path / "kubeconfig").exists, 30, "the sandbox's kubeconfig")
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        catalog_file = tmp_path / "payflow-12-services.yaml"
        assert f"export PAYFLOW_CONFIG={catalog_file}" in lines[1]
        assert f"export KUBECONFIG={tmp_path / 'kubeconfig'}" in lines[2]
        assert len(load_catalog(catalog_file).services) == 12
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_sandbox_command_refuses_too_few_services(tmp_path: Path):
    proc = _sandbox_cli(tmp_path, "--services", "2")
    proc.communicate(timeout=30)
    err = (tmp_path / "sandbox.stderr").read_text()
    assert proc.returncode == 2 and "--services: the catalog already has 4 services" in err
    assert not (tmp_path / "kubeconfig").exists()


def test_a_request_to_a_steady_thousand_services_costs_no_controller_work(catalog: Catalog):
    """The kubelet and the deployment controller work from queues like real controllers: once
    1,000 services are steady a request reconciles nothing, and what is touched still moves --
    a new image rolls out, a deleted pod is replaced, a relabelled pod leaves its service."""
    grown = with_services(catalog, 1000)
    cluster = seed(Cluster(ready_delay=0.0, env={}), grown)
    wait_until_ready(cluster, grown, timeout=30)
    rv = cluster.resource_version
    for _ in range(20):
        cluster.get("Deployment", NS, "svc-0500-blue")
    assert cluster.controller.pending == set() and cluster.kubelet.pending == set()
    assert cluster.resource_version == rv  # and nothing was rewritten
    old_pods = {p["metadata"]["name"] for p in cluster.list("Pod", NS, "app=svc-0500,color=blue")}

    cluster.patch(
        "Deployment",
        NS,
        "svc-0500-blue",
        {"spec": {"template": {"metadata": {"annotations": {"payflow/restarted": "now"}}}}},
    )
    assert cluster.controller.pending <= {(NS, "svc-0500-blue")}
    victim = sorted(p["metadata"]["name"] for p in cluster.list("Pod", NS, "app=svc-0600,color=blue"))[0]
    cluster.delete("Pod", NS, victim)

    def settled() -> bool:
        dep = cluster.get("Deployment", NS, "svc-0500-blue")
        other = cluster.get("Deployment", NS, "svc-0600-blue")
        want = dep["spec"]["replicas"]
        return (
            dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
            and (dep.get("status") or {}).get("updatedReplicas") == want
            and (dep.get("status") or {}).get("availableReplicas") == want
            and (other.get("status") or {}).get("availableReplicas") == other["spec"]["replicas"]
        )

    wait_until(settled, 30, "the rollout and the replacement pod")
    new_pods = {p["metadata"]["name"] for p in cluster.list("Pod", NS, "app=svc-0500,color=blue")}
    assert new_pods and not new_pods & old_pods
    replaced = {p["metadata"]["name"] for p in cluster.list("Pod", NS, "app=svc-0600,color=blue")}
    assert (
        victim not in replaced
        and len(replaced) == cluster.get("Deployment", NS, "svc-0600-blue")["spec"]["replicas"]
    )
    assert cluster.controller.pending == set() and cluster.kubelet.pending == set()

    code, body = cluster.health(NS, "svc-0700-blue")
    assert code == 200
    pods = sorted(p["metadata"]["name"] for p in cluster.list("Pod", NS, "app=svc-0700,color=blue"))
    for pod in pods:
        cluster.patch("Pod", NS, pod, {"metadata": {"labels": {"app": "moved"}}})
    code, body = cluster.health(NS, "svc-0700-blue")
    assert code == 503 and "no pods match selector" in body["reason"]
