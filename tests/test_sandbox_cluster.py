"""The sandbox cluster through the real ``kubernetes`` client over HTTP.

If these pass, code that works against the sandbox is exercising real API-server semantics:
optimistic concurrency, the three patch dialects, rolling updates and stuck rollouts.
"""

from __future__ import annotations

import http.client
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from sandbox.cluster import ApiError, Cluster, apply_json_patch, parse_label_selector, strategic_merge_patch
from sandbox.k8s_api import SandboxServer
from sandbox.local import wait_until

NS = "payflow"
IMAGE = "payflow/api-gateway:v1.0.0"
T = 5  # _request_timeout for every client call
STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
POD_NAME = re.compile(r"^api-gateway-blue-[bcdfghjklmnpqrstvwxz2456789]{10}-[a-z]{5}$")


def _labels(color: str) -> dict[str, str]:
    return {"app": "api-gateway", "color": color}


def _deployment(name: str, labels: dict[str, str], image: str = IMAGE, replicas: int = 3) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": 600,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {"name": "api-gateway", "image": image, "ports": [{"containerPort": 3000}]}
                    ]
                },
            },
        },
    }


def _service(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"selector": labels, "ports": [{"port": 3000, "targetPort": 3000}]},
    }


def _ingress() -> dict[str, Any]:
    backend = {"service": {"name": "api-gateway-blue", "port": {"number": 3000}}}
    path = {"path": "/", "pathType": "Prefix", "backend": backend}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "payflow-ingress", "namespace": NS},
        "spec": {"rules": [{"host": "payflow.com", "http": {"paths": [path]}}]},
    }


@dataclass
class Kube:
    api: k8s.ApiClient
    apps: k8s.AppsV1Api
    core: k8s.CoreV1Api
    net: k8s.NetworkingV1Api

    @classmethod
    def connect(cls, kubeconfig: Path) -> Kube:
        api = k8s_config.new_client_from_config(config_file=str(kubeconfig))
        return cls(api, k8s.AppsV1Api(api), k8s.CoreV1Api(api), k8s.NetworkingV1Api(api))

    def deployment(self, name: str) -> Any:
        return self.apps.read_namespaced_deployment(name, NS, _request_timeout=T)

    def pods(self, selector: str) -> list[Any]:
        return self.core.list_namespaced_pod(NS, label_selector=selector, _request_timeout=T).items

    def ingress(self) -> Any:
        return self.net.read_namespaced_ingress("payflow-ingress", NS, _request_timeout=T)

    def rolled_out(self, name: str, color: str) -> Any:
        """The deployment once the rollout is complete and no old pod is left, else None."""
        dep = self.deployment(name)
        st = dep.status
        if st.observed_generation != dep.metadata.generation:
            return None
        if (
            not st.updated_replicas
            == st.ready_replicas
            == st.available_replicas
            == st.replicas
            == dep.spec.replicas
        ):
            return None
        pods = self.pods(f"color={color}")
        images = {c.image for c in dep.spec.template.spec.containers}
        if len(pods) != dep.spec.replicas or any(
            {c.image for c in p.spec.containers} != images for p in pods
        ):
            return None
        return dep

    def progressing(self, name: str) -> Any:
        conds = self.deployment(name).status.conditions or []
        return next(c for c in conds if c.type == "Progressing")


@pytest.fixture
def sim() -> Cluster:
    cluster = Cluster(ready_delay=0.1, env={}, seed=7)
    for color in ("blue", "green"):
        name = f"api-gateway-{color}"
        cluster.create("Deployment", _deployment(name, _labels(color)))
        cluster.create("Service", _service(name, _labels(color)))
    cluster.create("Ingress", _ingress())
    return cluster


@pytest.fixture
def server(sim: Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxServer]:
    # The client honours *_PROXY from the environment, loopback included.
    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    with SandboxServer(sim) as srv:
        yield srv


@pytest.fixture
def kube(server: SandboxServer, tmp_path: Path) -> Iterator[Kube]:
    view = Kube.connect(server.write_kubeconfig(tmp_path / "sandbox.kubeconfig", namespace=NS))
    for color in ("blue", "green"):
        wait_until(lambda c=color: view.rolled_out(f"api-gateway-{c}", c), 10, f"{color} to settle")
    yield view
    view.api.close()


def raw(
    server: SandboxServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = "",
    content_type: str = "application/json",
) -> tuple[int, Any]:
    """A plain HTTP call with the server token ("" = the right one, None = no header)."""
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token or server.token}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(server.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=T, context=server.ssl_context()) as resp:
            payload, status, ctype = resp.read(), resp.status, resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        payload, status, ctype = err.read(), err.code, err.headers.get("Content-Type", "")
    return status, json.loads(payload) if "json" in ctype else payload.decode()


def status_body(exc: ApiException) -> dict[str, Any]:
    body = json.loads(exc.body)
    assert body["kind"] == "Status" and body["status"] == "Failure" and body["code"] == exc.status
    return body


# ----------------------------------------------------------------------------------------------- reads


def test_lists_and_gets_with_label_selectors(kube: Kube) -> None:
    def names(selector: str) -> list[str]:
        deps = kube.apps.list_namespaced_deployment(NS, label_selector=selector, _request_timeout=T)
        return sorted(d.metadata.name for d in deps.items)

    assert names("app=api-gateway,color=blue") == ["api-gateway-blue"]
    assert names("color in (blue,green)") == ["api-gateway-blue", "api-gateway-green"]
    assert names("color!=blue") == ["api-gateway-green"]
    assert names("app") == ["api-gateway-blue", "api-gateway-green"]
    assert names("!app") == []
    everywhere = kube.apps.list_deployment_for_all_namespaces(_request_timeout=T)
    assert len(everywhere.items) == 2 and everywhere.metadata.resource_version.isdigit()

    blue = kube.deployment("api-gateway-blue")
    assert blue.metadata.resource_version.isdigit() and blue.metadata.uid and blue.metadata.generation == 1
    assert blue.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    assert blue.spec.strategy.type == "RollingUpdate"
    pods = kube.pods("app=api-gateway,color=blue")
    assert len(pods) == 3 and all(POD_NAME.match(p.metadata.name) for p in pods)
    pod = kube.core.read_namespaced_pod(pods[0].metadata.name, NS, _request_timeout=T)
    assert pod.status.phase == "Running"
    assert pod.metadata.labels["pod-template-hash"] in pod.metadata.name
    (cs,) = pod.status.container_statuses
    assert (cs.image, cs.ready, cs.restart_count, cs.state.running is not None) == (IMAGE, True, 0, True)
    assert kube.core.read_namespace(NS, _request_timeout=T).status.phase == "Active"
    assert NS in {n.metadata.name for n in kube.core.list_namespace(_request_timeout=T).items}
    assert {s.metadata.name for s in kube.core.list_namespaced_service(NS, _request_timeout=T).items} == {
        "api-gateway-blue",
        "api-gateway-green",
    }
    assert k8s.VersionApi(kube.api).get_code(_request_timeout=T).git_version.startswith("v1.")


def test_missing_objects_and_duplicates_are_kube_errors(kube: Kube) -> None:
    with pytest.raises(ApiException) as missing:
        kube.deployment("nope")
    assert missing.value.status == 404
    assert status_body(missing.value)["reason"] == "NotFound"
    with pytest.raises(ApiException) as dup:
        kube.apps.create_namespaced_deployment(
            NS, _deployment("api-gateway-blue", _labels("blue")), _request_timeout=T
        )
    assert (dup.value.status, status_body(dup.value)["reason"]) == (409, "AlreadyExists")
    with pytest.raises(ApiException) as invalid:
        bad = _deployment("mismatch", {"app": "x"})
        bad["spec"]["template"]["metadata"]["labels"] = {"app": "y"}
        kube.apps.create_namespaced_deployment(NS, bad, _request_timeout=T)
    assert (invalid.value.status, status_body(invalid.value)["reason"]) == (422, "Invalid")


# ------------------------------------------------------------------------------------------------ auth


def test_wrong_token_is_401_and_changes_nothing(
    kube: Kube, server: SandboxServer, sim: Cluster, tmp_path: Path
) -> None:
    config = yaml.safe_load(server.write_kubeconfig(tmp_path / "wrong.kubeconfig").read_text())
    config["users"][0]["user"]["token"] = "not-the-token"
    wrong = tmp_path / "wrong.kubeconfig"
    wrong.write_text(yaml.safe_dump(config))
    intruder = Kube.connect(wrong)
    before = kube.deployment("api-gateway-blue")
    try:
        with pytest.raises(ApiException) as exc:
            intruder.apps.patch_namespaced_deployment_scale(
                "api-gateway-blue", NS, {"spec": {"replicas": 9}}, _content_type=MERGE, _request_timeout=T
            )
        assert exc.value.status == 401
        assert status_body(exc.value)["reason"] == "Unauthorized"
        with pytest.raises(ApiException) as read:
            intruder.apps.list_namespaced_deployment(NS, _request_timeout=T)
        assert read.value.status == 401
    finally:
        intruder.api.close()
    after = kube.deployment("api-gateway-blue")
    assert (after.spec.replicas, after.metadata.generation) == (3, before.metadata.generation)
    assert sim.writes("Deployment", NS, "api-gateway-blue") == 1  # the fixture's create


def test_admin_endpoints_need_the_token(server: SandboxServer, sim: Cluster) -> None:
    assert raw(server, "GET", "/healthz", token=None) == (200, "ok")
    assert raw(server, "GET", "/sandbox/state", token=None)[0] == 401
    status, body = raw(server, "POST", "/sandbox/bad-images", {"image": "v9.9.9"}, token="wrong")
    assert (status, body["reason"]) == (401, "Unauthorized") and sim.bad_images == {}
    assert raw(server, "GET", "/version", token=None)[0] == 401

    status, state = raw(server, "GET", "/sandbox/state")
    assert status == 200 and {d["name"] for d in state["deployments"]} == {
        "api-gateway-blue",
        "api-gateway-green",
    }
    assert raw(server, "POST", "/sandbox/bad-images", {"image": "v6.6.6", "mode": "CrashLoopBackOff"}) == (
        200,
        {"bad_images": {"v6.6.6": "CrashLoopBackOff"}},
    )
    assert raw(server, "POST", "/sandbox/bad-images", {"image": "x", "mode": "Nope"})[0] == 400
    assert raw(server, "DELETE", "/sandbox/bad-images") == (200, {"bad_images": {}})
    assert raw(server, "POST", "/sandbox/settings", {"ready_delay": 0.05, "progress_deadline": 2}) == (
        200,
        {"ready_delay": 0.05, "progress_deadline": 2.0},
    )
    assert (sim.ready_delay, sim.progress_deadline) == (0.05, 2.0)
    query = "/sandbox/writes?kind=Ingress&namespace=payflow&name=payflow-ingress"
    assert raw(server, "GET", query) == (200, {"count": 1})


# ------------------------------------------------------------------------------- concurrency & patches


def test_stale_replace_is_409_and_changes_nothing(kube: Kube, sim: Cluster) -> None:
    stale = kube.deployment("api-gateway-blue")
    kube.apps.patch_namespaced_deployment(
        "api-gateway-blue",
        NS,
        {"metadata": {"labels": {"owner": "ops"}}},
        _content_type=MERGE,
        _request_timeout=T,
    )
    writes = sim.writes("Deployment", NS, "api-gateway-blue")
    stale.spec.replicas = 7
    with pytest.raises(ApiException) as exc:
        kube.apps.replace_namespaced_deployment("api-gateway-blue", NS, stale, _request_timeout=T)
    assert (exc.value.status, status_body(exc.value)["reason"]) == (409, "Conflict")
    now = kube.deployment("api-gateway-blue")
    assert (now.spec.replicas, now.metadata.labels["owner"]) == (3, "ops")
    assert sim.writes("Deployment", NS, "api-gateway-blue") == writes

    # A merge patch carrying a stale resourceVersion is refused the same way.
    with pytest.raises(ApiException) as patched:
        kube.apps.patch_namespaced_deployment(
            "api-gateway-blue",
            NS,
            {"metadata": {"resourceVersion": stale.metadata.resource_version}, "spec": {"replicas": 7}},
            _content_type=MERGE,
            _request_timeout=T,
        )
    assert patched.value.status == 409

    # With the current resourceVersion the same replace goes through.
    fresh = kube.deployment("api-gateway-blue")
    fresh.spec.replicas = 4
    replaced = kube.apps.replace_namespaced_deployment("api-gateway-blue", NS, fresh, _request_timeout=T)
    assert replaced.spec.replicas == 4 and replaced.metadata.generation == fresh.metadata.generation + 1
    assert int(replaced.metadata.resource_version) > int(fresh.metadata.resource_version)


def test_json_patch_test_op_guards_the_ingress_switch(
    kube: Kube, sim: Cluster, server: SandboxServer
) -> None:
    backend = "/spec/rules/0/http/paths/0/backend/service/name"
    writes = sim.writes("Ingress", NS, "payflow-ingress")
    rv = kube.ingress().metadata.resource_version

    wrong_guess = [
        {"op": "test", "path": backend, "value": "api-gateway-green"},
        {"op": "replace", "path": backend, "value": "api-gateway-blue"},
    ]
    with pytest.raises(ApiException) as exc:
        kube.net.patch_namespaced_ingress("payflow-ingress", NS, wrong_guess, _request_timeout=T)
    assert (exc.value.status, status_body(exc.value)["reason"]) == (422, "Invalid")
    assert kube.ingress().metadata.resource_version == rv
    assert sim.writes("Ingress", NS, "payflow-ingress") == writes

    # The typed client refuses to send a malformed JSON patch at all, so go around it.
    path = "/apis/networking.k8s.io/v1/namespaces/payflow/ingresses/payflow-ingress"
    for junk in (b"not json", b'{"op": "test"}'):
        status, body = raw(server, "PATCH", path, junk, content_type=JSON_PATCH)
        assert (status, body["reason"]) == (400, "BadRequest")

    switch = [
        {"op": "test", "path": backend, "value": "api-gateway-blue"},
        {"op": "replace", "path": backend, "value": "api-gateway-green"},
    ]
    done = kube.net.patch_namespaced_ingress("payflow-ingress", NS, switch, _request_timeout=T)
    assert done.spec.rules[0].http.paths[0].backend.service.name == "api-gateway-green"
    assert int(done.metadata.resource_version) > int(rv)
    assert sim.writes("Ingress", NS, "payflow-ingress") == writes + 1


def test_merge_patch_null_deletes_and_dry_run_writes_nothing(kube: Kube, sim: Cluster) -> None:
    patch = {"metadata": {"annotations": {"a": "1", "b": "2"}}}
    kube.net.patch_namespaced_ingress("payflow-ingress", NS, patch, _content_type=MERGE, _request_timeout=T)
    patch = {"metadata": {"annotations": {"a": None}}}
    out = kube.net.patch_namespaced_ingress(
        "payflow-ingress", NS, patch, _content_type=MERGE, _request_timeout=T
    )
    assert out.metadata.annotations == {"b": "2"}
    rv, writes = out.metadata.resource_version, sim.writes("Ingress", NS, "payflow-ingress")
    dry = kube.net.patch_namespaced_ingress(
        "payflow-ingress",
        NS,
        {"metadata": {"labels": {"x": "y"}}},
        _content_type=MERGE,
        dry_run="All",
        _request_timeout=T,
    )
    assert dry.metadata.labels == {"x": "y"}
    assert kube.ingress().metadata.resource_version == rv and not kube.ingress().metadata.labels
    assert sim.writes("Ingress", NS, "payflow-ingress") == writes


# -------------------------------------------------------------------------------------------- rollouts


def test_strategic_merge_of_an_image_rolls_the_pods(kube: Kube, sim: Cluster) -> None:
    old_pods = {p.metadata.name for p in kube.pods("color=blue")}
    patch = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "api-gateway", "image": "payflow/api-gateway:v1.1.0"}]}
            }
        }
    }
    out = kube.apps.patch_namespaced_deployment(
        "api-gateway-blue", NS, patch, _content_type=STRATEGIC, _request_timeout=T
    )
    (container,) = out.spec.template.spec.containers
    assert container.ports[0].container_port == 3000  # merged by name, not replaced
    assert out.metadata.generation == 2

    done = wait_until(lambda: kube.rolled_out("api-gateway-blue", "blue"), 10, "the v1.1.0 rollout")
    assert done.status.observed_generation == 2
    progressing = kube.progressing("api-gateway-blue")
    assert (progressing.status, progressing.reason) == ("True", "NewReplicaSetAvailable")
    pods = kube.pods("color=blue")
    assert not old_pods & {p.metadata.name for p in pods}
    assert {p.spec.containers[0].image for p in pods} == {"payflow/api-gateway:v1.1.0"}
    assert done.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    events = kube.core.list_namespaced_event(
        NS, field_selector="involvedObject.name=api-gateway-blue", _request_timeout=T
    ).items
    messages = [e.message for e in events if e.reason == "ScalingReplicaSet"]
    assert any(m.startswith("Scaled up replica set api-gateway-blue-") for m in messages)
    assert any(m.startswith("Scaled down replica set api-gateway-blue-") and "to 0" in m for m in messages)
    assert sim.writes("Deployment", NS, "api-gateway-blue") == 2


def test_old_pods_stay_until_new_ones_are_ready(kube: Kube, sim: Cluster) -> None:
    sim.set_bad_image("v2.0.0")  # new pods cannot pull: the rollout must stall, not drop capacity
    patch = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "api-gateway", "image": "payflow/api-gateway:v2.0.0"}]}
            }
        }
    }
    kube.apps.patch_namespaced_deployment(
        "api-gateway-blue", NS, patch, _content_type=STRATEGIC, _request_timeout=T
    )

    def stalled() -> list[Any] | None:
        pods = kube.pods("color=blue")
        reasons = [getattr(p.status.container_statuses[0].state.waiting, "reason", None) for p in pods]
        return pods if "ImagePullBackOff" in reasons else None

    pods = wait_until(stalled, 10, "the surge pod to stall")
    old = [p for p in pods if p.spec.containers[0].image == IMAGE]
    assert len(pods) == 4 and len(old) == 3  # maxSurge 25% of 3 rounds up to 1, maxUnavailable down to 0
    assert all(p.status.container_statuses[0].ready for p in old)
    status = kube.deployment("api-gateway-blue").status
    assert (status.updated_replicas, status.available_replicas, status.unavailable_replicas) == (1, 3, 1)

    sim.clear_bad_images()  # the image gets pushed after all: the kubelet's next pull succeeds
    wait_until(lambda: kube.rolled_out("api-gateway-blue", "blue"), 10, "the rollout to finish after the fix")


def test_scale_subresource_read_and_replace(kube: Kube, sim: Cluster) -> None:
    scale = kube.apps.read_namespaced_deployment_scale("api-gateway-green", NS, _request_timeout=T)
    assert (scale.spec.replicas, scale.status.replicas) == (3, 3)
    assert scale.status.selector == "app=api-gateway,color=green"
    stale_rv = scale.metadata.resource_version

    scale.spec.replicas = 5
    out = kube.apps.replace_namespaced_deployment_scale("api-gateway-green", NS, scale, _request_timeout=T)
    assert out.spec.replicas == 5 and out.metadata.resource_version != stale_rv
    assert kube.deployment("api-gateway-green").metadata.generation == 2
    wait_until(lambda: kube.rolled_out("api-gateway-green", "green"), 10, "5 green pods")
    assert len(kube.pods("color=green")) == 5

    stale = k8s.V1Scale(
        metadata=k8s.V1ObjectMeta(name="api-gateway-green", namespace=NS, resource_version=stale_rv),
        spec=k8s.V1ScaleSpec(replicas=1),
    )
    with pytest.raises(ApiException) as exc:
        kube.apps.replace_namespaced_deployment_scale("api-gateway-green", NS, stale, _request_timeout=T)
    assert exc.value.status == 409
    assert kube.deployment("api-gateway-green").spec.replicas == 5

    kube.apps.patch_namespaced_deployment_scale(
        "api-gateway-green", NS, {"spec": {"replicas": 0}}, _content_type=MERGE, _request_timeout=T
    )
    wait_until(lambda: not kube.pods("color=green"), 10, "green to scale to zero")
    status = kube.deployment("api-gateway-green").status
    assert (status.replicas, status.ready_replicas, status.available_replicas) == (0, 0, 0)
    assert sim.writes("Deployment", NS, "api-gateway-green") == 3


def test_bad_image_pull_backoff_hits_the_progress_deadline(kube: Kube, server: SandboxServer) -> None:
    assert raw(server, "POST", "/sandbox/settings", {"progress_deadline": 1})[0] == 200
    assert raw(server, "POST", "/sandbox/bad-images", {"image": "payflow/api-gateway:v0.0.0-bad"})[0] == 200
    patch = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "api-gateway", "image": "payflow/api-gateway:v0.0.0-bad"}]}
            }
        }
    }
    kube.apps.patch_namespaced_deployment(
        "api-gateway-green", NS, patch, _content_type=STRATEGIC, _request_timeout=T
    )

    def stuck_pod() -> Any:
        for pod in kube.pods("color=green"):
            waiting = pod.status.container_statuses[0].state.waiting
            if waiting and waiting.reason == "ImagePullBackOff":
                return pod
        return None

    pod = wait_until(stuck_pod, 10, "a pod in ImagePullBackOff")
    assert pod.status.phase == "Pending" and not pod.status.container_statuses[0].ready
    cond = wait_until(
        lambda: (c := kube.progressing("api-gateway-green")).reason == "ProgressDeadlineExceeded" and c,
        10,
        "ProgressDeadlineExceeded",
    )
    assert cond.status == "False"
    status = kube.deployment("api-gateway-green").status
    assert (status.available_replicas, status.updated_replicas) == (3, 1)  # old pods keep serving
    reasons = {e.reason for e in kube.core.list_namespaced_event(NS, _request_timeout=T).items}
    assert {"Failed", "BackOff"} <= reasons
    with pytest.raises(ApiException) as logs:
        kube.core.read_namespaced_pod_log(pod.metadata.name, NS, _request_timeout=T)
    assert logs.value.status == 400


def test_crash_loop_restarts_and_logs_errors(kube: Kube, sim: Cluster) -> None:
    sim.set_bad_image("v6.6.6", "CrashLoopBackOff")
    patch = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "api-gateway", "image": "payflow/api-gateway:v6.6.6"}]}
            }
        }
    }
    kube.apps.patch_namespaced_deployment(
        "api-gateway-blue", NS, patch, _content_type=STRATEGIC, _request_timeout=T
    )

    def crashing() -> Any:
        for pod in kube.pods("color=blue"):
            cs = pod.status.container_statuses[0]
            if cs.state.waiting and cs.state.waiting.reason == "CrashLoopBackOff" and cs.restart_count >= 2:
                return pod
        return None

    pod = wait_until(crashing, 10, "a pod in CrashLoopBackOff")
    cs = pod.status.container_statuses[0]
    assert pod.status.phase == "Running" and cs.last_state.terminated.exit_code == 1
    text = kube.core.read_namespaced_pod_log(pod.metadata.name, NS, _request_timeout=T)
    assert "ERROR" in text and "v6.6.6" in text
    previous = kube.core.read_namespaced_pod_log(pod.metadata.name, NS, previous=True, _request_timeout=T)
    assert "exiting with status 1" in previous


def test_rollout_restart_annotation_rolls_pods(kube: Kube) -> None:
    old = {p.metadata.name for p in kube.pods("color=blue")}
    patch = {
        "spec": {
            "template": {
                "metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"}}
            }
        }
    }
    kube.apps.patch_namespaced_deployment(
        "api-gateway-blue", NS, patch, _content_type=STRATEGIC, _request_timeout=T
    )
    wait_until(lambda: kube.rolled_out("api-gateway-blue", "blue"), 10, "the restart rollout")
    pods = kube.pods("color=blue")
    assert len(pods) == 3 and not old & {p.metadata.name for p in pods}
    assert {p.spec.containers[0].image for p in pods} == {IMAGE}
    assert all(p.metadata.annotations["kubectl.kubernetes.io/restartedAt"] for p in pods)


def test_pod_logs_tail_lines_and_timestamps(kube: Kube) -> None:
    name = kube.pods("color=blue")[0].metadata.name
    text = kube.core.read_namespaced_pod_log(name, NS, tail_lines=3, _request_timeout=T)
    lines = text.splitlines()
    assert len(lines) == 3 and all("v1.0.0" in line for line in lines)
    assert all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO|WARN) ", line) for line in lines)
    full = kube.core.read_namespaced_pod_log(name, NS, _request_timeout=T)
    assert full.endswith(text) and "ERROR" not in full
    stamped = kube.core.read_namespaced_pod_log(name, NS, tail_lines=1, timestamps=True, _request_timeout=T)
    assert re.match(r"^\S+Z \S+Z ", stamped)
    with pytest.raises(ApiException) as exc:
        kube.core.read_namespaced_pod_log("no-such-pod", NS, _request_timeout=T)
    assert exc.value.status == 404


def test_service_proxy_health(kube: Kube, sim: Cluster) -> None:
    def health(target: str) -> tuple[int, dict[str, Any]]:
        try:
            resp = kube.core.connect_get_namespaced_service_proxy_with_path(
                target, NS, "health", _preload_content=False, _request_timeout=T
            )
        except ApiException as exc:
            return exc.status, json.loads(exc.body)
        return resp.status, json.loads(resp.data)

    code, body = health("api-gateway-blue:3000")
    assert (code, body["status"], body["service"], body["version"]) == (
        200,
        "ok",
        "api-gateway-blue",
        "v1.0.0",
    )
    assert health("api-gateway-green")[0] == 200

    sim.set_bad_image("v6.6.6", "CrashLoopBackOff")
    labels = {"app": "api-gateway", "color": "canary"}
    sim.create(
        "Deployment", _deployment("api-gateway-canary", labels, "payflow/api-gateway:v6.6.6", replicas=1)
    )
    sim.create("Service", _service("api-gateway-canary", labels))
    code, body = health("api-gateway-canary:3000")
    assert code == 503 and body["status"] == "unavailable" and body["reason"]

    kube.apps.patch_namespaced_deployment_scale(
        "api-gateway-green", NS, {"spec": {"replicas": 0}}, _content_type=MERGE, _request_timeout=T
    )
    wait_until(lambda: health("api-gateway-green")[0] == 503, 10, "green health to fail at zero replicas")
    assert health("api-gateway-blue:9999")[0] == 503
    assert health("no-such-service")[0] == 404


def test_deleting_a_deployment_deletes_its_pods_and_a_deleted_pod_comes_back(kube: Kube) -> None:
    victim = kube.pods("color=blue")[0].metadata.name
    kube.core.delete_namespaced_pod(victim, NS, _request_timeout=T)
    wait_until(
        lambda: (
            len(kube.pods("color=blue")) == 3
            and victim not in {p.metadata.name for p in kube.pods("color=blue")}
        ),
        10,
        "a replacement pod",
    )
    kube.apps.delete_namespaced_deployment("api-gateway-green", NS, _request_timeout=T)
    assert kube.pods("color=green") == []


def test_keep_alive_and_content_length(server: SandboxServer) -> None:
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, timeout=T, context=server.ssl_context())
    try:
        for _ in range(3):
            conn.request(
                "GET",
                "/apis/apps/v1/namespaces/payflow/deployments",
                headers={"Authorization": f"Bearer {server.token}"},
            )
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200 and int(resp.headers["Content-Length"]) == len(body)
            assert json.loads(body)["kind"] == "DeploymentList"
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------- pure helpers


def test_label_selector_parsing() -> None:
    reqs = parse_label_selector("a=b, c!=d,e in (x, y),f notin (z),g,!h")
    assert [(r.key, r.op, r.values) for r in reqs] == [
        ("a", "=", ("b",)),
        ("c", "!=", ("d",)),
        ("e", "in", ("x", "y")),
        ("f", "notin", ("z",)),
        ("g", "exists", ()),
        ("h", "!", ()),
    ]
    with pytest.raises(ApiError) as exc:
        parse_label_selector("a in x")
    assert exc.value.code == 400


def test_json_patch_operations() -> None:
    doc = {"a": {"b": [1, 2]}, "c": 1}
    out = apply_json_patch(
        doc,
        [
            {"op": "add", "path": "/a/b/-", "value": 3},
            {"op": "move", "from": "/c", "path": "/d"},
            {"op": "copy", "from": "/a/b", "path": "/e"},
            {"op": "remove", "path": "/a/b/0"},
            {"op": "test", "path": "/e", "value": [1, 2, 3]},
        ],
    )
    assert out == {"a": {"b": [2, 3]}, "d": 1, "e": [1, 2, 3]} and doc == {"a": {"b": [1, 2]}, "c": 1}


def test_strategic_merge_directives() -> None:
    cur = {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}], "tolerations": [1, 2]}
    patch = {
        "containers": [{"name": "b", "$patch": "delete"}, {"name": "c", "image": "3"}],
        "tolerations": [3],
    }
    assert strategic_merge_patch(cur, patch) == {
        "containers": [{"name": "a", "image": "1"}, {"name": "c", "image": "3"}],
        "tolerations": [3],
    }
