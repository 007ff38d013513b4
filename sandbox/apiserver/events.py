"""Events as the kubelet and the deployment controller record them: repeats of the same
(object, reason, message) bump ``count`` instead of piling up, and only the newest are kept."""

from __future__ import annotations

from collections import deque

from sandbox.apiserver.kinds import JSON, KINDS
from sandbox.apiserver.storage import Store

MAX_EVENTS = 500
NODE_NAME = "sandbox-node"


class EventRecorder:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._events: deque[tuple[str, str]] = deque()
        self._event_keys: dict[tuple[str, str, str, str], str] = {}

    def pod_event(self, pod: JSON, kind: str, reason: str, message: str, now: float) -> None:
        self.event(pod["metadata"]["namespace"], pod, kind, reason, message, "kubelet", now)

    def event(
        self, ns: str, obj: JSON, kind: str, reason: str, message: str, component: str, now: float
    ) -> None:
        """Record an Event; repeats of the same (object, reason, message) bump ``count`` like kube does."""
        store = self._store
        meta = obj["metadata"]
        key = (ns, meta["uid"], reason, message)
        ts = store.ts(now)
        existing_name = self._event_keys.get(key)
        existing = store.get("Event", ns, existing_name) if existing_name else None
        if existing is not None:
            existing["count"] = int(existing.get("count", 1)) + 1
            existing["lastTimestamp"] = ts
            store.bump(existing)
            return
        name = f"{meta['name']}.{store.rand.getrandbits(64):016x}"
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": name,
                "namespace": ns,
                "uid": store.uid(),
                "creationTimestamp": ts,
                "labels": {},
                "annotations": {},
            },
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta["name"],
                "namespace": ns,
                "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": component, **({"host": NODE_NAME} if component == "kubelet" else {})},
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
            "eventTime": None,
            "reportingComponent": component,
            "reportingInstance": NODE_NAME if component == "kubelet" else "",
        }
        store.put(KINDS["Event"], ns, name, event)
        self._event_keys[key] = name
        self.created(ns, name)

    def created(self, ns: str, name: str) -> None:
        """An Event now stored (recorded here or created through the API): count it for the trim."""
        self._events.append((ns, name))
        while len(self._events) > MAX_EVENTS:
            old_ns, old_name = self._events.popleft()
            self._store.objects["Event"].pop((old_ns, old_name), None)
        if len(self._event_keys) > 2 * MAX_EVENTS:
            events = self._store.objects["Event"]
            self._event_keys = {k: v for k, v in self._event_keys.items() if (k[0], v) in events}
