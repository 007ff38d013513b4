"""ConfigMaps on the sandbox: served like any core kind (kubectl, the `kubernetes` client), seeded
like a real PayFlow namespace -- including values that must never reach chat as they are -- and
bad ones refused with kube-apiserver's messages, changing nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from sandbox.cluster import Cluster
from sandbox.k8s_api import SandboxServer
from tests.test_kubectl import Kubectl

NS = "payflow"
T = 5


@pytest.fixture
def core(kubeconfig: Path, k8s_view) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(k8s_config.new_client_from_config(config_file=str(kubeconfig)))


def test_the_seeded_config_maps_hold_what_a_namespace_accumulates(core):
    maps = {c.metadata.name: c for c in core.list_namespaced_config_map(NS, _request_timeout=T).items}
    assert {"payflow-config", "wallet-service-settlement", "legacy-reconciliation"} <= set(maps)
    assert maps["payflow-config"].data["POSTGRES_HOST"] == "postgres.payflow.svc"
    assert "4111 1111 1111 1111" in maps["wallet-service-settlement"].data["settlement.yaml"]
    assert maps["legacy-reconciliation"].data["DB_PASSWORD"]
    assert all(c.metadata.generation is None and c.metadata.uid for c in maps.values())


def test_config_maps_are_created_updated_and_bad_ones_refused(core, cluster: Cluster):
    before = cluster.resource_version
    bad = {"metadata": {"name": "odd"}, "data": {"bad key": "x"}}
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(NS, bad, _request_timeout=T)
    assert err.value.status == 422
    assert json.loads(err.value.body)["message"].startswith(
        'ConfigMap "odd" is invalid: data[bad key]: Invalid value: "bad key": a valid config key'
    )
    big = {"metadata": {"name": "big"}, "data": {"blob": "x" * (1024 * 1024 + 1)}}
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(NS, big, _request_timeout=T)
    assert (
        err.value.status == 422 and "must have at most 1048576 bytes" in json.loads(err.value.body)["message"]
    )
    assert (
        cluster.resource_version == before
        and cluster.list("ConfigMap", NS, field_selector="metadata.name=odd") == []
    )

    made = core.create_namespaced_config_map(
        NS, {"metadata": {"name": "feature-flags"}, "data": {"NEW_CHECKOUT": "off"}}, _request_timeout=T
    )
    patched = core.patch_namespaced_config_map(
        "feature-flags", NS, {"data": {"NEW_CHECKOUT": "on"}}, _request_timeout=T
    )
    assert patched.data == {"NEW_CHECKOUT": "on"}
    assert int(patched.metadata.resource_version) > int(made.metadata.resource_version)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on this machine")
def test_kubectl_get_configmaps(sandbox: SandboxServer, k8s_view, tmp_path: Path):
    kubectl = Kubectl(sandbox.write_kubeconfig(tmp_path / "kubeconfig"), tmp_path)
    header, *rows = kubectl("get configmaps -n payflow").stdout.strip().splitlines()
    assert header.split() == ["NAME", "DATA", "AGE"]
    cells = {r.split()[0]: r.split()[1] for r in rows}
    assert cells["payflow-config"] == "6" and cells["legacy-reconciliation"] == "4"
    shown = json.loads(kubectl("get cm payflow-config -n payflow -o json").stdout)
    assert shown["kind"] == "ConfigMap" and shown["data"]["CURRENCY"] == "EUR"
