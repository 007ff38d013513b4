"""Storage: the objects, the one resourceVersion counter, and the account of API writes.

Like etcd behind kube-apiserver, every change of any object goes through here and takes the
next resourceVersion, so optimistic concurrency (409 on a stale version) and watches can rely on
one ordering. Not thread-safe by itself: the cluster holds its lock around every call.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import NamedTuple

from sandbox.apiserver.kinds import JSON, KINDS, ApiError, KindInfo, meta

# Kubernetes' rand.SafeEncodeString alphabet without digits: generated names never spell words.
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz"


class WriteRecord(NamedTuple):
    time: float
    kind: str
    name: str
    verb: str


class Store:
    """Objects by kind and (namespace, name); ``""`` is the namespace of cluster-scoped kinds."""

    def __init__(self, clock: Callable[[], float], seed: int | None) -> None:
        self.rv = 0
        self.rand = random.Random(seed)
        self.wall_offset = time.time() - clock()
        self.objects: dict[str, dict[tuple[str, str], JSON]] = {k: {} for k in KINDS}
        self._writes: Counter[tuple[str, str, str]] = Counter()
        self._write_log: list[WriteRecord] = []
        # Called with (event type, object) after every change; the watch cache listens here.
        self.listeners: list[Callable[[str, JSON], None]] = []

    # ------------------------------------------------------------------ identity and time

    def ts(self, t: float, *, nanos: bool = False) -> str:
        """RFC 3339 wall time of the monotonic instant ``t``."""
        dt = datetime.fromtimestamp(t + self.wall_offset, tz=UTC)
        if nanos:
            return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond:06d}000Z"
        return dt.strftime("%Y-%m-%dT%H:%M:%SZ")

    def uid(self) -> str:
        return str(uuid.UUID(int=self.rand.getrandbits(128), version=4))

    def suffix(self, n: int = 5) -> str:
        return "".join(self.rand.choice(_SUFFIX_ALPHABET) for _ in range(n))

    # ------------------------------------------------------------------ objects

    def get(self, kind: str, ns: str, name: str) -> JSON | None:
        return self.objects[kind].get((ns, name))

    def must_get(self, info: KindInfo, ns: str | None, name: str) -> JSON:
        obj = self.objects[info.kind].get(((ns or "") if info.namespaced else "", name))
        if obj is None:
            raise ApiError.not_found(info, name)
        return obj

    def items(self, kind: str) -> Iterator[tuple[tuple[str, str], JSON]]:
        """(key, object) pairs sorted by (namespace, name), as etcd lists them."""
        return iter(sorted(self.objects[kind].items()))

    def bump(self, obj: JSON) -> None:
        """An object already stored changed in place (status, counters): give it the next version."""
        self.rv += 1
        meta(obj)["resourceVersion"] = str(self.rv)
        self._notify("MODIFIED", obj)

    def put(self, info: KindInfo, ns: str, name: str, obj: JSON) -> None:
        existed = (ns, name) in self.objects[info.kind]
        self.rv += 1
        meta(obj)["resourceVersion"] = str(self.rv)
        self.objects[info.kind][(ns, name)] = obj
        self._notify("MODIFIED" if existed else "ADDED", obj)

    def pop(self, info: KindInfo, ns: str, name: str) -> JSON | None:
        obj = self.objects[info.kind].pop((ns, name), None)
        self.rv += 1
        if obj is not None:
            meta(obj)["resourceVersion"] = str(self.rv)
            self._notify("DELETED", obj)
        return obj

    def _notify(self, kind: str, obj: JSON) -> None:
        for listener in self.listeners:
            listener(kind, obj)

    # ------------------------------------------------------------------ write accounting

    def record(self, info: KindInfo, ns: str, name: str, verb: str, now: float) -> None:
        """One successful API write (controllers' own updates are not API writes)."""
        if not verb.startswith("delete"):
            self._writes[(info.kind, ns, name)] += 1
        self._write_log.append(WriteRecord(now, info.kind, name, verb))
        del self._write_log[:-10_000]

    def writes(self, info: KindInfo, ns: str, name: str) -> int:
        return self._writes[(info.kind, ns if info.namespaced else "", name)]

    @property
    def write_log(self) -> list[WriteRecord]:
        return list(self._write_log)
