"""The cluster: the API server's registry (create, get, list, replace, patch, delete with
optimistic concurrency and subresources) wired to its storage, admission, deployment controller
and kubelet.

The bot is only trustworthy if the thing it is tested against behaves like a real API server:
optimistic concurrency, the three patch dialects, rolling updates that keep old pods until new
ones are ready, stuck rollouts that hit their progress deadline. Objects are plain
Kubernetes-shaped dicts so the HTTP front (``sandbox.apiserver.http``) can serve them verbatim.
Everything is guarded by one re-entrant lock; time only advances through :meth:`Cluster.reconcile`,
which every public call runs first and a background ticker runs between calls.
"""

from __future__ import annotations

import builtins  # `list` in this class is the list verb
import contextlib
import copy
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from sandbox.apiserver import admission, admission_more
from sandbox.apiserver.controllers import DeploymentController
from sandbox.apiserver.events import EventRecorder
from sandbox.apiserver.jobs import JobController
from sandbox.apiserver.kinds import JSON, KINDS, ApiError, KindInfo, kind_info, meta, no_subresource
from sandbox.apiserver.knobs import Knobs
from sandbox.apiserver.kubelet import (
    BAD_IMAGE_MODES,
    DEFAULT_READY_DELAY,
    Kubelet,
    image_tag,
    parse_bad_images,
)
from sandbox.apiserver.patches import STRATEGIC_MERGE_PATCH, decode_patch
from sandbox.apiserver.selectors import (
    field_value,
    labels_match,
    parse_field_selector,
    parse_label_selector,
    selector_to_string,
)
from sandbox.apiserver.storage import Store, WriteRecord
from sandbox.apiserver.summary import summarize
from sandbox.apiserver.watch import HISTORY, WatchCache


class Cluster(Knobs):
    """A thread-safe, process-local Kubernetes cluster (API objects + controller + kubelet).

    Time is read from ``clock`` (monotonic seconds) so tests may drive it; wall-clock
    timestamps in objects are derived from it with a fixed offset.
    """

    def __init__(
        self,
        *,
        ready_delay: float | None = None,
        bad_images: Mapping[str, str] | None = None,
        progress_deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
        env: Mapping[str, str] | None = None,
        watch_history: int = HISTORY,
    ) -> None:
        env = os.environ if env is None else env
        self.lock = threading.RLock()
        self._clock = clock
        self.store = Store(clock, seed)
        self.events = EventRecorder(self.store)
        self.watches = WatchCache(self.store, watch_history)
        if ready_delay is None:
            ready_delay = float(env.get("SANDBOX_READY_DELAY") or DEFAULT_READY_DELAY)
        self.kubelet = Kubelet(self.store, self.events, ready_delay)
        if progress_deadline is None and env.get("SANDBOX_PROGRESS_DEADLINE"):
            progress_deadline = float(env["SANDBOX_PROGRESS_DEADLINE"])
        self.controller = DeploymentController(
            self.store, self.kubelet, self.events, self._delete_pod, progress_deadline
        )
        self.jobs = JobController(
            self.store, self.kubelet, self.events, lambda kind, ns, name: self._remove(KINDS[kind], ns, name)
        )
        if bad_images is None:
            bad_images = parse_bad_images(env.get("SANDBOX_BAD_IMAGES", ""))
        for image, mode in bad_images.items():
            self.set_bad_image(image, mode)
        self._ip_seq = 0
        self._batching = False
        self.traffic: Any = None  # sandbox.traffic.Traffic once seeded: served at GET /metrics
        now = self._clock()
        for ns in ("default", "kube-system"):
            self._ensure_namespace(ns, now)

    @property
    def resource_version(self) -> str:
        with self.lock:
            return str(self.store.rv)

    def now(self) -> float:
        return self._clock()

    # ------------------------------------------------------------------ write accounting

    def writes(self, kind: str, ns: str, name: str) -> int:
        """Successful API writes (create/replace/patch, subresources included) to one object.

        Controller status updates do not count: tests use this to prove the *client* did or
        did not touch an object.
        """
        info = kind_info(kind)
        with self.lock:
            return self.store.writes(info, ns, name)

    @property
    def write_log(self) -> list[WriteRecord]:
        """Every API write incl. deletes, as (monotonic time, kind, name, verb)."""
        with self.lock:
            return self.store.write_log

    # ------------------------------------------------------------------ generic API

    def create(self, kind: str, obj: JSON, *, namespace: str | None = None, dry_run: bool = False) -> JSON:
        info = kind_info(kind)
        if not isinstance(obj, dict):
            raise ApiError.bad_request("the body of the request must be a JSON object")
        with self.lock:
            now = self._reconcile_locked()
            obj = copy.deepcopy(obj)
            admission.check_type(info, obj)
            md = meta(obj)
            ns = admission.namespace_for(info, md, namespace)
            name = md.get("name") or ""
            if not name and md.get("generateName"):
                name = md["generateName"] + self.store.suffix()
            if not name:
                raise ApiError.invalid(
                    info, "", "metadata.name", "Required value: name or generateName is required"
                )
            if self.store.get(info.kind, ns, name) is not None:
                raise ApiError(
                    409,
                    "AlreadyExists",
                    f'{info.resource} "{name}" already exists',
                    {"name": name, "group": info.group, "kind": info.plural},
                )
            md.update(name=name, uid=self.store.uid(), creationTimestamp=self.store.ts(now), generation=1)
            if info.namespaced:
                md["namespace"] = ns
            else:
                md.pop("namespace", None)
            md.setdefault("labels", {})
            md.setdefault("annotations", {})
            for transient in ("resourceVersion", "deletionTimestamp", "managedFields", "selfLink"):
                md.pop(transient, None)
            if info.kind in ("Event", "ConfigMap"):  # objects without a spec have no generation
                md.pop("generation", None)
            self._admit(info, name, obj, None)
            if info.has_status and info.kind != "Pod":
                obj["status"] = admission.initial_status(info)
            if dry_run:
                return obj
            if info.namespaced:
                self._ensure_namespace(ns, now)
            self.store.put(info, ns, name, obj)
            if info.kind == "Pod":
                self.kubelet.register_pod(ns, obj, None, now)
            elif info.kind == "Deployment":
                self.controller.touch(ns, name)
                self.controller.sync(ns, obj, now)
            elif info.kind == "Event":
                self.events.created(ns, name)
            elif info.kind == "Job":
                self.jobs.touch(ns, name)
                self.jobs.sync_pending(now)
            self.store.record(info, ns, name, "create", now)
            return copy.deepcopy(self.store.objects[info.kind][(ns, name)])

    def get(self, kind: str, ns: str | None, name: str, *, subresource: str | None = None) -> JSON:
        info = kind_info(kind)
        with self.lock:
            self._reconcile_locked()
            obj = self.store.must_get(info, ns, name)
            if subresource == "scale":
                return self._scale_view(info, obj)
            if subresource not in (None, "status"):
                raise no_subresource(info, subresource)
            return copy.deepcopy(obj)

    def list(
        self,
        kind: str,
        ns: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        *,
        copies: bool = True,
    ) -> list[JSON]:
        """Objects sorted by (namespace, name) like etcd returns them; ``ns=None`` means all.
        ``copies=False`` hands out the stored objects themselves, for a caller that only
        serializes them while it holds the lock (a list of thousands would otherwise spend most
        of its time in deepcopy)."""
        info = kind_info(kind)
        reqs = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector)
        with self.lock:
            self._reconcile_locked()
            out = []
            for (obj_ns, _), obj in self.store.items(info.kind):
                if info.namespaced and ns is not None and obj_ns != ns:
                    continue
                if not labels_match(reqs, obj["metadata"].get("labels")):
                    continue
                if any((field_value(obj, path) == value) == negate for path, negate, value in fields):
                    continue
                out.append(copy.deepcopy(obj) if copies else obj)
            return out

    def replace(
        self,
        kind: str,
        ns: str | None,
        name: str,
        obj: JSON,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> JSON:
        info = kind_info(kind)
        if not isinstance(obj, dict):
            raise ApiError.bad_request("the body of the request must be a JSON object")
        with self.lock:
            now = self._reconcile_locked()
            current = self.store.must_get(info, ns, name)
            given = obj.get("metadata")
            body_meta = given if isinstance(given, dict) else {}
            body_rv = body_meta.get("resourceVersion")
            if body_rv and str(body_rv) != current["metadata"]["resourceVersion"]:
                raise ApiError.conflict(info, name)
            if subresource == "scale":
                return self._write_scale(info, current, obj, "replace/scale", now, dry_run)
            if subresource == "status":
                new = copy.deepcopy(current)
                new["status"] = copy.deepcopy(obj.get("status") or {})
                return self._commit(info, current, new, "replace/status", now, dry_run, status_write=True)
            if subresource is not None:
                raise no_subresource(info, subresource)
            if body_meta.get("name") and body_meta["name"] != name:
                raise ApiError.bad_request(
                    f"the name of the object ({body_meta['name']}) does not match the name on the URL "
                    f"({name})"
                )
            new = copy.deepcopy(obj)
            admission.check_type(info, new)
            return self._commit(info, current, new, "replace", now, dry_run)

    def patch(
        self,
        kind: str,
        ns: str | None,
        name: str,
        patch: Any,
        content_type: str = STRATEGIC_MERGE_PATCH,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> JSON:
        """Apply a merge, strategic-merge, JSON (RFC 6902) or apply patch.

        ``patch`` may be raw bytes/str (as received over HTTP) or an already-decoded value.
        """
        info = kind_info(kind)
        decoded = decode_patch(patch, content_type)
        with self.lock:
            now = self._reconcile_locked()
            current = self.store.must_get(info, ns, name)
            if subresource not in (None, "status", "scale"):
                raise no_subresource(info, subresource)
            target = self._scale_view(info, current) if subresource == "scale" else copy.deepcopy(current)
            patched = decoded.apply(target)
            patched_rv = (patched.get("metadata") or {}).get("resourceVersion")
            if patched_rv is not None and str(patched_rv) != current["metadata"]["resourceVersion"]:
                raise ApiError.conflict(info, name)
            if subresource == "scale":
                return self._write_scale(info, current, patched, "patch/scale", now, dry_run)
            if subresource == "status":
                new = copy.deepcopy(current)
                new["status"] = patched.get("status") or {}
                return self._commit(info, current, new, "patch/status", now, dry_run, status_write=True)
            if (patched.get("metadata") or {}).get("name") != name:
                raise ApiError.bad_request("metadata.name cannot be changed by a patch")
            admission.check_type(info, patched)
            return self._commit(info, current, patched, "patch", now, dry_run)

    def delete(self, kind: str, ns: str | None, name: str, *, dry_run: bool = False) -> JSON:
        """Delete at once (no graceful termination); owned pods and namespaces cascade."""
        info = kind_info(kind)
        with self.lock:
            now = self._reconcile_locked()
            obj = copy.deepcopy(self.store.must_get(info, ns, name))
            if dry_run:
                return obj
            key_ns = (ns if info.namespaced else "") or ""
            self._remove(info, key_ns, name)
            if info.kind == "Namespace":
                for other in KINDS.values():
                    if other.namespaced:
                        for obj_ns, obj_name in [k for k in self.store.objects[other.kind] if k[0] == name]:
                            self._remove(other, obj_ns, obj_name)
            self.store.record(info, key_ns, name, "delete", now)
            return obj

    # ------------------------------------------------------------------ non-generic API

    def reconcile(self, now: float | None = None) -> None:
        """Advance the controller and kubelet to ``now`` (default: the clock)."""
        with self.lock:
            self._reconcile_locked(now)

    def health(self, ns: str, service_name: str, port: str | None = None) -> tuple[int, JSON]:
        """What the service's /health would answer: 200 only if a Ready pod on a good image backs it."""
        with self.lock:
            self._reconcile_locked()
            svc = self.store.must_get(KINDS["Service"], ns, service_name)
            return self.kubelet.service_health(ns, svc, port)

    def pod_log(
        self,
        ns: str,
        name: str,
        *,
        container: str | None = None,
        tail_lines: int | None = None,
        since_seconds: float | None = None,
        timestamps: bool = False,
        previous: bool = False,
        limit_bytes: int | None = None,
    ) -> str:
        """Deterministic synthetic log of one container, newest line last."""
        with self.lock:
            now = self._reconcile_locked()
            pod = self.store.must_get(KINDS["Pod"], ns, name)
            lines = self.kubelet.log_lines(pod, container, now, previous)
        if since_seconds is not None:
            lines = [(t, text) for t, text in lines if t >= now - since_seconds]
        if tail_lines is not None:
            lines = lines[-tail_lines:] if tail_lines > 0 else []
        out = "".join(
            (f"{self.store.ts(t, nanos=True)} " if timestamps else "") + text + "\n" for t, text in lines
        )
        if limit_bytes is not None:
            out = out.encode()[:limit_bytes].decode(errors="ignore")
        return out

    def add_log_lines(
        self, ns: str, pod: str, lines: builtins.list[str], *, container: str | None = None, ago: float = 0.0
    ) -> None:
        """Make a running container log `lines`, stamped `ago` seconds in the past (tests' corpus)."""
        with self.lock:
            now = self._reconcile_locked()
            self.kubelet.add_log_lines(ns, pod, lines, container, now, ago)

    def summary(self) -> JSON:
        """A compact picture of the cluster for the admin endpoint and the console."""
        with self.lock:
            return summarize(self, self._reconcile_locked())

    # ------------------------------------------------------------------ registry internals

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Many writes as one (seeding): the controllers do not catch up with the whole cluster
        between them, only with each new object, so 1,000 services seed in linear time; they
        catch up once at the end."""
        with self.lock:
            self._batching = True
            try:
                yield
            finally:
                self._batching = False
                self._reconcile_locked()

    def _reconcile_locked(self, now: float | None = None) -> float:
        now = self._clock() if now is None else now
        if self._batching:
            return now
        self.controller.sync_pending(now, self.kubelet.update_all(now))
        self.jobs.sync_pending(now)
        return now

    def _remove(self, info: KindInfo, ns: str, name: str) -> None:
        """Remove one object and what it owns: a pod stops running, a deployment's or a Job's pods
        go, a CronJob's Jobs go."""
        obj = self.store.pop(info, ns, name)
        if info.kind == "Pod":
            sim = self.kubelet.forget(ns, name)
            if sim and sim.owner:
                self.controller.pod_gone(ns, name, sim.owner)
        elif info.kind == "Deployment":
            for pod in self.controller.forget(ns, name):
                self._remove(KINDS["Pod"], ns, pod)
        elif info.kind == "Job":
            for pod in self.jobs.forget_job(ns, name):
                self._remove(KINDS["Pod"], ns, pod)
        elif info.kind == "CronJob" and obj is not None:
            for job in self.jobs.owned_jobs(ns, obj):
                self._remove(KINDS["Job"], ns, job["metadata"]["name"])

    def _admit(self, info: KindInfo, name: str, obj: JSON, current: JSON | None) -> None:
        admission.default(info, obj, current, self._allocate_cluster_ip)
        admission_more.default(info, obj, current)
        admission.validate(info, name, obj, current)
        admission_more.validate(info, name, obj, current)

    def _delete_pod(self, ns: str, name: str) -> None:
        self._remove(KINDS["Pod"], ns, name)

    def _allocate_cluster_ip(self) -> str:
        self._ip_seq += 1
        return f"10.96.{(self._ip_seq // 250) % 250}.{self._ip_seq % 250 + 2}"

    def _ensure_namespace(self, ns: str, now: float) -> None:
        if self.store.get("Namespace", "", ns) is not None:
            return
        obj = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": ns,
                "uid": self.store.uid(),
                "creationTimestamp": self.store.ts(now),
                "labels": {"kubernetes.io/metadata.name": ns},
                "annotations": {},
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }
        self.store.put(KINDS["Namespace"], "", ns, obj)

    def _commit(
        self,
        info: KindInfo,
        current: JSON,
        new: JSON,
        verb: str,
        now: float,
        dry_run: bool,
        *,
        status_write: bool = False,
    ) -> JSON:
        """Shared tail of replace/patch: keep system fields, default, validate, bump, count."""
        cur_meta = current["metadata"]
        md = meta(new)
        name = cur_meta["name"]
        for key in ("name", "namespace", "uid", "creationTimestamp", "generation", "resourceVersion"):
            if key in cur_meta:
                md[key] = cur_meta[key]
            else:
                md.pop(key, None)
        md.setdefault("labels", {})
        md.setdefault("annotations", {})
        if info.has_status and not status_write:
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
            else:
                new.pop("status", None)
        self._admit(info, name, new, current)
        if info.kind not in ("Event", "ConfigMap") and new.get("spec") != current.get("spec"):
            md["generation"] = int(cur_meta.get("generation") or 1) + 1
        if dry_run:
            return new
        ns = cur_meta.get("namespace", "")
        if new != current:
            self.store.put(info, ns, name, new)
            if info.kind == "Pod":
                self.kubelet.touch((ns, name))
            elif info.kind == "Deployment":
                self.controller.touch(ns, name)
            elif info.kind == "Job":
                self.jobs.touch(ns, name)
        self.store.record(info, ns, name, verb, now)
        return copy.deepcopy(self.store.objects[info.kind][(ns, name)])

    def _scale_view(self, info: KindInfo, dep: JSON) -> JSON:
        if info.kind != "Deployment":
            raise no_subresource(info, "scale")
        md = dep["metadata"]
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": md["name"],
                "namespace": md["namespace"],
                "uid": md["uid"],
                "resourceVersion": md["resourceVersion"],
                "creationTimestamp": md["creationTimestamp"],
            },
            "spec": {"replicas": dep["spec"].get("replicas", 1)},
            "status": {
                "replicas": (dep.get("status") or {}).get("replicas", 0),
                "selector": selector_to_string(dep["spec"].get("selector")),
            },
        }

    def _write_scale(
        self, info: KindInfo, current: JSON, scale: JSON, verb: str, now: float, dry_run: bool
    ) -> JSON:
        if info.kind != "Deployment":
            raise no_subresource(info, "scale")
        replicas = (scale.get("spec") or {}).get("replicas", 0)
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise ApiError.invalid(
                KINDS["Deployment"],
                current["metadata"]["name"],
                "spec.replicas",
                f"Invalid value: {replicas!r}: must be greater than or equal to 0",
            )
        new = copy.deepcopy(current)
        new["spec"]["replicas"] = replicas
        return self._scale_view(info, self._commit(info, current, new, verb, now, dry_run))


__all__ = ["BAD_IMAGE_MODES", "KINDS", "ApiError", "Cluster", "KindInfo", "image_tag", "parse_bad_images"]
