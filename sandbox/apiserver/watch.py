"""Watches: ``?watch=true`` on a list (``kubectl get -w``, ``rollout status``, informers).

Like kube-apiserver's watch cache, a bounded history of changes in resourceVersion order: a
watch from resourceVersion N gets every change after N (410 ``Expired`` when N fell out of the
history, so the client relists), one with none or ``0`` first gets the current objects as
ADDED. Selectors are applied to each change: an object that stops matching is sent as DELETED,
one that starts matching as ADDED. ``allowWatchBookmarks`` gets a BOOKMARK with the newest
resourceVersion now and then; ``timeoutSeconds`` ends the stream cleanly.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass

from sandbox.apiserver.kinds import JSON, ApiError, KindInfo
from sandbox.apiserver.selectors import Requirement, field_value, labels_match
from sandbox.apiserver.storage import Store

HISTORY = 4096  # changes kept; an older resourceVersion answers 410 Expired
BOOKMARK_SECONDS = 5.0
DEFAULT_TIMEOUT_SECONDS = 1800.0  # kube-apiserver's --min-request-timeout
MAX_WATCHES = 200  # each open watch holds a thread: the 201st is told to come back later


@dataclass(frozen=True)
class Change:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    kind: str
    ns: str
    name: str
    raw: bytes  # the object as JSON at this version (the stored object goes on changing);
    # JSON because encoding is several times cheaper than a deep copy and it is what is sent

    def object(self) -> JSON:
        return json.loads(self.raw)


@dataclass(frozen=True)
class Filter:
    """Which objects one watch sees: its kind, namespace (None = all) and selectors."""

    info: KindInfo
    ns: str | None
    labels: list[Requirement]
    fields: list[tuple[list[str], bool, str]]

    def matches(self, ns: str, obj: JSON) -> bool:
        if self.info.namespaced and self.ns is not None and ns != self.ns:
            return False
        if not labels_match(self.labels, obj["metadata"].get("labels")):
            return False
        return not any((field_value(obj, path) == value) == negate for path, negate, value in self.fields)


class WatchCache:
    """Listens to the store (under the cluster lock) and wakes the watches' threads."""

    def __init__(self, store: Store, history: int = HISTORY) -> None:
        self.bookmark_seconds = BOOKMARK_SECONDS
        self._changes: deque[Change] = deque(maxlen=history)
        self._cond = threading.Condition()
        self.oldest_rv = store.rv  # changes after this one are all in the history
        self.latest_rv = store.rv
        self._open = 0
        self.max_open = MAX_WATCHES
        store.listeners.append(self._on_change)

    def _on_change(self, type_: str, obj: JSON) -> None:
        md = obj["metadata"]
        change = Change(
            int(md["resourceVersion"]),
            type_,
            str(obj.get("kind")),
            md.get("namespace", ""),
            md["name"],
            json.dumps(obj, separators=(",", ":")).encode(),
        )
        with self._cond:
            if len(self._changes) == self._changes.maxlen:
                self.oldest_rv = self._changes[0].rv
            self._changes.append(change)
            self.latest_rv = change.rv
            self._cond.notify_all()

    def after(self, rv: int, kind: str) -> tuple[list[Change], int] | None:
        """Changes of `kind` after `rv` and the newest rv looked at; None when `rv` is too old."""
        with self._cond:
            if rv < self.oldest_rv:
                return None
            found = [c for c in self._changes if c.rv > rv and c.kind == kind]
            return found, max(rv, self.latest_rv)

    def wait(self, rv: int, timeout: float) -> None:
        """Until something newer than `rv` happened, or `timeout`."""
        with self._cond:
            if self.latest_rv <= rv:
                self._cond.wait(timeout)

    def wake(self) -> None:
        """Let every waiting watch look at its stop flag now."""
        with self._cond:
            self._cond.notify_all()

    def acquire(self) -> None:
        with self._cond:
            if self._open >= self.max_open:
                raise ApiError(429, "TooManyRequests", "too many open watches, please try again later")
            self._open += 1

    def release(self) -> None:
        with self._cond:
            self._open -= 1


def expired(rv: int, oldest: int) -> JSON:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f"too old resource version: {rv} ({oldest})",
        "reason": "Expired",
        "code": 410,
    }


def _visible_at(
    cache: WatchCache, flt: Filter, rv: int, now_visible: set[tuple[str, str]]
) -> set[tuple[str, str]]:
    """The objects a watch from `rv` saw as present: today's, less those created since `rv`,
    plus those that matched before a later change or delete (their first change tells)."""
    found = cache.after(rv, flt.info.kind)
    visible = set(now_visible)
    decided: set[tuple[str, str]] = set()
    for change in found[0] if found else []:
        key = (change.ns, change.name)
        if key in decided:
            continue
        decided.add(key)
        if change.type == "ADDED":
            visible.discard(key)
        elif flt.matches(change.ns, change.object()):
            visible.add(key)
    return visible


def stream(
    cache: WatchCache,
    flt: Filter,
    initial: list[JSON],
    start_rv: int,
    send_initial: bool,
    *,
    render: Callable[[JSON], JSON],
    timeout: float,
    bookmarks: bool,
    stop: threading.Event,
) -> Iterator[bytes | None]:
    """The event lines of one watch: ``initial`` (the matching objects at ``start_rv``, sent as
    ADDED when ``send_initial``) then every change after ``start_rv``. ``render`` shapes each
    object (itself, or a one-row Table). Takes one of the cache's slots (429 when none is
    free) until the stream is closed, whether or not it was ever read."""
    cache.acquire()
    return _Slotted(
        cache, _events(cache, flt, initial, start_rv, send_initial, render, timeout, bookmarks, stop)
    )


class _Slotted:
    """The event lines, giving the watch's slot back on close (a generator never started would not)."""

    def __init__(self, cache: WatchCache, events: Generator[bytes | None, None, None]) -> None:
        self._cache = cache
        self._events = events
        self._open = True

    def __iter__(self) -> Iterator[bytes | None]:
        return self

    def __next__(self) -> bytes | None:
        return next(self._events)

    def close(self) -> None:
        if self._open:
            self._open = False
            self._events.close()
            self._cache.release()


def _events(
    cache: WatchCache,
    flt: Filter,
    initial: list[JSON],
    start_rv: int,
    send_initial: bool,
    render: Callable[[JSON], JSON],
    timeout: float,
    bookmarks: bool,
    stop: threading.Event,
) -> Generator[bytes | None, None, None]:
    def line(type_: str, obj: JSON) -> bytes:
        return json.dumps({"type": type_, "object": obj}, separators=(",", ":")).encode() + b"\n"

    if start_rv < cache.oldest_rv:
        yield line("ERROR", expired(start_rv, cache.oldest_rv))
        return
    visible = {(o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in initial}
    if not send_initial:
        visible = _visible_at(cache, flt, start_rv, visible)
    if send_initial:
        for obj in initial:
            yield line("ADDED", render(obj))
    position = start_rv
    deadline = time.monotonic() + timeout
    next_bookmark = time.monotonic() + cache.bookmark_seconds
    while not stop.is_set():
        now = time.monotonic()
        if now >= deadline:
            return
        if bookmarks and now >= next_bookmark:
            md = {"resourceVersion": str(position)}
            yield line(
                "BOOKMARK", {"kind": flt.info.kind, "apiVersion": flt.info.api_version, "metadata": md}
            )
            next_bookmark = now + cache.bookmark_seconds
        found = cache.after(position, flt.info.kind)
        if found is None:
            yield line("ERROR", expired(position, cache.oldest_rv))
            return
        changes, position = found
        for change in changes:
            key = (change.ns, change.name)
            obj = change.object()
            if change.type != "DELETED" and flt.matches(change.ns, obj):
                type_ = "MODIFIED" if key in visible else "ADDED"
                visible.add(key)
            elif key in visible:
                type_ = "DELETED"
                visible.discard(key)
            else:
                continue
            yield line(type_, render(obj))
        if not changes:
            cache.wait(position, min(1.0, cache.bookmark_seconds, max(deadline - now, 0.0)))
            yield None
