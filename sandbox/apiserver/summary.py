"""The admin endpoint's and the console's picture of the cluster: deployments with their rollout
counters and conditions, pods with readiness and waiting reasons, the knobs in force."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sandbox.apiserver.kinds import JSON
from sandbox.apiserver.kubelet import images, waiting_reasons

if TYPE_CHECKING:
    from sandbox.apiserver.cluster import Cluster


def summarize(cluster: Cluster, now: float) -> JSON:
    """A compact picture of the cluster for the admin endpoint and the console."""
    deployments = []
    for (ns, name), dep in cluster.store.items("Deployment"):
        status = dep.get("status") or {}
        conds = {c["type"]: f"{c['status']}/{c.get('reason', '')}" for c in status.get("conditions", [])}
        deployments.append(
            {
                "namespace": ns,
                "name": name,
                "generation": dep["metadata"].get("generation"),
                "observedGeneration": status.get("observedGeneration"),
                "replicas": dep["spec"].get("replicas"),
                "updated": status.get("updatedReplicas"),
                "ready": status.get("readyReplicas"),
                "available": status.get("availableReplicas"),
                "images": images({"spec": dep["spec"]["template"].get("spec") or {}}),
                "conditions": conds,
            }
        )
    pods = []
    for (ns, name), pod in cluster.store.items("Pod"):
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        pods.append(
            {
                "namespace": ns,
                "name": name,
                "phase": (pod.get("status") or {}).get("phase"),
                "ready": all(s.get("ready") for s in statuses) and bool(statuses),
                "images": images(pod),
                "restarts": sum(s.get("restartCount", 0) for s in statuses),
                "reasons": waiting_reasons(pod),
            }
        )
    return {
        "resourceVersion": str(cluster.store.rv),
        "time": cluster.store.ts(now),
        "settings": {
            "ready_delay": cluster.ready_delay,
            "progress_deadline": cluster.progress_deadline,
            "bad_images": dict(cluster.kubelet.bad_images),
        },
        "counts": {k: len(v) for k, v in cluster.store.objects.items()},
        "deployments": deployments,
        "pods": pods,
        "services": sorted(f"{ns}/{n}" for ns, n in cluster.store.objects["Service"]),
        "ingresses": sorted(f"{ns}/{n}" for ns, n in cluster.store.objects["Ingress"]),
    }
