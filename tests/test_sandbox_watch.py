"""The sandbox as clients that no one here wrote see it: TLS verified against the kubeconfig's CA,
watches with resourceVersion, bookmark and timeout semantics, server-side Tables, and the
request recorder. Through the real ``kubernetes`` client and plain HTTPS."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import watch

from sandbox.apiserver.http import RequestRecord
from sandbox.cluster import Cluster
from sandbox.k8s_api import SandboxServer
from sandbox.local import wait_until
from tests.conftest import Cluster8s

NS = "payflow"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io"


def _get(sandbox: SandboxServer, path: str, accept: str = "application/json", timeout: float = 5) -> Any:
    req = urllib.request.Request(
        sandbox.url + path, headers={"Authorization": f"Bearer {sandbox.token}", "Accept": accept}
    )
    with urllib.request.urlopen(req, timeout=timeout, context=sandbox.ssl_context()) as resp:
        return resp.status, resp.headers, resp.read()


def _lines(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in body.splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------- TLS


def test_the_kubeconfig_carries_the_ca_and_clients_verify_it(sandbox, kubeconfig, k8s_view):
    config = yaml.safe_load(kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"].startswith("https://127.0.0.1:")
    assert "insecure-skip-tls-verify" not in cluster
    assert base64.b64decode(cluster["certificate-authority-data"]) == sandbox.ca_pem
    # the kubernetes client verifies (it read the deployments above through k8s_view) ...
    assert k8s_view.apps.api_client.configuration.verify_ssl is True
    # ... and a client that does not know the CA is refused by its own verification
    with pytest.raises(urllib.error.URLError) as exc:
        urllib.request.urlopen(sandbox.url + "/version", timeout=5, context=ssl.create_default_context())
    assert isinstance(exc.value.reason, ssl.SSLCertVerificationError)


def test_the_certificate_names_localhost_too(sandbox):
    ctx = sandbox.ssl_context()
    with (
        socket.create_connection(("127.0.0.1", sandbox.port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_plain_http_gets_the_go_servers_answer_and_no_data(sandbox):
    with socket.create_connection(("127.0.0.1", sandbox.port), timeout=5) as raw:
        raw.sendall(
            f"GET /api/v1/namespaces HTTP/1.1\r\nAuthorization: Bearer {sandbox.token}\r\n\r\n".encode()
        )
        answer = raw.recv(4096)
    assert answer.startswith(b"HTTP/1.0 400 Bad Request")
    assert b"Client sent an HTTP request to an HTTPS server." in answer and b"Namespace" not in answer


def test_a_client_that_never_handshakes_does_not_block_others(sandbox):
    silent = socket.create_connection(("127.0.0.1", sandbox.port), timeout=5)
    try:
        status, _, body = _get(sandbox, "/version")
        assert status == 200 and json.loads(body)["gitVersion"].endswith("payflow-sandbox")
    finally:
        silent.close()


# ---------------------------------------------------------------------------------------------- watch


def test_watch_from_a_resource_version_sees_later_changes_only(sandbox, cluster, k8s_view: Cluster8s):
    listed = k8s_view.apps.list_namespaced_deployment(NS, _request_timeout=5)
    rv = listed.metadata.resource_version
    k8s_view.apps.patch_namespaced_deployment_scale(
        "api-gateway-green", NS, {"spec": {"replicas": 2}}, _request_timeout=5
    )
    seen: list[tuple[str, str, int]] = []
    stream = watch.Watch().stream(
        k8s_view.apps.list_namespaced_deployment,
        NS,
        resource_version=rv,
        timeout_seconds=3,
        _request_timeout=10,
    )
    for event in stream:
        dep = event["object"]
        seen.append((event["type"], dep.metadata.name, dep.status.ready_replicas or 0))
        if (dep.metadata.name, dep.status.ready_replicas) == ("api-gateway-green", 2):
            break
    assert seen and all(t == "MODIFIED" and name == "api-gateway-green" for t, name, _ in seen)
    assert seen[0][2] == 0 and seen[-1][2] == 2  # spec first, then the pods becoming ready


def test_watch_without_a_version_starts_with_the_current_objects(sandbox, k8s_view: Cluster8s):
    status, headers, body = _get(
        sandbox, f"/apis/apps/v1/namespaces/{NS}/deployments?watch=true&timeoutSeconds=1", timeout=10
    )
    events = _lines(body)
    assert status == 200 and headers["Transfer-Encoding"] == "chunked"
    assert [e["type"] for e in events] == ["ADDED"] * 8
    assert sorted(e["object"]["metadata"]["name"] for e in events)[:2] == [
        "api-gateway-blue",
        "api-gateway-green",
    ]


def test_watch_selectors_turn_leaving_objects_into_deleted(sandbox, k8s_view: Cluster8s):
    found: list[dict[str, Any]] = []

    def read() -> None:
        path = f"/api/v1/namespaces/{NS}/services?watch=1&labelSelector=tier%3Dfront&timeoutSeconds=2"
        found.extend(_lines(_get(sandbox, path, timeout=10)[2]))

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.3)
    labels = lambda v: {"metadata": {"labels": {"tier": v}}}  # noqa: E731
    k8s_view.core.patch_namespaced_service("api-gateway-blue", NS, labels("front"), _request_timeout=5)
    k8s_view.core.patch_namespaced_service("api-gateway-blue", NS, labels("back"), _request_timeout=5)
    reader.join(10)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in found] == [
        ("ADDED", "api-gateway-blue"),
        ("DELETED", "api-gateway-blue"),
    ]


def test_a_too_old_resource_version_is_410_expired(catalog):
    cluster = Cluster(ready_delay=0.05, env={}, watch_history=5)
    from sandbox.seed import seed

    seed(cluster, catalog)  # far more than 5 changes
    with SandboxServer(cluster) as sandbox:
        _, _, body = _get(sandbox, f"/api/v1/namespaces/{NS}/pods?watch=true&resourceVersion=1", timeout=10)
        [event] = _lines(body)
        assert event["type"] == "ERROR" and event["object"]["code"] == 410
        assert event["object"]["reason"] == "Expired"
        assert event["object"]["message"].startswith("too old resource version: 1 (")


def test_bookmarks_carry_the_newest_version_and_the_timeout_ends_the_stream(sandbox, cluster, k8s_view):
    cluster.watches.bookmark_seconds = 0.2
    start = time.monotonic()
    _, _, body = _get(
        sandbox,
        f"/apis/apps/v1/namespaces/{NS}/deployments?watch=1&allowWatchBookmarks=true&timeoutSeconds=1"
        f"&resourceVersion={cluster.resource_version}",
        timeout=10,
    )
    elapsed = time.monotonic() - start
    events = _lines(body)
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert bookmarks and 0.9 <= elapsed < 5
    assert bookmarks[0]["object"]["kind"] == "Deployment"
    assert int(bookmarks[-1]["object"]["metadata"]["resourceVersion"]) <= int(cluster.resource_version)


def test_bad_watch_parameters_are_400(sandbox):
    for query in ("resourceVersion=abc", "timeoutSeconds=-1", "timeoutSeconds=soon"):
        with pytest.raises(urllib.error.HTTPError) as exc:
            _get(sandbox, f"/api/v1/namespaces/{NS}/pods?watch=1&{query}")
        assert exc.value.code == 400 and json.loads(exc.value.read())["reason"] == "BadRequest"


def test_stopping_the_server_ends_open_watches(cluster):
    server = SandboxServer(cluster).start()
    done = threading.Event()

    def read() -> None:
        # a clean end or a cut connection, as long as it ends
        with contextlib.suppress(OSError, http.client.HTTPException):
            _get(server, f"/api/v1/namespaces/{NS}/pods?watch=1", timeout=10)
        done.set()

    threading.Thread(target=read, daemon=True).start()
    time.sleep(0.3)
    server.stop()
    assert done.wait(5)


# ---------------------------------------------------------------------------------------------- tables


def test_a_deployment_table_has_kubectls_columns(sandbox, k8s_view):
    _, _, body = _get(sandbox, f"/apis/apps/v1/namespaces/{NS}/deployments", accept=TABLE)
    table = json.loads(body)
    assert (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    names = [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0]
    assert names == ["Name", "Ready", "Up-to-date", "Available", "Age"]
    rows = {r["cells"][0]: r for r in table["rows"]}
    assert rows["api-gateway-blue"]["cells"][1:4] == ["3/3", 3, 3]
    assert rows["api-gateway-green"]["cells"][1:4] == ["0/0", 0, 0]
    assert rows["api-gateway-blue"]["cells"][4].endswith("s")
    assert rows["api-gateway-blue"]["object"]["kind"] == "PartialObjectMetadata"


def test_tables_for_pods_services_ingresses_and_one_object(sandbox, k8s_view):
    pods = json.loads(_get(sandbox, f"/api/v1/namespaces/{NS}/pods?labelSelector=color%3Dblue", TABLE)[2])
    assert [c["name"] for c in pods["columnDefinitions"]][:5] == [
        "Name",
        "Ready",
        "Status",
        "Restarts",
        "Age",
    ]
    assert {tuple(r["cells"][1:4]) for r in pods["rows"]} == {("1/1", "Running", "0")}
    svc = json.loads(_get(sandbox, f"/api/v1/namespaces/{NS}/services/api-gateway-blue", TABLE)[2])
    assert svc["rows"][0]["cells"][:2] == ["api-gateway-blue", "ClusterIP"]
    assert svc["rows"][0]["cells"][4] == "3000/TCP"
    ing = json.loads(_get(sandbox, f"/apis/networking.k8s.io/v1/namespaces/{NS}/ingresses", TABLE)[2])
    assert ing["rows"][0]["cells"][:3] == ["payflow-ingress", "<none>", "payflow.com"]
    full = json.loads(
        _get(sandbox, f"/apis/apps/v1/namespaces/{NS}/deployments?includeObject=Object", TABLE)[2]
    )
    assert full["rows"][0]["object"]["kind"] == "Deployment"
    with pytest.raises(urllib.error.HTTPError) as exc:
        _get(sandbox, f"/apis/apps/v1/namespaces/{NS}/deployments?includeObject=All", TABLE)
    assert exc.value.code == 400


def test_human_durations_match_go():
    from sandbox.apiserver.tables import human_duration

    cases = {5: "5s", 119: "119s", 120: "2m", 150: "2m30s", 600: "10m", 3 * 3600: "3h", 3 * 3600 + 60: "3h1m"}
    cases |= {9 * 3600: "9h", 3 * 86400: "3d", 3 * 86400 + 3600: "3d1h", 30 * 86400: "30d"}
    assert {s: human_duration(s) for s in cases} == cases


# ---------------------------------------------------------------------------------------------- recorder


def test_the_recorder_lists_requests_in_rbac_terms(cluster, tmp_path: Path):
    from bot.gateways.kube import Kube

    records: list[RequestRecord] = []
    with SandboxServer(cluster, record=records) as sandbox:
        path = sandbox.write_kubeconfig(tmp_path / "kubeconfig")
        kube = Kube.connect(NS, kubeconfig=str(path), timeout=3)
        try:
            import asyncio

            async def go() -> None:
                read = await kube.read_scale("api-gateway-blue")
                await kube.write_scale("api-gateway-blue", 4, expected=read.replicas)
                await kube.deployments()

            asyncio.run(go())
        finally:
            kube.close()
    assert RequestRecord("get", "apps", "deployments", "scale", NS) in records
    assert RequestRecord("patch", "apps", "deployments", "scale", NS) in records
    assert RequestRecord("list", "apps", "deployments", "", NS) in records


def test_watches_are_bounded_and_give_their_slot_back(sandbox, cluster):
    cluster.watches.max_open = 1
    first = threading.Thread(
        target=_get,
        args=(sandbox, f"/api/v1/namespaces/{NS}/pods?watch=1&timeoutSeconds=1"),
        kwargs={"timeout": 10},
    )
    first.start()
    time.sleep(0.3)
    with pytest.raises(urllib.error.HTTPError) as exc:
        _get(sandbox, f"/api/v1/namespaces/{NS}/pods?watch=1&timeoutSeconds=1")
    body = json.loads(exc.value.read())
    assert exc.value.code == 429 and body["reason"] == "TooManyRequests"
    first.join(10)
    status, _, _ = _get(sandbox, f"/api/v1/namespaces/{NS}/pods?watch=1&timeoutSeconds=1", timeout=10)
    assert status == 200  # the slot came back when the first watch timed out


def test_a_client_that_hangs_up_frees_its_watch(sandbox, cluster):
    cluster.watches.max_open = 1
    raw = socket.create_connection(("127.0.0.1", sandbox.port), timeout=5)
    tls = sandbox.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1")
    tls.sendall(
        f"GET /api/v1/namespaces/{NS}/pods?watch=1 HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {sandbox.token}\r\n\r\n".encode()
    )
    assert tls.recv(64).startswith(b"HTTP/1.1 200")
    tls.close()

    def watched() -> int | None:
        try:
            status, _, _ = _get(sandbox, f"/api/v1/namespaces/{NS}/pods?watch=1&timeoutSeconds=1", timeout=10)
        except urllib.error.HTTPError as err:
            if err.code != 429:
                raise
            return None
        return status

    # noticed at the watch's next tick (at most a second)
    status = wait_until(watched, 5, "the hung-up watch to give back its slot", poll=0.2)
    assert status == 200
