"""What the Kubernetes gateway hands out: its errors and our own small read-only types, read from
the API server's raw JSON; apart from the client so callers name them without its machinery."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class KubeError(Exception):
    """The API server refused or could not be reached; `str()` is fit to show a user."""


class NotFound(KubeError):
    pass


class Conflict(KubeError):
    """The object changed since we read it (409) or a JSON-patch test failed (422)."""


class NotStarted(KubeError):
    """The call waited for a thread of the gateway past its `start_by` and was never sent."""


class Unreachable(KubeError):
    """No answer: refused, or no reply within the deadline. ``uncertain`` is True when a write was
    sent and its answer never came, so it may have been applied: the caller must not say "nothing
    was changed" then."""

    def __init__(self, message: str, *, uncertain: bool = False):
        super().__init__(message)
        self.uncertain = uncertain


@dataclass(frozen=True)
class Condition:
    status: str
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class PodState:
    name: str
    labels: dict[str, str]
    ready: bool
    restarts: int
    waiting_reason: str | None
    phase: str
    deleting: bool = False
    image: str | None = None


@dataclass(frozen=True)
class DeploymentState:
    name: str
    desired: int
    ready: int
    updated: int
    available: int
    total: int
    image: str | None
    generation: int
    observed_generation: int
    selector: dict[str, str]
    resource_version: str
    conditions: dict[str, Condition] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        """The version part of the image: a tag, or the digest for `repo@sha256:…`."""
        if not self.image:
            return None
        if "@" in self.image:
            return self.image.split("@", 1)[1]
        last = self.image.rsplit("/", 1)[-1]
        return last.split(":", 1)[1] if ":" in last else "latest"

    @property
    def deadline_exceeded(self) -> bool:
        progressing = self.conditions.get("Progressing")
        return bool(progressing and progressing.reason == "ProgressDeadlineExceeded")

    @property
    def rollout_complete(self) -> bool:
        """`kubectl rollout status`'s rule: the controller saw the spec and all pods are new and available."""
        return (
            self.observed_generation >= self.generation
            and self.updated == self.desired
            and self.total == self.updated
            and self.available == self.desired
        )

    def owns(self, pod: PodState) -> bool:
        return bool(self.selector) and all(pod.labels.get(k) == v for k, v in self.selector.items())


@dataclass(frozen=True)
class IngressState:
    name: str
    resource_version: str
    backends: dict[tuple[str | None, str], str]  # (host, path) -> Service name

    def backend(self, host: str | None, path: str) -> str | None:
        return self.backends.get((host, path))


@dataclass(frozen=True)
class ServiceState:
    name: str
    resource_version: str
    selector: dict[str, str]


@dataclass(frozen=True)
class Route:
    """Where one traffic object sends one service: the JSON pointer to the value that names the
    color, and `guards` — the (pointer, value) pairs that make that pointer this service's route
    (an ingress rule's host and path), tested with it so a reordered object cannot be mistaken."""

    object: str
    pointer: str
    value: str | None
    resource_version: str
    guards: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ScaleState:
    replicas: int
    resource_version: str


@dataclass(frozen=True)
class Snapshot:
    """Everything `status` needs, read in one round of parallel list calls. Pods are indexed by
    their deployment's selector once, so asking for one deployment's pods is a lookup, not a
    scan: `status` of 1,000 services stays O(pods), not O(services × pods)."""

    deployments: dict[str, DeploymentState]
    pods: list[PodState]
    ingresses: dict[str, IngressState]
    services: dict[str, ServiceState]
    _by_selector: dict[tuple[str, ...], dict[tuple[str | None, ...], list[PodState]]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        # one pass over the pods per distinct set of selector keys (in practice one: app, color)
        for keys in {tuple(sorted(d.selector)) for d in self.deployments.values() if d.selector}:
            index: dict[tuple[str | None, ...], list[PodState]] = {}
            for pod in self.pods:
                index.setdefault(tuple(pod.labels.get(k) for k in keys), []).append(pod)
            self._by_selector[keys] = index

    def pods_of(self, dep: DeploymentState) -> list[PodState]:
        """The pods `dep` selects (its matchLabels), as `DeploymentState.owns` would find them."""
        if not dep.selector:
            return []
        keys = tuple(sorted(dep.selector))
        index = self._by_selector.get(keys)
        if index is None:  # a deployment that was not in this snapshot
            return [p for p in self.pods if dep.owns(p)]
        return list(index.get(tuple(dep.selector[k] for k in keys), ()))


def _deployment(obj: dict[str, Any]) -> DeploymentState:
    meta, spec, status = obj.get("metadata", {}), obj.get("spec", {}), obj.get("status", {}) or {}
    containers = spec.get("template", {}).get("spec", {}).get("containers", [])
    return DeploymentState(
        name=meta["name"],
        desired=int(spec.get("replicas", 1) or 0),
        ready=int(status.get("readyReplicas", 0) or 0),
        updated=int(status.get("updatedReplicas", 0) or 0),
        available=int(status.get("availableReplicas", 0) or 0),
        total=int(status.get("replicas", 0) or 0),
        image=containers[0].get("image") if containers else None,
        generation=int(meta.get("generation", 0) or 0),
        observed_generation=int(status.get("observedGeneration", 0) or 0),
        selector=dict(spec.get("selector", {}).get("matchLabels", {}) or {}),
        resource_version=str(meta.get("resourceVersion", "")),
        conditions={
            c["type"]: Condition(c.get("status", ""), c.get("reason", ""), c.get("message", ""))
            for c in status.get("conditions", []) or []
        },
    )


def _pod(obj: dict[str, Any]) -> PodState:
    meta, status = obj.get("metadata", {}), obj.get("status", {}) or {}
    statuses = status.get("containerStatuses", []) or []
    waiting = next(
        (s["state"]["waiting"].get("reason") for s in statuses if (s.get("state") or {}).get("waiting")),
        None,
    )
    return PodState(
        name=meta["name"],
        labels=dict(meta.get("labels", {}) or {}),
        ready=bool(statuses) and all(s.get("ready") for s in statuses),
        restarts=sum(int(s.get("restartCount", 0) or 0) for s in statuses),
        waiting_reason=waiting,
        phase=status.get("phase", "Unknown"),
        deleting=bool(meta.get("deletionTimestamp")),
        image=next((c.get("image") for c in (obj.get("spec", {}).get("containers") or [])), None),
    )


def _ingress(obj: dict[str, Any]) -> IngressState:
    backends: dict[tuple[str | None, str], str] = {}
    for rule in obj.get("spec", {}).get("rules", []) or []:
        for path in (rule.get("http") or {}).get("paths", []) or []:
            service = ((path.get("backend") or {}).get("service") or {}).get("name")
            if service:
                backends[(rule.get("host"), path.get("path", "/"))] = service
    meta = obj["metadata"]
    return IngressState(meta["name"], str(meta.get("resourceVersion", "")), backends)


def _service(obj: dict[str, Any]) -> ServiceState:
    meta = obj["metadata"]
    return ServiceState(
        meta["name"], str(meta.get("resourceVersion", "")), dict(obj.get("spec", {}).get("selector") or {})
    )


def _ingress_route(data: dict[str, Any], i: int, j: int) -> Route:
    rule = data["spec"]["rules"][i]
    entry = rule["http"]["paths"][j]
    backend = ((entry.get("backend") or {}).get("service") or {}).get("name")
    guards = []  # only what the object holds: a `test` of an absent member fails
    if rule.get("host") is not None:
        guards.append((f"/spec/rules/{i}/host", rule["host"]))
    if entry.get("path") is not None:
        guards.append((f"/spec/rules/{i}/http/paths/{j}/path", entry["path"]))
    pointer = f"/spec/rules/{i}/http/paths/{j}/backend/service/name"
    meta = data["metadata"]
    return Route(meta["name"], pointer, backend, str(meta["resourceVersion"]), tuple(guards))
