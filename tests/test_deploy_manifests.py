"""deploy/kubernetes as a real cluster would judge it: valid against the Kubernetes schema of a
current version (kubernetes-validate, offline), admitted by Pod Security "restricted", and RBAC
that grants exactly the API calls the bot makes — derived from a recorded run of its commands
against the sandbox, not from a list someone keeps by hand."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from bot.gateways.kube import Kube
from bot.shell.runtime import build_runtime
from sandbox import demo
from sandbox.apiserver.http import RequestRecord
from sandbox.k8s_api import SandboxServer
from tests.support.bot_server import BotServer
from tests.support.chat import Chat
from tests.test_deploy import APPROVALS, approval_message, ingress_backend, tuned, wait_progress
from tests.test_serve_lifecycle import DRAIN_BOUND

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = kubernetes_validate.latest_version()  # schemas ship with the package: no network
BOT_NAMESPACE, OPERATED_NAMESPACE = "payflow-bot", "payflow"
OPTIONAL_ROLE = "payflow-bot-service-traffic"

Rule = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((MANIFESTS / name).read_text()) if d]


def _all_docs() -> list[dict[str, Any]]:
    return [d for path in sorted(MANIFESTS.glob("*.yaml")) for d in _docs(path.name)]


def _one(kind: str, name: str, docs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    [doc] = [d for d in docs or _all_docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def _rules(role: dict[str, Any]) -> set[Rule]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


# ---------------------------------------------------------------- schema


@pytest.mark.parametrize("path", sorted(p.name for p in MANIFESTS.glob("*.yaml")))
def test_manifests_are_valid_for_a_current_kubernetes(path):
    docs = _docs(path)
    assert docs
    for doc in docs:
        # strict: an unknown or misspelt field is an error, as `kubectl apply --validate=strict` says
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_catches_what_a_cluster_would_refuse():
    """The check above can fail: a misspelt field and a wrong type are both refused."""
    deployment = _one("Deployment", "payflow-bot")
    typo = yaml.safe_load(yaml.safe_dump(deployment))
    typo["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, KUBERNETES_VERSION, strict=True)
    wrong = yaml.safe_load(yaml.safe_dump(deployment))
    wrong["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong, KUBERNETES_VERSION, strict=True)


# ---------------------------------------------------------------- Pod Security "restricted"

ALLOWED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """The Pod Security Standard "restricted" (baseline included) as the admission plugin applies
    it to a pod spec; each violation named like the plugin names it."""
    bad: list[str] = []
    psc = pod.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            bad.append(f"host namespaces ({flag})")
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            bad.append(f"restricted volume types ({volume['name']}: {sorted(kinds)})")
    if psc.get("runAsUser") == 0:
        bad.append("runAsUser=0 (pod)")
    for c in (pod.get("initContainers") or []) + pod["containers"]:
        sc = c.get("securityContext") or {}
        name = c["name"]
        if sc.get("privileged"):
            bad.append(f"privileged ({name})")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"allowPrivilegeEscalation != false ({name})")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            bad.append(f"unrestricted capabilities: drop ALL missing ({name})")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            bad.append(f"unrestricted capabilities: add ({name})")
        if sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
            bad.append(f"runAsNonRoot != true ({name})")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            bad.append(f"runAsUser=0 ({name})")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad.append(f"seccompProfile ({name})")
        if any(p.get("hostPort") for p in c.get("ports") or []):
            bad.append(f"hostPort ({name})")
    return bad


def test_the_pod_is_admitted_by_pod_security_restricted():
    namespace = _one("Namespace", BOT_NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    pod = _one("Deployment", "payflow-bot")["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []


def test_the_restricted_check_can_fail():
    pod = yaml.safe_load(yaml.safe_dump(_one("Deployment", "payflow-bot")["spec"]["template"]["spec"]))
    del pod["securityContext"]["seccompProfile"]
    for c in pod["initContainers"] + pod["containers"]:
        c["securityContext"] = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True}
    pod["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    bad = restricted_violations(pod)
    assert "seccompProfile (payflow-bot)" in bad
    assert "unrestricted capabilities: drop ALL missing (payflow-bot)" in bad
    assert any(b.startswith("restricted volume types (host") for b in bad)


def test_read_only_root_with_a_writable_tmp_for_caches():
    pod = _one("Deployment", "payflow-bot")["spec"]["template"]["spec"]
    [bot] = pod["containers"]
    assert bot["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in bot["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    env = {e["name"]: e.get("value") for e in bot["env"]}
    for name in ("MPLCONFIGDIR", "HOME", "TMPDIR", "XDG_CACHE_HOME"):
        assert env[name].startswith("/tmp"), name
    # the font cache built into the image is copied to the writable cache before the bot starts
    [init] = pod["initContainers"]
    assert init["image"] == bot["image"] and env["MPLCONFIGDIR"] in init["command"]
    assert "MPLCONFIGDIR=/opt/payflow/matplotlib" in (ROOT / "Dockerfile").read_text()


# ---------------------------------------------------------------- availability and shutdown


def test_replicas_spread_survive_disruptions_and_shut_down_within_the_grace_period():
    deployment = _one("Deployment", "payflow-bot")
    spec, pod = deployment["spec"], deployment["spec"]["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    [bot] = pod["containers"]
    env = {e["name"]: e.get("value") for e in bot["env"]}
    assert int(env["PAYFLOW_REPLICAS"]) == spec["replicas"] >= 2  # serve refuses 2 without REDIS_URL

    pdb = _one("PodDisruptionBudget", "payflow-bot")
    assert pdb["metadata"]["namespace"] == BOT_NAMESPACE
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert 1 <= pdb["spec"]["minAvailable"] < spec["replicas"]  # a drain can evict one at a time

    spread = pod["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} >= {"kubernetes.io/hostname"}
    assert all(c["labelSelector"]["matchLabels"].items() <= labels.items() for c in spread)

    pre_stop = bot["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + DRAIN_BOUND  # measured by the lifecycle test
    assert bot["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert bot["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_image_is_pinned_by_tag_and_digest():
    pod = _one("Deployment", "payflow-bot")["spec"]["template"]["spec"]
    for c in pod["initContainers"] + pod["containers"]:
        assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", c["image"]), c["image"]
        assert ":latest" not in c["image"]


def test_memory_is_sized_from_the_stated_measurement():
    text = (MANIFESTS / "payflow-bot.yaml").read_text()
    match = re.search(r"peak PSS (\d+) MiB", text)
    assert match, "the manifest states the measured memory (bench/memory.py)"
    measured = int(match.group(1))
    [bot] = _one("Deployment", "payflow-bot")["spec"]["template"]["spec"]["containers"]
    request = int(bot["resources"]["requests"]["memory"].removesuffix("Mi"))
    limit = int(bot["resources"]["limits"]["memory"].removesuffix("Mi"))
    assert request >= measured and limit >= request * 1.25


# ---------------------------------------------------------------- namespaces and RBAC


def test_the_bot_runs_apart_from_what_it_operates():
    docs = _all_docs()
    deployment = _one("Deployment", "payflow-bot", docs)
    sa = _one("ServiceAccount", "payflow-bot", docs)
    assert deployment["metadata"]["namespace"] == sa["metadata"]["namespace"] == BOT_NAMESPACE
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "payflow-bot"
    for doc in docs:
        if doc["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            raise AssertionError(f"no cluster-wide rights: {doc['metadata']['name']}")
        if doc["kind"] in ("Role", "RoleBinding"):
            # rights only where the bot operates: none in its own namespace, so it cannot patch
            # its own Deployment or read its own Secret
            assert doc["metadata"]["namespace"] == OPERATED_NAMESPACE, doc["metadata"]["name"]
        if doc["kind"] == "RoleBinding":
            assert doc["subjects"] == [
                {"kind": "ServiceAccount", "name": "payflow-bot", "namespace": BOT_NAMESPACE}
            ]
            _one("Role", doc["roleRef"]["name"], docs)


class Recorder:
    """Every request the bot sends, as RBAC sees it: (apiGroup, resource, verb). The bot gets an
    API server of its own on the test's cluster, recording every resource request whatever sent
    it (the kubernetes client, or the health probes' aiohttp); paths outside the API groups
    (`/version`) are seen in the client's REST layer."""

    def __init__(self, cluster: Any, tmp_path: Path, namespace: str) -> None:
        self.non_resource: set[str] = set()
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._server = SandboxServer(cluster, record=self._records).start()
        self.kubeconfig = self._server.write_kubeconfig(tmp_path / "kubeconfig-recorded", namespace=namespace)

    def kube(self, namespace: str) -> Kube:
        kube = Kube.connect(namespace, kubeconfig=str(self.kubeconfig))
        rest = kube._api.rest_client
        real = rest.request

        def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            path = urlsplit(url).path
            if not path.startswith(("/api/", "/apis/")):
                with self._lock:
                    self.non_resource.add(path)
            return real(method, url, *args, **kwargs)

        rest.request = request
        return kube

    @property
    def calls(self) -> set[Rule]:
        rules: set[Rule] = set()
        for r in list(self._records):
            assert r.namespace == OPERATED_NAMESPACE, r  # never outside payflow
            rules.add((r.group, f"{r.resource}/{r.subresource}" if r.subresource else r.resource, r.verb))
        return rules

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture
def recorded(settings, catalog, k8s_view, slack, cluster, tmp_path) -> Iterator[tuple[Recorder, Chat]]:
    from sandbox.slack_requests import SlackRequests
    from tests.conftest import SIGNING_SECRET

    recorder = Recorder(cluster, tmp_path, catalog.namespace)
    fast = tuned(catalog)
    server = BotServer(build_runtime(settings, fast, kube=recorder.kube(catalog.namespace))).start()
    try:
        requests = SlackRequests(SIGNING_SECRET, response_url=slack.response_url("rbac"))
        yield recorder, Chat(server, slack, requests)
    finally:
        server.stop()
        recorder.stop()


def test_the_role_grants_exactly_what_the_commands_call(recorded, k8s_view, cluster, catalog):
    recorder, chat = recorded
    assert "api-gateway" in chat.run("status").all_text()
    chat.run("status api-gateway")
    chat.run("scale api-gateway 4")
    assert k8s_view.replicas("api-gateway-blue") == 4
    chat.run("health api-gateway")
    chat.run("logs api-gateway --lines 50")
    chat.run("logs api-gateway --errors")
    assert "not isolated" in chat.run("netpol").all_text()
    chat.run("backup postgres")
    chat.slack.wait_for(
        lambda s: any("backup done" in m.text for m in s.messages(demo.OPS_CHANNEL_ID)), timeout=20
    )
    chat.run("backup drill", user="bob")
    chat.slack.wait_for(
        lambda s: any("Restore drill:" in m.text for m in s.messages("#payflow-audit")), timeout=20
    )
    assert "Secrets are not backed up" in chat.run("backup config").all_text()
    assert "Restore drill" in chat.run("backups").all_text()

    chat.run("deploy api-gateway v1.2.3 PAY-1")
    chat.click(approval_message(chat), "Approve", user="bob")
    assert ingress_backend(k8s_view) == "api-gateway-green"
    wait_progress(chat, "— done")  # the bake's end: the old color scaled down

    chat.run("rollback api-gateway p95 doubled")
    chat.slack.wait_for(lambda s: any("Rollback" in m.text for m in s.messages(APPROVALS)), timeout=20)
    chat.click(next(m for m in chat.messages(APPROVALS) if "Rollback" in m.text), "Approve", user="bob")
    assert ingress_backend(k8s_view) == "api-gateway-blue"

    answer = chat.run("restart auth-service")
    [reply] = [r for r in answer.replies if r.get("blocks")]
    message = type(
        "M",
        (),
        {"channel": demo.OPS_CHANNEL_ID, "ts": "1.0", "text": reply["text"], "blocks": reply["blocks"]},
    )
    generation = k8s_view.deployment("auth-service-blue").metadata.generation
    chat.click(message, "Restart auth-service", user="alice")
    assert k8s_view.deployment("auth-service-blue").metadata.generation == generation + 1
    chat.bot.idle()

    core = _rules(_one("Role", "payflow-bot"))
    optional = _rules(_one("Role", OPTIONAL_ROLE))
    # the demo catalog smoke-tests through the API server's service proxy: the optional Role's call
    assert catalog.env.smoke.via == "apiserver" and ("", "services/proxy", "get") in recorder.calls
    assert recorder.calls - optional == core, (
        f"missing from the Role: {sorted(recorder.calls - optional - core)}; "
        f"granted but never called: {sorted(core - recorder.calls)}"
    )
    assert not core & optional
    assert recorder.non_resource <= {"/version"}  # readable by every authenticated client


def test_service_selector_traffic_needs_exactly_the_optional_role(
    settings, catalog, k8s_view, cluster, slack, tmp_path
):
    """A catalog switching traffic with a Service selector: its calls beyond the core Role are
    exactly what the optional Role grants."""
    from sandbox.slack_requests import SlackRequests
    from tests.conftest import SIGNING_SECRET

    spec = catalog.services["wallet-service"]
    selector = spec.model_copy(
        update={"traffic": spec.traffic.model_copy(update={"kind": "service", "name": "wallet"})}
    )
    by_selector = tuned(
        catalog.model_copy(update={"services": {**catalog.services, "wallet-service": selector}})
    )
    cluster.create(
        "Service",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "wallet", "namespace": "payflow"},
            "spec": {"selector": {"app": "wallet-service", "color": "blue"}, "ports": [{"port": 3002}]},
        },
    )
    recorder = Recorder(cluster, tmp_path, catalog.namespace)
    server = BotServer(build_runtime(settings, by_selector, kube=recorder.kube(catalog.namespace))).start()
    try:
        chat = Chat(server, slack, SlackRequests(SIGNING_SECRET, response_url=slack.response_url("svc")))
        chat.run("deploy wallet-service v2.0.0")
        chat.click(approval_message(chat), "Approve", user="bob")
        wait_progress(chat, "— done")
    finally:
        server.stop()
        recorder.stop()
    wallet = k8s_view.core.read_namespaced_service("wallet", "payflow", _request_timeout=5)
    assert wallet.spec.selector["color"] == "green"
    core = _rules(_one("Role", "payflow-bot"))
    optional = _rules(_one("Role", OPTIONAL_ROLE))
    assert recorder.calls - core == optional
