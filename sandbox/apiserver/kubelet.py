"""The kubelet: runs the pods the controller creates -- readiness after ``ready_delay``, image
pull failures and crash loops for images marked bad, container and pod status as kubectl shows
them -- and serves their logs and what their Services' /health would answer.

Pods exist twice: the API object in the store, and a ``PodSim`` here holding the times the
status is derived from. Status is published (and the resourceVersion bumped) only on change.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from sandbox.apiserver import runs
from sandbox.apiserver.events import NODE_NAME, EventRecorder
from sandbox.apiserver.kinds import JSON, ApiError
from sandbox.apiserver.pod_logs import ContainerSim, LogWriter, image_tag
from sandbox.apiserver.runs import NODE_IP, Run
from sandbox.apiserver.selectors import Requirement, labels_match
from sandbox.apiserver.storage import Store

BAD_IMAGE_MODES = ("ImagePullBackOff", "CrashLoopBackOff")
DEFAULT_READY_DELAY = 0.3

__all__ = ["BAD_IMAGE_MODES", "NODE_NAME", "Kubelet", "PodSim", "image_tag", "parse_bad_images"]


def parse_bad_images(spec: str) -> dict[str, str]:
    """``"v6.6.6=CrashLoopBackOff,repo/img:tag"`` -> mapping; a bare entry means ImagePullBackOff."""
    out: dict[str, str] = {}
    for entry in (e.strip() for e in spec.split(",")):
        if not entry:
            continue
        key, _, mode = entry.partition("=")
        mode = mode.strip() or "ImagePullBackOff"
        if mode not in BAD_IMAGE_MODES:
            raise ValueError(f"unknown bad-image mode {mode!r} (want one of {', '.join(BAD_IMAGE_MODES)})")
        out[key.strip()] = mode
    return out


def images(pod: JSON) -> list[str]:
    return [str(c.get("image") or "") for c in (pod.get("spec") or {}).get("containers") or []]


def waiting_reasons(pod: JSON) -> list[str]:
    out = []
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        reason = ((status.get("state") or {}).get("waiting") or {}).get("reason")
        if reason:
            out.append(reason)
    return out


@dataclass
class PodSim:
    created: float
    seq: int
    ip: str
    owner: tuple[str, str] | None = None  # (deployment name, template hash)
    containers: dict[str, ContainerSim] = field(default_factory=dict)
    ready_since: float | None = None
    run: Run | None = None  # a pod that runs to completion (``sandbox.apiserver.runs``)


class Kubelet:
    def __init__(self, store: Store, events: EventRecorder, ready_delay: float) -> None:
        self._store = store
        self._events = events
        self.ready_delay = ready_delay
        self.bad_images: dict[str, str] = {}
        self.pods: dict[tuple[str, str], PodSim] = {}
        # Pods with something left to happen; the others are settled (Ready, nothing pending).
        self.pending: set[tuple[str, str]] = set()
        # (namespace, label, value) -> pods, so a service's /health finds its pods without a
        # scan of every pod (1,000 services probed would be quadratic).
        self._by_label: dict[tuple[str, str, str], set[tuple[str, str]]] = {}
        self._labels: dict[tuple[str, str], dict[str, str]] = {}
        self.logs = LogWriter(store.wall_offset)
        self._seq = 0

    def bad_image_mode(self, image: str) -> str | None:
        return self.bad_images.get(image) or self.bad_images.get(image_tag(image))

    def available(self, sim: PodSim | None, now: float, min_ready: float) -> bool:
        return sim is not None and sim.ready_since is not None and sim.ready_since + min_ready <= now

    def update_all(self, now: float) -> set[tuple[str, str]]:
        """Advance the pods that still have something to happen (not Ready, crash-looping, pulling,
        or changed by an API write since they settled); a settled pod costs nothing, so a request
        to a cluster of 1,000 services does work only for what moves. Returns the (namespace,
        deployment) owners of the pods it looked at, for the deployment controller's queue."""
        owners: set[tuple[str, str]] = set()
        for key in sorted(self.pending, key=lambda k: self.pods[k].seq if k in self.pods else 0):
            sim = self.pods.get(key)
            if sim is None:
                self.pending.discard(key)
                continue
            if sim.owner is not None:
                owners.add((key[0], sim.owner[0]))
            self.update_pod(key, now)
        return owners

    def touch(self, key: tuple[str, str]) -> None:
        """The pod was written through the API: look at it on the next tick."""
        if key in self.pods:
            self.pending.add(key)
            pod = self._store.objects["Pod"].get(key)
            self._index(key, (pod or {}).get("metadata", {}).get("labels") or {})

    def _index(self, key: tuple[str, str], labels: dict[str, Any]) -> None:
        self._unindex(key)
        self._labels[key] = {str(k): str(v) for k, v in labels.items()}
        for label, value in self._labels[key].items():
            self._by_label.setdefault((key[0], label, value), set()).add(key)

    def _unindex(self, key: tuple[str, str]) -> None:
        for label, value in self._labels.pop(key, {}).items():
            pods = self._by_label.get((key[0], label, value))
            if pods is not None:
                pods.discard(key)
                if not pods:
                    del self._by_label[(key[0], label, value)]

    def touch_all(self) -> None:
        """A knob changed (bad images, ready delay): every pod may have something to do."""
        self.pending.update(self.pods)

    def settled(self, key: tuple[str, str]) -> bool:
        return key in self.pods and key not in self.pending

    def forget(self, ns: str, name: str) -> PodSim | None:
        """The pod object is gone: stop running it."""
        self.pending.discard((ns, name))
        self._unindex((ns, name))
        return self.pods.pop((ns, name), None)

    def register_pod(
        self, ns: str, pod: JSON, owner: tuple[str, str] | None, now: float, run: Run | None = None
    ) -> PodSim:
        """Start running a stored pod; one with restartPolicy Never/OnFailure runs to completion,
        doing `run` (a Job's program) or what its annotations say."""
        self._seq += 1
        ip_n = self._seq
        sim = PodSim(
            created=now, seq=self._seq, ip=f"10.244.{(ip_n // 250) % 250}.{ip_n % 250 + 2}", owner=owner
        )
        if run is None and runs.runs_to_completion(pod):
            run = runs.from_annotations(pod["metadata"].get("annotations"))
        if run is not None:
            run.started = now + max(self.ready_delay, 0.0)
            sim.run = run
        for i, c in enumerate((pod.get("spec") or {}).get("containers") or []):
            csim = sim.containers[c["name"]] = ContainerSim(started=now, mode_since=now)
            if run is not None:
                csim.started, csim.batch = run.started, True
                csim.extra_log = run.timed_lines() if i == 0 else []
        name = pod["metadata"]["name"]
        self.pods[(ns, name)] = sim
        self._index((ns, name), pod["metadata"].get("labels") or {})
        self.update_pod((ns, name), now)
        return sim

    def update_pod(self, key: tuple[str, str], now: float) -> None:
        """Advance readiness / crash loops and publish pod status when it changed."""
        pod = self._store.objects["Pod"].get(key)
        sim = self.pods.get(key)
        if pod is None or sim is None:
            self.pending.discard(key)
            return
        if sim.run is not None:
            status = runs.status(self._store.ts, pod, sim.created, sim.ip, sim.run, now)
            if status != pod.get("status"):
                pod["status"] = status
                self._store.bump(pod)
            if status["phase"] in ("Succeeded", "Failed"):
                self.pending.discard(key)
            else:
                self.pending.add(key)
            return
        ns, name = key
        delay = max(self.ready_delay, 0.0)
        period = max(delay, 0.05)
        statuses = []
        for c in (pod.get("spec") or {}).get("containers") or []:
            csim = sim.containers.setdefault(c["name"], ContainerSim(started=now, mode_since=now))
            image = str(c.get("image") or "")
            mode = self.bad_image_mode(image) if csim.ready_since is None else None
            if mode != csim.mode:
                if csim.mode is not None and mode is None:
                    csim.started = now  # the registry was fixed: the next attempt starts now
                csim.mode, csim.mode_since = mode, now
                if mode == "ImagePullBackOff":
                    self._events.pod_event(
                        pod,
                        "Warning",
                        "Failed",
                        f'Failed to pull image "{image}": rpc error: code = '
                        f'NotFound desc = failed to pull and unpack image "{image}": not found',
                        now,
                    )
                    self._events.pod_event(pod, "Warning", "Failed", "Error: ErrImagePull", now)
                    self._events.pod_event(pod, "Normal", "BackOff", f'Back-off pulling image "{image}"', now)
            if mode == "CrashLoopBackOff" and now >= csim.started + period:
                crashes = int((now - csim.started) // period)
                csim.restarts += crashes
                csim.started += crashes * period
                csim.last_exit = (csim.started - period, csim.started)
                self._events.pod_event(
                    pod,
                    "Warning",
                    "BackOff",
                    f"Back-off restarting failed container {c['name']} in pod "
                    f"{name}_{ns}({pod['metadata']['uid']})",
                    now,
                )
            elif mode is None and csim.ready_since is None and now >= csim.started + delay:
                csim.ready_since = csim.started + delay
            statuses.append(self._container_status(pod, c, csim, image, now))
        all_ready = bool(statuses) and all(s["ready"] for s in statuses)
        if all_ready and sim.ready_since is None:
            sim.ready_since = max(cs.ready_since or now for cs in sim.containers.values())
        elif not all_ready:
            sim.ready_since = None
        status = self._pod_status(pod, sim, statuses)
        if status != pod.get("status"):
            pod["status"] = status
            self._store.bump(pod)
        settled = all_ready and all(cs.mode is None for cs in sim.containers.values())
        if settled:  # until someone changes the pod, updating it again would publish the same status
            self.pending.discard(key)
        else:
            self.pending.add(key)

    def _container_status(self, pod: JSON, c: JSON, csim: ContainerSim, image: str, now: float) -> JSON:
        name = c["name"]
        digest = hashlib.sha256(image.encode()).hexdigest()
        cid = hashlib.sha256(f"{pod['metadata']['uid']}/{name}/{csim.restarts}".encode()).hexdigest()
        status: JSON = {
            "name": name,
            "image": image,
            "imageID": f"docker.io/{image.split('@')[0]}@sha256:{digest}",
            "containerID": f"containerd://{cid}",
            "ready": csim.ready_since is not None,
            "started": True,
            "restartCount": csim.restarts,
            "state": {"running": {"startedAt": self._store.ts(csim.started)}},
            "lastState": {},
        }
        if csim.mode == "ImagePullBackOff":
            first_try = now < csim.mode_since + max(self.ready_delay, 0.05)
            status.update(imageID="", started=False, ready=False)
            status.pop("containerID")
            status["state"] = {
                "waiting": {
                    "reason": "ErrImagePull" if first_try else "ImagePullBackOff",
                    "message": f'Back-off pulling image "{image}"',
                }
            }
        elif csim.mode == "CrashLoopBackOff" and csim.last_exit is not None:
            started, finished = csim.last_exit
            status.update(started=False, ready=False)
            status["state"] = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off 10s restarting failed container={name} "
                    f"pod={pod['metadata']['name']}_{pod['metadata']['namespace']}({pod['metadata']['uid']})",
                }
            }
            status["lastState"] = {
                "terminated": {
                    "exitCode": 1,
                    "reason": "Error",
                    "startedAt": self._store.ts(started),
                    "finishedAt": self._store.ts(finished),
                    "containerID": f"containerd://{cid}",
                }
            }
        return status

    def _pod_status(self, pod: JSON, sim: PodSim, statuses: list[JSON]) -> JSON:
        ready = sim.ready_since is not None
        pulling = any(
            s["state"].get("waiting", {}).get("reason") in ("ErrImagePull", "ImagePullBackOff")
            for s in statuses
        )
        created = self._store.ts(sim.created)
        unready = [s["name"] for s in statuses if not s["ready"]]

        def cond(kind: str, ok: bool, since: float | None) -> JSON:
            out: JSON = {
                "type": kind,
                "status": "True" if ok else "False",
                "lastProbeTime": None,
                "lastTransitionTime": self._store.ts(since) if since is not None else created,
            }
            if not ok:
                out["reason"] = "ContainersNotReady"
                out["message"] = f"containers with unready status: [{' '.join(unready)}]"
            return out

        return {
            "phase": "Pending" if pulling else "Running",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": created,
                },
                {
                    "type": "Initialized",
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": created,
                },
                cond("ContainersReady", ready, sim.ready_since),
                cond("Ready", ready, sim.ready_since),
            ],
            "hostIP": NODE_IP,
            "hostIPs": [{"ip": NODE_IP}],
            "podIP": sim.ip,
            "podIPs": [{"ip": sim.ip}],
            "startTime": created,
            "containerStatuses": statuses,
            "qosClass": "BestEffort",
        }

    # ------------------------------------------------------------------ serving

    def service_health(self, ns: str, svc: JSON, port: str | None) -> tuple[int, JSON]:
        """What the service's /health would answer: 200 only if a Ready pod on a good image backs it."""
        service_name = svc["metadata"]["name"]
        spec = svc.get("spec") or {}
        unavailable = {"status": "unavailable", "service": service_name}
        if port is not None:
            ports = spec.get("ports") or []
            names = {str(p.get("port")) for p in ports} | {str(p.get("name")) for p in ports if p.get("name")}
            if port not in names:
                return 503, {
                    **unavailable,
                    "reason": f'no endpoints available for service "{service_name}:{port}"',
                }
        selector = spec.get("selector") or {}
        if not selector:
            return 503, {**unavailable, "reason": "service has no selector"}
        reqs = [Requirement(k, "=", (str(v),)) for k, v in selector.items()]
        keys = set.intersection(
            *(self._by_label.get((ns, str(k), str(v)), set()) for k, v in selector.items())
        )
        objects = self._store.objects["Pod"]
        pods = [
            (self.pods[k], objects[k])
            for k in sorted(keys)
            if k in objects and k in self.pods and labels_match(reqs, objects[k]["metadata"].get("labels"))
        ]
        if not pods:
            sel = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
            return 503, {**unavailable, "reason": f"no pods match selector {sel}"}
        ready = [(sim, p) for sim, p in pods if sim.ready_since is not None]
        good = [(sim, p) for sim, p in ready if not any(self.bad_image_mode(i) for i in images(p))]
        if not good:
            if ready:
                bad = sorted({i for _, p in ready for i in images(p) if self.bad_image_mode(i)})
                return 503, {**unavailable, "reason": f"ready pods run a bad image: {', '.join(bad)}"}
            reasons = sorted({r for _, p in pods for r in waiting_reasons(p)}) or ["not ready yet"]
            return 503, {
                **unavailable,
                "reason": f"no ready endpoints (0/{len(pods)} pods ready: {', '.join(reasons)})",
            }
        _, newest = max(good, key=lambda sp: sp[0].seq)
        image = images(newest)[0]
        return 200, {
            "status": "ok",
            "service": service_name,
            "version": image_tag(image),
            "image": image,
            "pods": len(good),
        }

    def log_lines(
        self, pod: JSON, container: str | None, now: float, previous: bool
    ) -> list[tuple[float, str]]:
        """One container's log as (monotonic time, line), newest last."""
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        sim = self.pods.get((ns, name))
        containers = (pod.get("spec") or {}).get("containers") or []
        names = [c.get("name") for c in containers]
        if container is None:
            if len(names) != 1:
                raise ApiError.bad_request(
                    f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
                )
            container = names[0]
        if container not in names or sim is None:
            raise ApiError.bad_request(f"container {container} is not valid for pod {name}")
        spec = containers[names.index(container)]
        return self.logs.lines(name, spec, sim.containers[container], now, previous, self.ready_delay)

    def add_log_lines(
        self, ns: str, pod: str, lines: list[str], container: str | None, now: float, ago: float
    ) -> None:
        sim = self.pods.get((ns, pod))
        if sim is None:
            raise KeyError(f"no pod {ns}/{pod}")
        csim = sim.containers[container] if container else next(iter(sim.containers.values()))
        t = now - ago
        csim.extra_log.extend((t + i * 1e-6, line) for i, line in enumerate(lines))
        csim.extra_log.sort(key=lambda entry: entry[0])
