"""Synthetic PayFlow traffic as Prometheus exposition, so a real Prometheus can scrape the sandbox.

Requests go where the cluster sends them: to the ready pods of the color the service's traffic
object (ingress backend or selector Service) points at, exactly as the bot reads it. A version
whose tag contains "bad", or an image the cluster was told is bad, answers mostly 5xx and slowly;
a color with no ready pod behind the ingress answers 503. Figures are deterministic functions
of time (fixed rates, fixed latency distributions), so tests can predict them.

The same profiles produce OpenMetrics history for `promtool tsdb create-blocks-from openmetrics`
(`history()`), which is how tests and the benchmark backfill series.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from bot.config.catalog import COLORS, Catalog, Color
from sandbox import business

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.5, 5.0, math.inf)
CPU_LIMIT_CORES = 0.5
MEMORY_LIMIT_BYTES = 512 * 1024 * 1024
DEPENDENCIES = {"postgres": "pg_up", "redis": "redis_up", "rabbitmq": "rabbitmq_up"}


@dataclass(frozen=True)
class Profile:
    """How a version behaves: share of 5xx, latency distribution (cumulative share per bucket),
    CPU cores and memory per pod while serving."""

    error_ratio: float
    cumulative: tuple[float, ...]  # one per BUCKETS entry, ending at 1.0
    mean_seconds: float
    cpu_cores: float
    memory_bytes: float
    status: str = "500"

    def quantile(self, q: float) -> float:
        """What Prometheus's histogram_quantile computes for this distribution (linear in a bucket)."""
        lower_bound, lower_share = 0.0, 0.0
        for bound, share in zip(BUCKETS, self.cumulative, strict=True):
            if share >= q:
                if math.isinf(bound):
                    return lower_bound
                return lower_bound + (bound - lower_bound) * (q - lower_share) / (share - lower_share)
            lower_bound, lower_share = bound, share
        return lower_bound


GOOD = Profile(
    error_ratio=0.0005,
    cumulative=(0.02, 0.08, 0.30, 0.60, 0.88, 0.97, 0.98, 0.995, 0.999, 1.0, 1.0, 1.0),
    mean_seconds=0.06,
    cpu_cores=0.12,
    memory_bytes=180 * 1024 * 1024,
)
BAD = Profile(
    error_ratio=0.6,
    cumulative=(0.0, 0.0, 0.0, 0.01, 0.03, 0.06, 0.08, 0.15, 0.40, 0.97, 1.0, 1.0),
    mean_seconds=1.6,
    cpu_cores=0.45,
    memory_bytes=430 * 1024 * 1024,
)
NO_ENDPOINTS = Profile(  # the ingress itself answers: nothing behind it is ready
    error_ratio=1.0,
    cumulative=(1.0,) * len(BUCKETS),
    mean_seconds=0.001,
    cpu_cores=0.0,
    memory_bytes=0.0,
    status="503",
)
IDLE_CPU_CORES = 0.02


def rps_of(service: str) -> float:
    """A fixed request rate per service (10–50 rps), different for each, stable across runs."""
    h = int.from_bytes(hashlib.blake2b(service.encode(), digest_size=4).digest(), "big")
    return float(10 + h % 41)


def is_bad(image: str, bad_mode: str | None) -> bool:
    tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
    return bad_mode is not None or "bad" in tag.lower()


def _labels(labels: Mapping[str, str]) -> str:
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + body + "}" if body else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound)


@dataclass
class _Requests:
    by_status: dict[str, float]
    buckets: list[float]
    total_seconds: float = 0.0

    @classmethod
    def empty(cls) -> _Requests:
        return cls({"200": 0.0, "500": 0.0}, [0.0] * len(BUCKETS))

    def add(self, count: float, profile: Profile) -> None:
        if count <= 0:
            return
        errors = count * profile.error_ratio
        self.by_status[profile.status] = self.by_status.get(profile.status, 0.0) + errors
        self.by_status["200"] += count - errors
        for i, share in enumerate(profile.cumulative):
            self.buckets[i] += count * share
        self.total_seconds += count * profile.mean_seconds

    @property
    def count(self) -> float:
        return sum(self.by_status.values())


class Traffic:
    """The traffic generator of one sandbox cluster; advances on each scrape."""

    def __init__(self, cluster: Any, catalog: Catalog):
        self.cluster = cluster
        self.catalog = catalog
        self.namespace = catalog.namespace
        self._lock = threading.Lock()
        self._last: float | None = None
        self._requests: dict[tuple[str, Color], _Requests] = {}
        self._cpu: dict[str, float] = {}  # pod -> CPU seconds
        self._memory: dict[str, float] = {}
        self._pods: dict[str, tuple[str, Color]] = {}  # pod -> (service, color), pods seen alive
        self.dependencies: dict[str, bool] = dict.fromkeys(DEPENDENCIES, True)
        self.business = business.Business()  # payflow_transactions_total & co., since the start

    def set_dependencies(self, states: Mapping[str, bool]) -> dict[str, bool]:
        unknown = set(states) - set(DEPENDENCIES)
        if unknown:
            raise ValueError(f"unknown dependencies {sorted(unknown)}; known: {sorted(DEPENDENCIES)}")
        with self._lock:
            self.dependencies.update({k: bool(v) for k, v in states.items()})
            return dict(self.dependencies)

    # -- where requests go ------------------------------------------------------------------

    def _objects(self, kind: str) -> list[dict[str, Any]]:
        """The namespace's objects of `kind` as stored, by name; read-only, under the cluster lock."""
        stored = self.cluster.store.objects[kind]
        return [obj for (ns, _), obj in sorted(stored.items()) if ns == self.namespace]

    def _live_colors(self) -> dict[str, Color | None]:
        """Where each service's traffic object sends it; one read of the traffic objects for all."""
        ingresses = {i["metadata"]["name"]: i for i in self._objects("Ingress")}
        selectors = {s["metadata"]["name"]: s for s in self._objects("Service")}
        return {s: self._live_color(s, ingresses, selectors) for s in self.catalog.services}

    def _live_color(
        self, service: str, ingresses: Mapping[str, Any], selectors: Mapping[str, Any]
    ) -> Color | None:
        traffic = self.catalog.service(service).traffic
        if traffic.kind == "ingress":
            ingress = ingresses.get(traffic.name)
            if ingress is None:  # the traffic object is missing: nothing is served
                return None
            for rule in ingress.get("spec", {}).get("rules", []) or []:
                if rule.get("host") != traffic.host:
                    continue
                for path in (rule.get("http") or {}).get("paths", []) or []:
                    if path.get("path", "/") == traffic.path:
                        backend = ((path.get("backend") or {}).get("service") or {}).get("name")
                        return next(
                            (c for c in COLORS if self.catalog.k8s_service_name(service, c) == backend),
                            None,
                        )
            return None
        svc = selectors.get(traffic.name)
        if svc is None:
            return None
        value = (svc.get("spec", {}).get("selector") or {}).get(traffic.selector_key)
        return value if value in COLORS else None

    def _pod_states(self) -> list[tuple[str, str, Color, bool, Profile]]:
        """(pod, service, color, ready, profile) of every pod of the catalog's services."""
        out = []
        for pod in self._objects("Pod"):
            labels = pod["metadata"].get("labels") or {}
            service, color = labels.get("app"), labels.get("color")
            if service not in self.catalog.services or color not in COLORS:
                continue
            statuses = (pod.get("status") or {}).get("containerStatuses") or []
            ready = bool(statuses) and all(s.get("ready") for s in statuses)
            images = [str(c.get("image") or "") for c in pod["spec"].get("containers") or []]
            bad = any(is_bad(i, self.cluster.kubelet.bad_image_mode(i)) for i in images)
            out.append((pod["metadata"]["name"], service, color, ready, BAD if bad else GOOD))
        return out

    def advance(self, now: float | None = None) -> None:
        """Let the traffic since the last call happen, routed as the cluster is routed now."""
        now = self.cluster.now() if now is None else now
        with self.cluster.lock:  # pods and routing from one moment, brought up to date once
            self.cluster.reconcile()
            pods = self._pod_states()
            live = self._live_colors()
        serving: dict[tuple[str, str], list[Profile]] = {}
        for _, service, color, ready, profile in pods:
            if ready:
                serving.setdefault((service, color), []).append(profile)
        with self._lock:
            dt = 0.0 if self._last is None else max(0.0, now - self._last)
            if dt > 0:
                wall = self.cluster.store.wall_offset
                share = self._failed_share(live.get(business.SERVICE), serving)
                self.business.advance(now - dt + wall, now + wall, share)
            self._last = now
            for service, routed in live.items():
                count = rps_of(service) * dt
                for c in COLORS:
                    self._requests.setdefault((service, c), _Requests.empty())
                if routed is None:
                    continue
                requests = self._requests[(service, routed)]
                profiles = serving.get((service, routed), [])
                if not profiles:
                    requests.add(count, NO_ENDPOINTS)
                for profile in profiles:
                    requests.add(count / len(profiles), profile)
            alive = set()
            for name, service, color, ready, profile in pods:
                alive.add(name)
                self._pods[name] = (service, color)
                busy = ready and live.get(service) == color
                cores = profile.cpu_cores if busy else IDLE_CPU_CORES
                self._cpu[name] = self._cpu.get(name, 0.0) + cores * dt
                self._memory[name] = profile.memory_bytes if ready else 20 * 1024 * 1024
            for gone in set(self._pods) - alive:  # a deleted pod's series end, as in a real cluster
                self._pods.pop(gone)
                self._cpu.pop(gone, None)
                self._memory.pop(gone, None)

    def _failed_share(self, color: Color | None, serving: Mapping[tuple[str, str], list[Profile]]) -> float:
        """Transactions fail with transaction-service's errors, all of them without PostgreSQL."""
        if not self.dependencies["postgres"]:
            return 1.0
        if business.SERVICE not in self.catalog.services:
            return business.FAILED_SHARE
        profiles = serving.get((business.SERVICE, color), []) if color is not None else []
        if not profiles:
            return 1.0
        errors = sum(p.error_ratio for p in profiles) / len(profiles)
        return max(business.FAILED_SHARE, errors)

    # -- exposition -------------------------------------------------------------------------

    def exposition(self) -> str:
        """The text format Prometheus scrapes (version 0.0.4)."""
        self.advance()
        with self._lock:
            return "".join(self._lines())

    def _lines(self) -> Iterator[str]:
        ns = self.namespace
        yield "# HELP http_requests_total Requests served, by status.\n# TYPE http_requests_total counter\n"
        for (service, color), req in sorted(self._requests.items()):
            for status, value in sorted(req.by_status.items()):
                labels = {"namespace": ns, "service": service, "color": color, "status": status}
                yield f"http_requests_total{_labels(labels)} {_num(value)}\n"
        yield (
            "# HELP http_request_duration_seconds Request latency.\n"
            "# TYPE http_request_duration_seconds histogram\n"
        )
        for (service, color), req in sorted(self._requests.items()):
            base = {"namespace": ns, "service": service, "color": color}
            for bound, value in zip(BUCKETS, req.buckets, strict=True):
                labels = {**base, "le": _le(bound)}
                yield f"http_request_duration_seconds_bucket{_labels(labels)} {_num(value)}\n"
            yield f"http_request_duration_seconds_sum{_labels(base)} {_num(req.total_seconds)}\n"
            yield f"http_request_duration_seconds_count{_labels(base)} {_num(req.count)}\n"
        yield from self._container_lines()
        yield from dependency_lines(self.dependencies)
        yield from self.business.lines()

    def _container_lines(self) -> Iterator[str]:
        pods = sorted(self._pods.items())
        yield "# TYPE container_cpu_usage_seconds_total counter\n"
        for name, (service, color) in pods:
            yield f"container_cpu_usage_seconds_total{_labels(self._pod_labels(name, service, color))} "
            yield f"{_num(self._cpu[name])}\n"
        yield "# TYPE container_memory_working_set_bytes gauge\n"
        for name, (service, color) in pods:
            yield f"container_memory_working_set_bytes{_labels(self._pod_labels(name, service, color))} "
            yield f"{_num(self._memory[name])}\n"
        yield "# TYPE kube_pod_container_resource_limits gauge\n"
        for name, (service, color) in pods:
            for resource, unit, value in (
                ("cpu", "core", CPU_LIMIT_CORES),
                ("memory", "byte", MEMORY_LIMIT_BYTES),
            ):
                labels = {**self._pod_labels(name, service, color), "resource": resource, "unit": unit}
                yield f"kube_pod_container_resource_limits{_labels(labels)} {_num(value)}\n"

    def _pod_labels(self, pod: str, service: str, color: str) -> dict[str, str]:
        container = self.catalog.container_name(service)
        return {
            "namespace": self.namespace,
            "pod": pod,
            "container": container,
            "service": service,
            "color": color,
        }


def dependency_lines(states: Mapping[str, bool]) -> Iterator[str]:
    for name, metric in DEPENDENCIES.items():
        up = 1 if states.get(name, True) else 0
        yield f"# TYPE {metric} gauge\n{metric}{_labels({'pod': f'{name}-0'})} {up}\n"


# -- history for promtool ------------------------------------------------------------------


@dataclass(frozen=True)
class Stretch:
    """One service's traffic in a backfilled history: where it went and how it behaved."""

    service: str
    color: Color = "blue"
    profile: Profile = GOOD
    rps: float | None = None
    pods: int = 3


def history(
    stretches: Iterable[Stretch],
    start: float,
    end: float,
    step: float = 15.0,
    *,
    namespace: str = "payflow",
    dependencies: Mapping[str, bool] | None = None,
    with_business: bool = False,
) -> str:
    """OpenMetrics text (seconds timestamps) of every stretch from `start` to `end`, counters
    starting at zero: `rate()` over any part of it gives exactly the stretch's rates.
    `with_business`: also the business metrics of a healthy stretch (``sandbox.business``)."""
    times = [start + i * step for i in range(int((end - start) // step) + 1)]
    out: list[str] = []
    stretches = list(stretches)

    def series(name: str, labels: Mapping[str, str], value_at: Any) -> None:
        lab = _labels(labels)
        out.extend(f"{name}{lab} {_num(value_at(t - start))} {t:.3f}\n" for t in times)

    out.append("# TYPE http_requests counter\n")
    for s in stretches:
        rps = s.rps if s.rps is not None else rps_of(s.service)
        base = {"namespace": namespace, "service": s.service, "color": s.color}
        ok_rate = rps * (1 - s.profile.error_ratio)
        err_rate = rps * s.profile.error_ratio
        series("http_requests_total", {**base, "status": "200"}, lambda e, r=ok_rate: r * e)
        series("http_requests_total", {**base, "status": s.profile.status}, lambda e, r=err_rate: r * e)
    out.append("# TYPE http_request_duration_seconds histogram\n")
    for s in stretches:
        rps = s.rps if s.rps is not None else rps_of(s.service)
        base = {"namespace": namespace, "service": s.service, "color": s.color}
        for bound, share in zip(BUCKETS, s.profile.cumulative, strict=True):
            labels = {**base, "le": _le(bound)}
            series("http_request_duration_seconds_bucket", labels, lambda e, r=rps * share: r * e)
        series("http_request_duration_seconds_sum", base, lambda e, r=rps * s.profile.mean_seconds: r * e)
        series("http_request_duration_seconds_count", base, lambda e, r=rps: r * e)
    out.append("# TYPE container_cpu_usage_seconds counter\n")
    for s in stretches:
        for i in range(s.pods):
            labels = _history_pod(namespace, s, i)
            series("container_cpu_usage_seconds_total", labels, lambda e, c=s.profile.cpu_cores: c * e)
    out.append("# TYPE container_memory_working_set_bytes gauge\n")
    for s in stretches:
        for i in range(s.pods):
            memory = s.profile.memory_bytes
            series("container_memory_working_set_bytes", _history_pod(namespace, s, i), lambda e, v=memory: v)
    out.append("# TYPE kube_pod_container_resource_limits gauge\n")
    for s in stretches:
        for i in range(s.pods):
            labels = _history_pod(namespace, s, i)
            for resource, unit, limit in (
                ("cpu", "core", CPU_LIMIT_CORES),
                ("memory", "byte", MEMORY_LIMIT_BYTES),
            ):
                lab = {**labels, "resource": resource, "unit": unit}
                series("kube_pod_container_resource_limits", lab, lambda e, v=limit: v)
    states = dependencies or {}
    for name, metric in DEPENDENCIES.items():
        out.append(f"# TYPE {metric} gauge\n")
        up = 1 if states.get(name, True) else 0
        series(metric, {"pod": f"{name}-0"}, lambda e, v=up: v)
    if with_business:
        out.extend(business.history_lines(start, end, step))
    out.append("# EOF\n")
    return "".join(out)


def _history_pod(namespace: str, s: Stretch, i: int) -> dict[str, str]:
    return {
        "namespace": namespace,
        "pod": f"{s.service}-{s.color}-{i}",
        "container": s.service,
        "service": s.service,
        "color": s.color,
    }
