"""NetworkPolicies on the sandbox: served like any kind (kubectl, the `kubernetes` client, watch,
Tables) and seeded like a real PayFlow namespace, with the catalog's last service deliberately
left uncovered so a coverage report has something to find."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from bot.config.catalog import Catalog
from sandbox.cluster import Cluster
from sandbox.k8s_api import SandboxServer
from sandbox.seed import seed, with_services
from tests.test_kubectl import Kubectl

NS = "payflow"
T = 5


@pytest.fixture
def net(kubeconfig: Path, k8s_view) -> k8s.NetworkingV1Api:  # k8s_view: seeded and settled
    return k8s.NetworkingV1Api(k8s_config.new_client_from_config(config_file=str(kubeconfig)))


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector against a pod's labels (matchLabels and the In/Exists expressions seeded)."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        present = expr["key"] in labels
        if expr["operator"] == "In" and labels.get(expr["key"]) not in expr["values"]:
            return False
        if expr["operator"] == "Exists" and not present:
            return False
    return True


def coverage(cluster: Cluster, catalog: Catalog) -> dict[str, set[str]]:
    """Per service, the directions its live pods get a policy of their own for (the default deny
    selects every pod and is not an allow)."""
    policies = [p for p in cluster.list("NetworkPolicy", NS) if p["spec"]["podSelector"]]
    out: dict[str, set[str]] = {}
    for service in catalog.services:
        pods = cluster.list("Pod", NS, label_selector=f"app={service}")
        assert pods, f"no pods of {service}"
        out[service] = {
            kind
            for pod in pods
            for p in policies
            if _selects(p["spec"]["podSelector"], pod["metadata"]["labels"])
            for kind in p["spec"]["policyTypes"]
        }
    return out


def test_the_seeded_policies_leave_exactly_the_last_service_uncovered(
    cluster: Cluster, catalog: Catalog, net
):
    names = {p.metadata.name for p in net.list_namespaced_network_policy(NS, _request_timeout=T).items}
    assert "default-deny-ingress" in names
    deny = net.read_namespaced_network_policy("default-deny-ingress", NS, _request_timeout=T)
    assert deny.spec.pod_selector.match_labels is None and deny.spec.policy_types == ["Ingress"]
    *covered, last = catalog.services
    assert coverage(cluster, catalog) == {**{s: {"Ingress", "Egress"} for s in covered}, last: set()}
    auth = net.read_namespaced_network_policy("auth-service-allow-ingress", NS, _request_timeout=T)
    assert auth.spec.ingress[0].ports[0].port == catalog.service("auth-service").port
    assert {"app": "api-gateway"} in [
        p.pod_selector.match_labels for p in auth.spec.ingress[0]._from if p.pod_selector
    ]


def test_a_grown_catalog_leaves_its_own_last_service_uncovered(catalog: Catalog):
    grown = with_services(catalog, 30)
    cluster = seed(Cluster(ready_delay=0.0, env={}), grown)
    cluster.reconcile()
    policies = cluster.list("NetworkPolicy", NS)
    assert len(policies) == 1 + 2 * 29 + 1  # default deny, two per covered service, the db jobs' egress
    result = coverage(cluster, grown)
    assert result.pop("svc-0026") == set() and set(map(frozenset, result.values())) == {
        frozenset({"Ingress", "Egress"})
    }


def test_policies_are_created_watched_and_deleted_and_bad_ones_refused(net, cluster: Cluster):
    before = cluster.resource_version
    bad = {"metadata": {"name": "typo"}, "spec": {"podSelector": {}, "policyTypes": ["Ingres"]}}
    with pytest.raises(ApiException) as err:
        net.create_namespaced_network_policy(NS, bad, _request_timeout=T)
    assert err.value.status == 422
    assert json.loads(err.value.body)["message"] == (
        'NetworkPolicy.networking.k8s.io "typo" is invalid: spec.policyTypes[0]: '
        'Unsupported value: "Ingres": supported values: "Egress", "Ingress"'
    )
    assert (
        cluster.resource_version == before
        and cluster.list("NetworkPolicy", NS, field_selector="metadata.name=typo") == []
    )

    w = k8s_watch.Watch()
    seen: list[tuple[str, str]] = []
    body = {
        "metadata": {"name": "allow-metrics"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "api-gateway"}},
            "ingress": [{"ports": [{"port": 9090}]}],
        },
    }
    created = net.create_namespaced_network_policy(NS, body, _request_timeout=T)
    assert created.spec.policy_types == ["Ingress"] and created.spec.ingress[0].ports[0].protocol == "TCP"
    net.delete_namespaced_network_policy("allow-metrics", NS, _request_timeout=T)
    for event in w.stream(
        net.list_namespaced_network_policy,
        NS,
        field_selector="metadata.name=allow-metrics",
        resource_version=created.metadata.resource_version,
        timeout_seconds=5,
        _request_timeout=10,
    ):
        seen.append((event["type"], event["object"].metadata.name))
        w.stop()
    assert seen == [("DELETED", "allow-metrics")]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on this machine")
def test_kubectl_get_networkpolicies(sandbox: SandboxServer, k8s_view, tmp_path: Path):
    kubectl = Kubectl(sandbox.write_kubeconfig(tmp_path / "kubeconfig"), tmp_path)
    header, *rows = kubectl("get networkpolicies -n payflow").stdout.strip().splitlines()
    assert header.split() == ["NAME", "POD-SELECTOR", "AGE"]
    cells = {r.split()[0]: r.split()[1] for r in rows}
    assert (
        cells["default-deny-ingress"] == "<none>"
        and cells["wallet-service-allow-egress"] == "app=wallet-service"
    )
    assert "transaction-service-allow-ingress" not in cells
    shown = json.loads(kubectl("get netpol api-gateway-allow-ingress -n payflow -o json").stdout)
    assert shown["kind"] == "NetworkPolicy" and shown["spec"]["podSelector"] == {
        "matchLabels": {"app": "api-gateway"}
    }
