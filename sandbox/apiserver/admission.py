"""Admission: what kube-apiserver does to an object between decoding and storing it --
type checks, defaulting (the fields ``kubectl get -o yaml`` shows that nobody wrote), and
validation with the same field paths and messages (422 ``Invalid``)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from sandbox.apiserver import runs
from sandbox.apiserver.kinds import JSON, ApiError, KindInfo
from sandbox.apiserver.kubelet import image_tag
from sandbox.apiserver.selectors import labels_match, selector_requirements

DEFAULT_PROGRESS_DEADLINE_SECONDS = 600
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def check_type(info: KindInfo, obj: JSON) -> None:
    if obj.get("kind") not in (None, info.kind) or obj.get("apiVersion") not in (None, info.api_version):
        raise ApiError.bad_request(
            f"the API version in the data ({obj.get('apiVersion')}) does not match the expected "
            f"API version ({info.api_version}) / kind ({info.kind})"
        )
    obj["apiVersion"] = info.api_version
    obj["kind"] = info.kind


def namespace_for(info: KindInfo, md: JSON, namespace: str | None) -> str:
    """The namespace an object is created in: the URL's, else the body's, else ``default``."""
    if not info.namespaced:
        return ""
    body_ns = md.get("namespace")
    if namespace and body_ns and body_ns != namespace:
        raise ApiError.bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    return namespace or body_ns or "default"


def initial_status(info: KindInfo) -> JSON:
    if info.kind in ("Service", "Ingress"):
        return {"loadBalancer": {}}
    if info.kind == "Namespace":
        return {"phase": "Active"}
    return {}


def default(info: KindInfo, obj: JSON, current: JSON | None, allocate_cluster_ip: Callable[[], str]) -> None:
    """Fill in what the API server defaults; `allocate_cluster_ip` gives a new Service its IP."""
    spec = obj.get("spec")
    if info.kind == "Deployment" and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", DEFAULT_PROGRESS_DEADLINE_SECONDS)
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxSurge", "25%")
            rolling.setdefault("maxUnavailable", "25%")
        template = spec.get("template")
        if isinstance(template, dict):
            template.setdefault("metadata", {})
            default_pod_spec(template.get("spec"))
    elif info.kind == "Pod":
        default_pod_spec(spec)
    elif info.kind == "Service" and isinstance(spec, dict):
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if not spec.get("clusterIP"):
            old = ((current or {}).get("spec") or {}).get("clusterIP")
            if not old:
                old = allocate_cluster_ip()
            spec["clusterIP"] = old
        spec["clusterIPs"] = [spec["clusterIP"]]
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                if "port" in port:
                    port.setdefault("targetPort", port["port"])


def default_pod_spec(spec: Any) -> None:
    if not isinstance(spec, dict):
        return
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    for container in spec.get("containers") or []:
        if not isinstance(container, dict):
            continue
        image = str(container.get("image") or "")
        container.setdefault("imagePullPolicy", "Always" if image_tag(image) == "latest" else "IfNotPresent")
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        for port in container.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")


def validate(info: KindInfo, name: str, obj: JSON, current: JSON | None) -> None:
    def invalid(path: str, message: str) -> ApiError:
        return ApiError.invalid(info, name, path, message)

    if info.kind != "Event" and (len(name) > 253 or not _NAME_RE.match(name)):
        raise invalid(
            "metadata.name",
            f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist '
            "of lower case alphanumeric characters, '-' or '.'",
        )
    spec = obj.get("spec")
    if info.kind == "Deployment":
        if not isinstance(spec, dict):
            raise invalid("spec", "Required value")
        replicas = spec.get("replicas")
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise invalid("spec.replicas", f"Invalid value: {replicas!r}: must be greater than or equal to 0")
        selector = spec.get("selector")
        if not isinstance(selector, dict) or not (
            selector.get("matchLabels") or selector.get("matchExpressions")
        ):
            raise invalid("spec.selector", "Required value")
        template = spec.get("template")
        if not isinstance(template, dict):
            raise invalid("spec.template", "Required value")
        labels = (template.get("metadata") or {}).get("labels") or {}
        if not labels_match(selector_requirements(selector), labels):
            raise invalid(
                "spec.template.metadata.labels",
                f"Invalid value: {json.dumps(labels)}: `selector` does not match template `labels`",
            )
        if current is not None and current["spec"].get("selector") != selector:
            raise invalid("spec.selector", f"Invalid value: {json.dumps(selector)}: field is immutable")
        validate_pod_spec(template.get("spec"), "spec.template.spec", invalid)
    elif info.kind == "Pod":
        validate_pod_spec(spec, "spec", invalid)
        if runs.runs_to_completion(obj):
            runs.validate((obj.get("metadata") or {}).get("annotations"), "metadata", invalid)
    elif info.kind == "Service" and isinstance(spec, dict):
        for i, port in enumerate(spec.get("ports") or []):
            if not isinstance(port, dict) or not isinstance(port.get("port"), int):
                raise invalid(f"spec.ports[{i}].port", "Required value")
    elif info.kind == "Ingress" and isinstance(spec, dict):
        for i, rule in enumerate(spec.get("rules") or []):
            for j, path in enumerate(((rule or {}).get("http") or {}).get("paths") or []):
                where = f"spec.rules[{i}].http.paths[{j}]"
                if (path or {}).get("pathType") not in ("Exact", "Prefix", "ImplementationSpecific"):
                    raise invalid(
                        f"{where}.pathType",
                        'Unsupported value: supported values: "Exact", "ImplementationSpecific", "Prefix"',
                    )
                if not isinstance((path or {}).get("backend"), dict):
                    raise invalid(f"{where}.backend", "Required value")


def validate_pod_spec(spec: Any, where: str, invalid: Callable[[str, str], ApiError]) -> None:
    containers = spec.get("containers") if isinstance(spec, dict) else None
    if not isinstance(containers, list) or not containers:
        raise invalid(f"{where}.containers", "Required value")
    seen: set[str] = set()
    for i, container in enumerate(containers):
        if not isinstance(container, dict) or not container.get("name"):
            raise invalid(f"{where}.containers[{i}].name", "Required value")
        if container["name"] in seen:
            raise invalid(f"{where}.containers[{i}].name", f'Duplicate value: "{container["name"]}"')
        seen.add(container["name"])
        if not container.get("image"):
            raise invalid(f"{where}.containers[{i}].image", "Required value")
