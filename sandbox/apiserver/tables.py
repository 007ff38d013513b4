"""Server-side printing: the ``Table`` kube-apiserver returns when a client asks for
``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` -- what ``kubectl get`` shows, with the
same columns as the real printers (READY, UP-TO-DATE, AVAILABLE, AGE for deployments, ...) and
ages rendered like Go's ``duration.HumanDuration``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sandbox.apiserver.kinds import JSON, KindInfo
from sandbox.apiserver.selectors import selector_to_string

Cells = list[Any]


def wants_table(accept: str | None) -> bool:
    """True when the client prefers a meta.k8s.io Table (the first media type kubectl lists)."""
    for media in (accept or "").split(","):
        params = {k.strip(): v.strip() for k, _, v in (p.partition("=") for p in media.split(";")[1:])}
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io":
            return True
    return False


def human_duration(seconds: float) -> str:
    """Go's k8s.io/apimachinery duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = hours // 24 % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def _parse(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _age(stamp: str | None, now: datetime) -> str:
    if not stamp:
        return "<unknown>"
    return human_duration((now - _parse(stamp)).total_seconds())


def _col(name: str, type_: str = "string", priority: int = 0, fmt: str = "") -> JSON:
    return {"name": name, "type": type_, "format": fmt, "description": "", "priority": priority}


NAME = _col("Name", fmt="name")


def _deployment(obj: JSON, now: datetime) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return [
        obj["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        _age(obj["metadata"].get("creationTimestamp"), now),
        ",".join(str(c.get("name")) for c in containers),
        ",".join(str(c.get("image")) for c in containers),
        selector_to_string(spec.get("selector")) or "<none>",
    ]


def _pod(obj: JSON, now: datetime) -> Cells:
    status = obj.get("status") or {}
    statuses = status.get("containerStatuses") or []
    total = len((obj.get("spec") or {}).get("containers") or [])
    reason = status.get("reason") or status.get("phase") or "Unknown"
    last_exit = ""
    for cs in statuses:
        state = cs.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif (state.get("terminated") or {}).get("reason"):
            reason = state["terminated"]["reason"]
        finished = ((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
        if finished:
            last_exit = f" ({_age(finished, now)} ago)"
    if obj["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    restarts = sum(int(cs.get("restartCount") or 0) for cs in statuses)
    return [
        obj["metadata"]["name"],
        f"{sum(1 for cs in statuses if cs.get('ready'))}/{total}",
        reason,
        f"{restarts}{last_exit}" if restarts else "0",
        _age(obj["metadata"].get("creationTimestamp"), now),
        status.get("podIP") or "<none>",
        (obj.get("spec") or {}).get("nodeName") or "<none>",
        "<none>",
        "<none>",
    ]


def _service(obj: JSON, now: datetime) -> Cells:
    spec = obj.get("spec") or {}
    ports = ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or [])
    selector = ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items()))
    return [
        obj["metadata"]["name"],
        spec.get("type", "ClusterIP"),
        spec.get("clusterIP") or "<none>",
        "<none>",
        ports or "<none>",
        _age(obj["metadata"].get("creationTimestamp"), now),
        selector or "<none>",
    ]


def _ingress(obj: JSON, now: datetime) -> Cells:
    spec = obj.get("spec") or {}
    hosts = [str(r["host"]) for r in spec.get("rules") or [] if isinstance(r, dict) and r.get("host")]
    lb = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    address = ",".join(str(i.get("ip") or i.get("hostname")) for i in lb)
    return [
        obj["metadata"]["name"],
        spec.get("ingressClassName") or "<none>",
        ",".join(hosts) or "*",
        address,
        "80, 443" if spec.get("tls") else "80",
        _age(obj["metadata"].get("creationTimestamp"), now),
    ]


def _network_policy(obj: JSON, now: datetime) -> Cells:
    selector = selector_to_string((obj.get("spec") or {}).get("podSelector"))
    return [
        obj["metadata"]["name"],
        selector or "<none>",
        _age(obj["metadata"].get("creationTimestamp"), now),
    ]


def _config_map(obj: JSON, now: datetime) -> Cells:
    data = len(obj.get("data") or {}) + len(obj.get("binaryData") or {})
    return [obj["metadata"]["name"], data, _age(obj["metadata"].get("creationTimestamp"), now)]


def _pod_template(template: JSON | None) -> tuple[str, str]:
    containers = ((template or {}).get("spec") or {}).get("containers") or []
    return ",".join(str(c.get("name")) for c in containers), ",".join(str(c.get("image")) for c in containers)


def _job(obj: JSON, now: datetime) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    conditions = {c.get("type") for c in status.get("conditions") or [] if c.get("status") == "True"}
    state = next(
        (
            s
            for s in ("Complete", "Failed", "Suspended", "FailureTarget", "SuccessCriteriaMet")
            if s in conditions
        ),
        "Running",
    )
    if spec.get("completions") is not None:
        completions = f"{status.get('succeeded', 0)}/{spec['completions']}"
    else:
        completions = f"{status.get('succeeded', 0)}/1 of {spec.get('parallelism', 1)}"
    duration = ""
    if status.get("startTime"):
        start = _parse(status["startTime"])
        end = _parse(status["completionTime"]) if status.get("completionTime") else now
        duration = human_duration((end - start).total_seconds())
    containers, images = _pod_template(spec.get("template"))
    return [
        obj["metadata"]["name"],
        state,
        completions,
        duration,
        _age(obj["metadata"].get("creationTimestamp"), now),
        containers,
        images,
        selector_to_string(spec.get("selector")) or "<none>",
    ]


def _cronjob(obj: JSON, now: datetime) -> Cells:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    job_spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    containers, images = _pod_template(job_spec.get("template"))
    last = status.get("lastScheduleTime")
    return [
        obj["metadata"]["name"],
        spec.get("schedule", ""),
        spec.get("timeZone") or "<none>",
        "True" if spec.get("suspend") else "False",
        len(status.get("active") or []),
        _age(last, now) if last else "<none>",
        _age(obj["metadata"].get("creationTimestamp"), now),
        containers,
        images,
        selector_to_string(job_spec.get("selector")) or "<none>",
    ]


def _event(obj: JSON, now: datetime) -> Cells:
    involved = obj.get("involvedObject") or {}
    return [
        _age(obj.get("lastTimestamp") or obj["metadata"].get("creationTimestamp"), now),
        obj.get("type", ""),
        obj.get("reason", ""),
        f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
        obj.get("message", ""),
    ]


def _namespace(obj: JSON, now: datetime) -> Cells:
    return [
        obj["metadata"]["name"],
        (obj.get("status") or {}).get("phase", ""),
        _age(obj["metadata"].get("creationTimestamp"), now),
    ]


_PRINTERS: dict[str, tuple[list[JSON], Callable[[JSON, datetime], Cells]]] = {
    "Deployment": (
        [
            NAME,
            _col("Ready"),
            _col("Up-to-date", "integer"),
            _col("Available", "integer"),
            _col("Age"),
            _col("Containers", priority=1),
            _col("Images", priority=1),
            _col("Selector", priority=1),
        ],
        _deployment,
    ),
    "Pod": (
        [
            NAME,
            _col("Ready"),
            _col("Status"),
            _col("Restarts"),
            _col("Age"),
            _col("IP", priority=1),
            _col("Node", priority=1),
            _col("Nominated Node", priority=1),
            _col("Readiness Gates", priority=1),
        ],
        _pod,
    ),
    "Service": (
        [
            NAME,
            _col("Type"),
            _col("Cluster-IP"),
            _col("External-IP"),
            _col("Port(s)"),
            _col("Age"),
            _col("Selector", priority=1),
        ],
        _service,
    ),
    "Ingress": (
        [NAME, _col("Class"), _col("Hosts"), _col("Address"), _col("Ports"), _col("Age")],
        _ingress,
    ),
    "NetworkPolicy": ([NAME, _col("Pod-Selector"), _col("Age")], _network_policy),
    "ConfigMap": ([NAME, _col("Data", "integer"), _col("Age")], _config_map),
    "Job": (
        [
            NAME,
            _col("Status"),
            _col("Completions"),
            _col("Duration"),
            _col("Age"),
            _col("Containers", priority=1),
            _col("Images", priority=1),
            _col("Selector", priority=1),
        ],
        _job,
    ),
    "CronJob": (
        [
            NAME,
            _col("Schedule"),
            _col("Timezone"),
            _col("Suspend"),
            _col("Active", "integer"),
            _col("Last Schedule"),
            _col("Age"),
            _col("Containers", priority=1),
            _col("Images", priority=1),
            _col("Selector", priority=1),
        ],
        _cronjob,
    ),
    "Event": (
        [_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"), _col("Message")],
        _event,
    ),
    "Namespace": ([NAME, _col("Status"), _col("Age")], _namespace),
}


def _row_object(info: KindInfo, obj: JSON, include: str) -> JSON | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}


def table(info: KindInfo, objects: list[JSON], rv: str, now: datetime, include: str = "Metadata") -> JSON:
    """A ``meta.k8s.io/v1`` Table of `objects`; ``include`` is the ``includeObject`` parameter."""
    columns, cells = _PRINTERS[info.kind]
    rows = []
    for obj in objects:
        row: JSON = {"cells": cells(obj, now)}
        embedded = _row_object(info, obj, include)
        if embedded is not None:
            row["object"] = embedded
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "columnDefinitions": columns,
        "rows": rows,
    }
