"""The deployment controller: one pass of kube-controller-manager's rolling-update algorithm
per reconcile -- ReplicaSets per pod template, surge and unavailability budgets, revision
history, and the Available/Progressing conditions including ProgressDeadlineExceeded.

ReplicaSets are not served as API objects; they live here as ``ReplicaSetSim`` so pods can be
owned, counted and scaled exactly as the real controller does.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sandbox.apiserver.admission import DEFAULT_PROGRESS_DEADLINE_SECONDS
from sandbox.apiserver.events import NODE_NAME, EventRecorder
from sandbox.apiserver.kinds import JSON, KINDS
from sandbox.apiserver.kubelet import Kubelet
from sandbox.apiserver.storage import Store

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
# Kubernetes' rand.SafeEncodeString alphabet: no vowels, so generated names never spell words.
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def template_hash(template: Mapping[str, Any]) -> str:
    """Stable 10-char pod-template-hash, like the controller's fnv hash in the safe alphabet."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True, separators=(",", ":")).encode()).digest()
    num = int.from_bytes(digest[:12], "big")
    chars = []
    for _ in range(10):
        num, rem = divmod(num, len(_SAFE_ALPHABET))
        chars.append(_SAFE_ALPHABET[rem])
    return "".join(chars)


def resolve_int_or_percent(value: Any, total: int, *, round_up: bool) -> int:
    if value is None:
        value = "25%"
    if isinstance(value, str) and value.endswith("%"):
        pct = int(value[:-1])
        whole, rem = divmod(pct * total, 100)
        return whole + (1 if round_up and rem else 0)
    return int(value)


@dataclass
class ReplicaSetSim:
    name: str
    hash: str
    uid: str
    revision: int
    created: float
    template: JSON
    replicas: int = 0
    pods: list[str] = field(default_factory=list)


@dataclass
class DeploymentSim:
    uid: str
    rs: dict[str, ReplicaSetSim] = field(default_factory=dict)
    progress_at: float = 0.0
    template: tuple[int, str] | None = None  # (generation, pod-template-hash): hashing is costly


class DeploymentController:
    """``delete_pod(ns, name)`` removes a pod the way the cluster removes any object (store,
    kubelet, owner), so scaling down goes through the same path as ``kubectl delete pod``."""

    def __init__(
        self,
        store: Store,
        kubelet: Kubelet,
        events: EventRecorder,
        delete_pod: Callable[[str, str], None],
        progress_deadline: float | None,
    ) -> None:
        self._store = store
        self._kubelet = kubelet
        self._events = events
        self._delete_pod = delete_pod
        self.progress_deadline = progress_deadline
        self.deployments: dict[tuple[str, str], DeploymentSim] = {}
        # The work queue: deployments written, whose pods moved, or not yet steady (rolling,
        # waiting for minReadySeconds or their progress deadline). A steady one leaves it, so a
        # request costs controller work for what changes, not for every deployment.
        self.pending: set[tuple[str, str]] = set()

    def touch(self, ns: str, name: str) -> None:
        self.pending.add((ns, name))

    def touch_all(self) -> None:
        self.pending.update(self._store.objects["Deployment"])

    def sync_pending(self, now: float, touched: set[tuple[str, str]]) -> None:
        """Sync the queued deployments in (namespace, name) order, like a pass over all of them
        would, and drop from the queue those left steady."""
        self.pending |= touched
        deployments = self._store.objects["Deployment"]
        for key in sorted(self.pending):
            dep = deployments.get(key)
            if dep is None or self.sync(key[0], dep, now):
                self.pending.discard(key)

    def forget(self, ns: str, name: str) -> list[str]:
        """The deployment is gone: its pods, for the cluster to delete."""
        self.pending.discard((ns, name))
        dsim = self.deployments.pop((ns, name), None)
        return [pod for rs in dsim.rs.values() for pod in list(rs.pods)] if dsim else []

    def pod_gone(self, ns: str, name: str, owner: tuple[str, str]) -> None:
        dsim = self.deployments.get((ns, owner[0]))
        rs = dsim.rs.get(owner[1]) if dsim else None
        if rs and name in rs.pods:
            rs.pods.remove(name)
            self.pending.add((ns, owner[0]))

    def sync(self, ns: str, dep: JSON, now: float) -> bool:
        """The deployment controller: one pass of the rolling-update algorithm plus status.
        True when the deployment is steady: nothing would change until something touches it
        (an API write, one of its pods moving or going) -- the pass changed nothing, the
        rollout is complete (or paused) and every pod is settled."""
        meta = dep["metadata"]
        name = meta["name"]
        spec = dep["spec"]
        dsim = self.deployments.get((ns, name))
        if dsim is None or dsim.uid != meta["uid"]:
            dsim = self.deployments[(ns, name)] = DeploymentSim(uid=meta["uid"], progress_at=now)
        desired = int(spec.get("replicas", 1))
        paused = bool(spec.get("paused"))
        generation = int(meta.get("generation") or 0)
        if dsim.template is None or dsim.template[0] != generation:
            dsim.template = (generation, template_hash(spec["template"]))
        h = dsim.template[1]
        created_new = False
        if not paused:
            top = max((rs.revision for rs in dsim.rs.values()), default=0)
            rs_new = dsim.rs.get(h)
            if rs_new is None:
                rs_new = dsim.rs[h] = ReplicaSetSim(
                    name=f"{name}-{h}",
                    hash=h,
                    uid=self._store.uid(),
                    revision=top + 1,
                    created=now,
                    template=copy.deepcopy(spec["template"]),
                )
                created_new = True
            elif rs_new.revision != top:
                rs_new.revision = top + 1
        new = dsim.rs.get(h)
        olds = sorted((rs for rs in dsim.rs.values() if rs is not new), key=lambda r: r.created)
        min_ready = float(spec.get("minReadySeconds") or 0)

        def avail(rs: ReplicaSetSim) -> int:
            return sum(
                self._kubelet.available(self._kubelet.pods.get((ns, p)), now, min_ready) for p in rs.pods
            )

        def scale(rs: ReplicaSetSim, n: int) -> None:
            if n != rs.replicas:
                direction = "up" if n > rs.replicas else "down"
                self._events.event(
                    ns,
                    dep,
                    "Normal",
                    "ScalingReplicaSet",
                    f"Scaled {direction} replica set {rs.name} to {n} from {rs.replicas}",
                    "deployment-controller",
                    now,
                )
                rs.replicas = n
            self._sync_rs_pods(ns, dep, rs, now)

        strategy = spec.get("strategy") or {}
        if new is not None and not paused:
            if strategy.get("type") == "Recreate":
                for rs in olds:
                    scale(rs, 0)
                scale(new, desired if not any(rs.pods for rs in olds) else 0)
            elif not any(rs.replicas for rs in olds):
                scale(new, desired)
            else:
                rolling = strategy.get("rollingUpdate") or {}
                surge = resolve_int_or_percent(rolling.get("maxSurge"), desired, round_up=True)
                unavailable = resolve_int_or_percent(rolling.get("maxUnavailable"), desired, round_up=False)
                if surge == 0 and unavailable == 0:
                    unavailable = 1
                # reconcileNewReplicaSet
                total = sum(rs.replicas for rs in dsim.rs.values())
                if new.replicas > desired:
                    scale(new, desired)
                elif new.replicas < desired and total < desired + surge:
                    scale(new, new.replicas + min(desired + surge - total, desired - new.replicas))
                # reconcileOldReplicaSets
                total = sum(rs.replicas for rs in dsim.rs.values())
                min_available = desired - unavailable
                max_down = total - min_available - (new.replicas - avail(new))
                if max_down > 0:
                    for rs in olds:  # unhealthy old pods go first, they cost no availability
                        unhealthy = rs.replicas - avail(rs)
                        if max_down <= 0 or unhealthy <= 0:
                            continue
                        step = min(max_down, unhealthy)
                        scale(rs, rs.replicas - step)
                        max_down -= step
                    budget = sum(avail(rs) for rs in dsim.rs.values()) - min_available
                    for rs in olds:
                        if budget <= 0:
                            break
                        step = min(rs.replicas, budget)
                        if step > 0:
                            scale(rs, rs.replicas - step)
                            budget -= step
        for rs in dsim.rs.values():
            self._sync_rs_pods(ns, dep, rs, now)
        limit = int(spec.get("revisionHistoryLimit", 10))
        spent = [rs for rs in olds if rs.replicas == 0 and not rs.pods]
        for rs in spent[: max(len(spent) - limit, 0)]:
            del dsim.rs[rs.hash]
        changed, complete = self._update_deployment_status(
            ns, dep, dsim, new, created_new, paused, now, min_ready
        )
        return (
            not changed
            and (complete or paused)
            and not any(rs.replicas or rs.pods for rs in olds)
            and all(len(rs.pods) == rs.replicas for rs in dsim.rs.values())
            and all(self._kubelet.settled((ns, p)) for rs in dsim.rs.values() for p in rs.pods)
        )

    def _sync_rs_pods(self, ns: str, dep: JSON, rs: ReplicaSetSim, now: float) -> None:
        while len(rs.pods) < rs.replicas:
            self._create_rs_pod(ns, dep, rs, now)
        if len(rs.pods) > rs.replicas:
            # Like the ReplicaSet controller: unready pods first, then the youngest.
            sims = self._kubelet.pods
            ranked = sorted(
                rs.pods,
                key=lambda p: (
                    sims[(ns, p)].ready_since is not None if (ns, p) in sims else False,
                    -(sims[(ns, p)].seq if (ns, p) in sims else 0),
                ),
            )
            for pod_name in ranked[: len(rs.pods) - rs.replicas]:
                self._delete_pod(ns, pod_name)

    def _create_rs_pod(self, ns: str, dep: JSON, rs: ReplicaSetSim, now: float) -> None:
        template = rs.template
        while True:
            pod_name = f"{rs.name}-{self._store.suffix()}"
            if (ns, pod_name) not in self._store.objects["Pod"]:
                break
        tmeta = template.get("metadata") or {}
        labels = {**(tmeta.get("labels") or {}), "pod-template-hash": rs.hash}
        pod_spec = copy.deepcopy(template.get("spec") or {})
        pod_spec.setdefault("serviceAccountName", "default")
        pod_spec["nodeName"] = NODE_NAME
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name,
                "generateName": f"{rs.name}-",
                "namespace": ns,
                "uid": self._store.uid(),
                "creationTimestamp": self._store.ts(now),
                "labels": labels,
                "annotations": dict(tmeta.get("annotations") or {}),
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": rs.name,
                        "uid": rs.uid,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": pod_spec,
            "status": {"phase": "Pending"},
        }
        self._store.put(KINDS["Pod"], ns, pod_name, pod)
        rs.pods.append(pod_name)
        self._kubelet.register_pod(ns, pod, (dep["metadata"]["name"], rs.hash), now)

    def _update_deployment_status(
        self,
        ns: str,
        dep: JSON,
        dsim: DeploymentSim,
        new: ReplicaSetSim | None,
        created_new: bool,
        paused: bool,
        now: float,
        min_ready: float,
    ) -> tuple[bool, bool]:
        """Publish the status; returns (whether it changed, whether the rollout is complete)."""
        spec = dep["spec"]
        desired = int(spec.get("replicas", 1))
        old_status = dep.get("status") or {}
        all_pods = [p for rs in dsim.rs.values() for p in rs.pods]
        sims = [self._kubelet.pods.get((ns, p)) for p in all_pods]
        total = len(all_pods)
        updated = len(new.pods) if new else 0
        ready = sum(1 for s in sims if s is not None and s.ready_since is not None)
        available = sum(self._kubelet.available(s, now, min_ready) for s in sims)
        rs_total = sum(rs.replicas for rs in dsim.rs.values())
        rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        max_unavailable = (
            resolve_int_or_percent(rolling.get("maxUnavailable"), desired, round_up=False)
            if (spec.get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"
            else 0
        )
        status: JSON = {
            "observedGeneration": dep["metadata"].get("generation", 1),
            "replicas": total,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available,
            "unavailableReplicas": max(rs_total - available, 0),
        }
        old_conds = {c.get("type"): c for c in old_status.get("conditions") or []}
        ts = self._store.ts(now)

        def condition(kind: str, state: str, reason: str, message: str, touch: bool = True) -> JSON:
            prev = old_conds.get(kind)
            same = prev is not None and prev.get("status") == state
            if prev is not None and same and prev.get("reason") == reason and not touch:
                return prev
            return {
                "type": kind,
                "status": state,
                "lastUpdateTime": ts,
                "lastTransitionTime": prev.get("lastTransitionTime", ts) if same and prev else ts,
                "reason": reason,
                "message": message,
            }

        if available >= desired - max_unavailable:
            avail_cond = condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                touch=False,
            )
        else:
            avail_cond = condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                touch=False,
            )
        rs_name = new.name if new else f"{dep['metadata']['name']}-{template_hash(spec['template'])}"
        prev = old_conds.get("Progressing")
        complete = updated == desired and total == desired and available == desired
        progressed = (
            updated > old_status.get("updatedReplicas", 0)
            or ready > old_status.get("readyReplicas", 0)
            or available > old_status.get("availableReplicas", 0)
            or (old_status.get("replicas", 0) - old_status.get("updatedReplicas", 0)) > total - updated
        )
        deadline = self.progress_deadline
        if deadline is None:
            deadline = float(spec.get("progressDeadlineSeconds", DEFAULT_PROGRESS_DEADLINE_SECONDS))
        if paused:
            prog = condition(
                "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused", touch=False
            )
            dsim.progress_at = now
        elif created_new:
            prog = condition(
                "Progressing", "True", "NewReplicaSetCreated", f'Created new replica set "{rs_name}"'
            )
            dsim.progress_at = now
        elif complete:
            prog = condition(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{rs_name}" has successfully progressed.',
                touch=prev is None or prev.get("reason") != "NewReplicaSetAvailable",
            )
        elif (
            progressed or prev is None or prev.get("reason") in ("NewReplicaSetAvailable", "DeploymentPaused")
        ):
            prog = condition(
                "Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.'
            )
            dsim.progress_at = now
        elif prev.get("reason") != "ProgressDeadlineExceeded" and now - dsim.progress_at > deadline:
            prog = condition(
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{rs_name}" has timed out progressing.',
            )
        else:
            prog = prev
        status["conditions"] = [avail_cond, prog]
        annotations = dep["metadata"].setdefault("annotations", {})
        revision = str(new.revision) if new else annotations.get(REVISION_ANNOTATION)
        changed = status != old_status
        if revision and annotations.get(REVISION_ANNOTATION) != revision:
            annotations[REVISION_ANNOTATION] = revision
            changed = True
        if changed:
            dep["status"] = status
            self._store.bump(dep)
        return changed, complete
