"""In-memory Kubernetes state with a simulated deployment controller and kubelet.

The bot is only trustworthy if the thing it is tested against behaves like a real API server:
optimistic concurrency, the three patch dialects, rolling updates that keep old pods until new
ones are ready, stuck rollouts that hit their progress deadline. This module holds that state as
plain Kubernetes-shaped dicts so the HTTP layer (``sandbox.k8s_api``) can serve them verbatim.
Everything is guarded by one re-entrant lock; time only advances through :meth:`Cluster.reconcile`,
which every public call runs first and a background ticker runs between calls.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import re
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import yaml

JSON = dict[str, Any]

BAD_IMAGE_MODES = ("ImagePullBackOff", "CrashLoopBackOff")
DEFAULT_READY_DELAY = 0.3
DEFAULT_PROGRESS_DEADLINE_SECONDS = 600
MAX_EVENTS = 500
MAX_LOG_LINES = 2000
LOG_INTERVAL = 1.0
LEAKY_LINES = (  # what `leaky_logs` mixes in: the kinds of secrets real payment logs leak
    "ERROR {prefix} charge declined card=4111 1111 1111 1111 order={n} amount=42.00 EUR",
    "ERROR {prefix} provider rejected pan 5500-0000-0000-0004 (do_not_honor) txn {n}",
    "WARN  {prefix} retrying upstream with Authorization: Bearer "
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyLTQyIn0.c2lnbmF0dXJlLWJ5dGVz",
    "ERROR {prefix} db reconnect failed: postgres://payflow:Sup3rS3cret@postgres-0:5432/payflow",
    "INFO  {prefix} loaded settings redis_password=hunter2 api_key=sk_live_51Habc123 order={n}",
)
NODE_NAME = "sandbox-node"
NODE_IP = "10.0.0.10"

# Kubernetes' rand.SafeEncodeString alphabet: no vowels, so generated names never spell words.
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz"
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_REVISION_ANNOTATION = "deployment.kubernetes.io/revision"

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


@dataclass(frozen=True)
class KindInfo:
    """Static facts about a kind that error messages and URL routing need."""

    kind: str
    api_version: str
    plural: str
    namespaced: bool = True
    has_status: bool = True

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @property
    def resource(self) -> str:
        """The ``deployments.apps`` spelling kube-apiserver uses in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind


KINDS: dict[str, KindInfo] = {
    k.kind: k
    for k in (
        KindInfo("Deployment", "apps/v1", "deployments"),
        KindInfo("Service", "v1", "services"),
        KindInfo("Ingress", "networking.k8s.io/v1", "ingresses"),
        KindInfo("Pod", "v1", "pods"),
        KindInfo("Event", "v1", "events", has_status=False),
        KindInfo("Namespace", "v1", "namespaces", namespaced=False),
    )
}


def kind_info(kind: str) -> KindInfo:
    """Accept ``Deployment``, ``deployment`` or ``deployments`` so callers need not care."""
    if kind in KINDS:
        return KINDS[kind]
    low = kind.lower()
    for info in KINDS.values():
        if low in (info.kind.lower(), info.plural):
            return info
    raise ApiError(404, "NotFound", f"the server doesn't have a resource type {kind!r}")


class ApiError(Exception):
    """An error that maps 1:1 onto a Kubernetes ``Status`` failure body."""

    def __init__(self, code: int, reason: str, message: str, details: JSON | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> JSON:
        body: JSON = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body

    def __repr__(self) -> str:
        return f"ApiError({self.code}, {self.reason!r}, {self.message!r})"

    @classmethod
    def not_found(cls, info: KindInfo, name: str) -> ApiError:
        return cls(
            404,
            "NotFound",
            f'{info.resource} "{name}" not found',
            {"name": name, "group": info.group, "kind": info.plural},
        )

    @classmethod
    def conflict(cls, info: KindInfo, name: str) -> ApiError:
        return cls(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {info.resource} "{name}": the object has been modified; '
            "please apply your changes to the latest version and try again",
            {"name": name, "group": info.group, "kind": info.plural},
        )

    @classmethod
    def invalid(cls, info: KindInfo, name: str, field_path: str, message: str) -> ApiError:
        return cls(
            422,
            "Invalid",
            f'{info.qualified_kind} "{name}" is invalid: {field_path}: {message}',
            {
                "name": name,
                "group": info.group,
                "kind": info.kind,
                "causes": [{"reason": "FieldValueInvalid", "message": message, "field": field_path}],
            },
        )

    @classmethod
    def bad_request(cls, message: str) -> ApiError:
        return cls(400, "BadRequest", message)


class WriteRecord(NamedTuple):
    time: float
    kind: str
    name: str
    verb: str


# ----------------------------------------------------------------------------------------------
# Selectors


class Requirement(NamedTuple):
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "=":
            return present and value == self.values[0]
        if self.op == "!=":
            return not present or value != self.values[0]
        if self.op == "in":
            return present and value in self.values
        if self.op == "notin":
            return not present or value not in self.values
        if self.op == "exists":
            return present
        return not present


_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_VALUE = r"[-A-Za-z0-9_.]*"
_EQ_RE = re.compile(rf"^({_KEY})\s*(==|=|!=)\s*({_VALUE})$")
_SET_RE = re.compile(rf"^({_KEY})\s+(in|notin)\s*\(([^)]*)\)$")
_EXISTS_RE = re.compile(rf"^(!?)\s*({_KEY})$")


def _split_top_level(text: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    buf: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf))
    return [p.strip() for p in parts if p.strip()]


def parse_label_selector(selector: str | None) -> list[Requirement]:
    """Parse the string form (``a=b,c!=d,e in (x,y),f,!g``); an empty selector matches all."""
    reqs: list[Requirement] = []
    for part in _split_top_level(selector or ""):
        if m := _EQ_RE.match(part):
            reqs.append(Requirement(m[1], "!=" if m[2] == "!=" else "=", (m[3],)))
        elif m := _SET_RE.match(part):
            values = tuple(v.strip() for v in m[3].split(",") if v.strip())
            reqs.append(Requirement(m[1], m[2], values))
        elif m := _EXISTS_RE.match(part):
            reqs.append(Requirement(m[2], "!" if m[1] else "exists", ()))
        else:
            raise ApiError.bad_request(f"unable to parse requirement: {part!r}")
    return reqs


def labels_match(reqs: list[Requirement], labels: Mapping[str, str] | None) -> bool:
    labels = labels or {}
    return all(r.matches(labels) for r in reqs)


def selector_to_string(selector: Mapping[str, Any] | None) -> str:
    """Render a LabelSelector the way ``Scale.status.selector`` does (sorted keys)."""
    selector = selector or {}
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op = expr.get("operator", "")
        key = expr.get("key", "")
        values = ",".join(sorted(expr.get("values") or []))
        if op == "In":
            parts.append(f"{key} in ({values})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def _selector_requirements(selector: Mapping[str, Any] | None) -> list[Requirement]:
    return parse_label_selector(selector_to_string(selector))


def parse_field_selector(selector: str | None) -> list[tuple[list[str], bool, str]]:
    """Field selectors as generic dotted paths (``metadata.name=x``, ``involvedObject.name!=y``)."""
    out: list[tuple[list[str], bool, str]] = []
    for part in _split_top_level(selector or ""):
        m = re.match(r"^([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*)$", part)
        if not m:
            raise ApiError.bad_request(f"invalid field selector: {part!r}")
        out.append((m[1].split("."), m[2] == "!=", m[3].strip()))
    return out


def _field_value(obj: Any, path: list[str]) -> str:
    for key in path:
        if not isinstance(obj, dict):
            return ""
        obj = obj.get(key)
    if obj is None:
        return ""
    if isinstance(obj, bool):
        return "true" if obj else "false"
    return str(obj)


# ----------------------------------------------------------------------------------------------
# Patches


class PatchError(Exception):
    """A patch that parsed but cannot be applied (kube-apiserver answers 422)."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


_NAME_KEYED = {"containers", "initContainers", "ephemeralContainers", "env", "volumes", "imagePullSecrets"}


def _merge_key(field_name: str, items: list[Any]) -> str | None:
    """The patchMergeKey kube uses for this list, or None when the list is atomic (replaced)."""
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    if field_name in _NAME_KEYED:
        return "name"
    if field_name == "volumeMounts":
        return "mountPath"
    if field_name == "conditions":
        return "type"
    if field_name == "ports":
        if any("containerPort" in i for i in items):
            return "containerPort"
        if any("port" in i for i in items):
            return "port"
    return None


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value


def _merge_list(current: list[Any], patch: list[Any], key: str) -> list[Any]:
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [_strip_directives(i) for i in patch if not (isinstance(i, dict) and i.get("$patch"))]
    result = copy.deepcopy(current)
    for item in patch:
        idx = next(
            (
                n
                for n, cur in enumerate(result)
                if isinstance(cur, dict) and key in item and cur.get(key) == item[key]
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if idx is not None:
                del result[idx]
        elif idx is None:
            result.append(_strip_directives(item))
        else:
            result[idx] = strategic_merge_patch(result[idx], item)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Merge patch plus keyed list merging (containers by name, ports by port, ...) and
    the ``$patch: replace|delete`` directives, which is what ``kubectl patch`` relies on."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return _strip_directives(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue  # $patch, $retainKeys, $setElementOrder/..., $deleteFromPrimitiveList/...
        if value is None or (isinstance(value, dict) and value.get("$patch") == "delete"):
            result.pop(key, None)
        elif isinstance(value, list):
            merge_key = _merge_key(key, value)
            current = result.get(key)
            if merge_key and isinstance(current, list):
                result[key] = _merge_list(current, value, merge_key)
            else:
                result[key] = [
                    _strip_directives(i) for i in value if not (isinstance(i, dict) and i.get("$patch"))
                ]
        else:
            result[key] = strategic_merge_patch(result.get(key), value)
    return result


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise PatchError(f"invalid JSON pointer {path!r}")
    if path == "":
        return []
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def _index(token: str, size: int, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return size
    if not re.fullmatch(r"0|[1-9][0-9]*", token):
        raise PatchError(f"invalid array index {token!r}")
    idx = int(token)
    if idx > size or (idx == size and not allow_end):
        raise PatchError(f"array index {idx} out of bounds")
    return idx


def _resolve(doc: Any, tokens: list[str]) -> Any:
    for tok in tokens:
        if isinstance(doc, dict):
            if tok not in doc:
                raise PatchError(f"path component {tok!r} does not exist")
            doc = doc[tok]
        elif isinstance(doc, list):
            doc = doc[_index(tok, len(doc), allow_end=False)]
        else:
            raise PatchError(f"path component {tok!r} is not a container")
    return doc


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: unlike Python ``==``, ``true`` is not ``1``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _resolve(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(last, len(parent), allow_end=True), value)
    else:
        raise PatchError(f"cannot add to non-container at {last!r}")
    return doc


def _remove(doc: Any, tokens: list[str]) -> tuple[Any, Any]:
    if not tokens:
        raise PatchError("cannot remove the document root")
    parent = _resolve(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"unable to remove nonexistent key: {last}: missing value")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(last, len(parent), allow_end=False))
    raise PatchError(f"cannot remove from non-container at {last!r}")


def decode_json_patch(raw: Any) -> list[JSON]:
    """Structural check only, mirroring jsonpatch.DecodePatch: failures here are 400s."""
    if not isinstance(raw, list) or not all(isinstance(op, dict) for op in raw):
        raise ApiError.bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    return raw


def apply_json_patch(doc: Any, ops: list[JSON]) -> Any:
    """RFC 6902. Operation failures (including a failed ``test``) raise :class:`PatchError`."""
    doc = copy.deepcopy(doc)
    for op in ops:
        name = op.get("op")
        tokens = _pointer(op.get("path"))
        if name in ("add", "replace", "test") and "value" not in op:
            raise PatchError(f"missing value for {name} operation")
        if name == "add":
            doc = _add(doc, tokens, copy.deepcopy(op["value"]))
        elif name == "remove":
            doc, _ = _remove(doc, tokens)
        elif name == "replace":
            _resolve(doc, tokens)  # must exist
            if tokens:
                doc, _ = _remove(doc, tokens)
            doc = _add(doc, tokens, copy.deepcopy(op["value"]))
        elif name in ("move", "copy"):
            src = _pointer(op.get("from"))
            if name == "move" and tokens[: len(src)] == src and len(tokens) > len(src):
                raise PatchError("cannot move a value into one of its children")
            if name == "move":
                doc, value = _remove(doc, src)
            else:
                value = copy.deepcopy(_resolve(doc, src))
            doc = _add(doc, tokens, value)
        elif name == "test":
            try:
                current = _resolve(doc, tokens)
            except PatchError:
                current = _Missing
            if current is _Missing or not _json_equal(current, op["value"]):
                raise PatchError(f"testing value {op.get('path')} failed: test failed")
        else:
            raise PatchError(f"Unexpected kind: {name}")
    return doc


class _MissingType:
    pass


_Missing = _MissingType()


def _parse_body(raw: Any, *, yaml_ok: bool = False) -> Any:
    if not isinstance(raw, bytes | bytearray | str):
        return copy.deepcopy(raw)
    try:
        return json.loads(raw)
    except ValueError as exc:
        if yaml_ok:
            try:
                return yaml.safe_load(raw)
            except yaml.YAMLError:
                pass
        raise ApiError.bad_request(f"error decoding patch: {exc}") from exc


# ----------------------------------------------------------------------------------------------
# Small helpers


def template_hash(template: Mapping[str, Any]) -> str:
    """Stable 10-char pod-template-hash, like the controller's fnv hash in the safe alphabet."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True, separators=(",", ":")).encode()).digest()
    num = int.from_bytes(digest[:12], "big")
    chars = []
    for _ in range(10):
        num, rem = divmod(num, len(_SAFE_ALPHABET))
        chars.append(_SAFE_ALPHABET[rem])
    return "".join(chars)


def image_tag(image: str) -> str:
    """``payflow/api-gateway:v1.0.0`` -> ``v1.0.0`` (``latest`` when untagged)."""
    image = image.split("@", 1)[0]
    last = image.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else "latest"


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


def _resolve_int_or_percent(value: Any, total: int, *, round_up: bool) -> int:
    if value is None:
        value = "25%"
    if isinstance(value, str) and value.endswith("%"):
        pct = int(value[:-1])
        whole, rem = divmod(pct * total, 100)
        return whole + (1 if round_up and rem else 0)
    return int(value)


def _meta(obj: JSON) -> JSON:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = obj["metadata"] = {}
    return meta


@dataclass
class _ContainerSim:
    started: float
    mode: str | None = None  # bad-image mode the kubelet last saw
    mode_since: float = 0.0
    restarts: int = 0
    last_exit: tuple[float, float] | None = None  # (started, finished) of the last crashed instance
    ready_since: float | None = None
    extra_log: list[tuple[float, str]] = field(default_factory=list)  # lines added by `add_log_lines`


@dataclass
class _PodSim:
    created: float
    seq: int
    ip: str
    owner: tuple[str, str] | None = None  # (deployment name, template hash)
    containers: dict[str, _ContainerSim] = field(default_factory=dict)
    ready_since: float | None = None


@dataclass
class _ReplicaSet:
    name: str
    hash: str
    uid: str
    revision: int
    created: float
    template: JSON
    replicas: int = 0
    pods: list[str] = field(default_factory=list)


@dataclass
class _DeploymentSim:
    uid: str
    rs: dict[str, _ReplicaSet] = field(default_factory=dict)
    progress_at: float = 0.0


class Cluster:
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
    ) -> None:
        env = os.environ if env is None else env
        self.lock = threading.RLock()
        self._clock = clock
        self._wall_offset = time.time() - clock()
        self._rand = random.Random(seed)
        if ready_delay is None:
            ready_delay = float(env.get("SANDBOX_READY_DELAY") or DEFAULT_READY_DELAY)
        self.ready_delay: float = ready_delay
        # Now and then a log line with a card number, a JWT or a password, as real services leak
        # them: `make run` turns it on so that `/payflow logs` shows the redaction at work.
        self.leaky_logs = False
        if progress_deadline is None and env.get("SANDBOX_PROGRESS_DEADLINE"):
            progress_deadline = float(env["SANDBOX_PROGRESS_DEADLINE"])
        self.progress_deadline: float | None = progress_deadline
        if bad_images is None:
            bad_images = parse_bad_images(env.get("SANDBOX_BAD_IMAGES", ""))
        self._bad_images: dict[str, str] = {}
        for image, mode in bad_images.items():
            self.set_bad_image(image, mode)

        self._rv = 0
        self._store: dict[str, dict[tuple[str, str], JSON]] = {k: {} for k in KINDS}
        self._pods: dict[tuple[str, str], _PodSim] = {}
        self._deployments: dict[tuple[str, str], _DeploymentSim] = {}
        self._events: deque[tuple[str, str]] = deque()
        self._event_keys: dict[tuple[str, str, str, str], str] = {}
        self._writes: Counter[tuple[str, str, str]] = Counter()
        self._write_log: list[WriteRecord] = []
        self._seq = 0
        self._ip_seq = 0
        self.traffic: Any = None  # sandbox.traffic.Traffic once seeded: served at GET /metrics
        now = self._clock()
        for ns in ("default", "kube-system"):
            self._ensure_namespace(ns, now)

    # ------------------------------------------------------------------ knobs

    def set_bad_image(self, image_or_tag: str, mode: str = "ImagePullBackOff") -> None:
        """Mark a full image or a bare tag as broken; pods not yet Ready pick it up on the next tick."""
        if mode not in BAD_IMAGE_MODES:
            raise ValueError(f"unknown bad-image mode {mode!r} (want one of {', '.join(BAD_IMAGE_MODES)})")
        if not image_or_tag:
            raise ValueError("image must not be empty")
        with self.lock:
            self._bad_images[image_or_tag] = mode

    def remove_bad_image(self, image_or_tag: str) -> None:
        with self.lock:
            self._bad_images.pop(image_or_tag, None)

    def clear_bad_images(self) -> None:
        with self.lock:
            self._bad_images.clear()

    @property
    def bad_images(self) -> dict[str, str]:
        with self.lock:
            return dict(self._bad_images)

    def bad_image_mode(self, image: str) -> str | None:
        with self.lock:
            return self._bad_images.get(image) or self._bad_images.get(image_tag(image))

    @property
    def resource_version(self) -> str:
        with self.lock:
            return str(self._rv)

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
            return self._writes[(info.kind, ns if info.namespaced else "", name)]

    @property
    def write_log(self) -> list[WriteRecord]:
        """Every API write incl. deletes, as (monotonic time, kind, name, verb)."""
        with self.lock:
            return list(self._write_log)

    def _record(self, info: KindInfo, ns: str, name: str, verb: str, now: float) -> None:
        if not verb.startswith("delete"):
            self._writes[(info.kind, ns, name)] += 1
        self._write_log.append(WriteRecord(now, info.kind, name, verb))
        del self._write_log[:-10_000]

    # ------------------------------------------------------------------ generic API

    def create(self, kind: str, obj: JSON, *, namespace: str | None = None, dry_run: bool = False) -> JSON:
        info = kind_info(kind)
        if not isinstance(obj, dict):
            raise ApiError.bad_request("the body of the request must be a JSON object")
        with self.lock:
            now = self._reconcile_locked()
            obj = copy.deepcopy(obj)
            self._check_type(info, obj)
            meta = _meta(obj)
            ns = self._namespace_for(info, meta, namespace)
            name = meta.get("name") or ""
            if not name and meta.get("generateName"):
                name = meta["generateName"] + self._suffix()
            if not name:
                raise ApiError.invalid(
                    info, "", "metadata.name", "Required value: name or generateName is required"
                )
            if (ns, name) in self._store[info.kind]:
                raise ApiError(
                    409,
                    "AlreadyExists",
                    f'{info.resource} "{name}" already exists',
                    {"name": name, "group": info.group, "kind": info.plural},
                )
            meta.update(
                name=name,
                uid=str(uuid.UUID(int=self._rand.getrandbits(128), version=4)),
                creationTimestamp=self._ts(now),
                generation=1,
            )
            if info.namespaced:
                meta["namespace"] = ns
            else:
                meta.pop("namespace", None)
            meta.setdefault("labels", {})
            meta.setdefault("annotations", {})
            for transient in ("resourceVersion", "deletionTimestamp", "managedFields", "selfLink"):
                meta.pop(transient, None)
            if info.kind == "Event":
                meta.pop("generation", None)
            self._default(info, obj, None)
            self._validate(info, name, obj, None)
            if info.has_status and info.kind != "Pod":
                obj["status"] = self._initial_status(info)
            if dry_run:
                return obj
            if info.namespaced:
                self._ensure_namespace(ns, now)
            self._put(info, ns, name, obj)
            if info.kind == "Pod":
                self._register_pod(ns, obj, None, now)
            elif info.kind == "Deployment":
                self._sync_deployment(ns, obj, now)
            elif info.kind == "Event":
                self._events.append((ns, name))
                self._trim_events()
            self._record(info, ns, name, "create", now)
            return copy.deepcopy(self._store[info.kind][(ns, name)])

    def get(self, kind: str, ns: str | None, name: str, *, subresource: str | None = None) -> JSON:
        info = kind_info(kind)
        with self.lock:
            self._reconcile_locked()
            obj = self._must_get(info, ns, name)
            if subresource == "scale":
                return self._scale_view(info, obj)
            if subresource not in (None, "status"):
                raise self._no_subresource(info, subresource)
            return copy.deepcopy(obj)

    def list(
        self,
        kind: str,
        ns: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[JSON]:
        """Objects sorted by (namespace, name) like etcd returns them; ``ns=None`` means all."""
        info = kind_info(kind)
        reqs = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector)
        with self.lock:
            self._reconcile_locked()
            out = []
            for (obj_ns, _), obj in sorted(self._store[info.kind].items()):
                if info.namespaced and ns is not None and obj_ns != ns:
                    continue
                if not labels_match(reqs, obj["metadata"].get("labels")):
                    continue
                if any((_field_value(obj, path) == value) == negate for path, negate, value in fields):
                    continue
                out.append(copy.deepcopy(obj))
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
            current = self._must_get(info, ns, name)
            body_meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
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
                raise self._no_subresource(info, subresource)
            if body_meta.get("name") and body_meta["name"] != name:
                raise ApiError.bad_request(
                    f"the name of the object ({body_meta['name']}) does not match the name on the URL "
                    f"({name})"
                )
            new = copy.deepcopy(obj)
            self._check_type(info, new)
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
        ctype = (content_type or "").split(";", 1)[0].strip().lower()
        if ctype not in (MERGE_PATCH, STRATEGIC_MERGE_PATCH, JSON_PATCH, APPLY_PATCH):
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{JSON_PATCH}, {MERGE_PATCH}, {STRATEGIC_MERGE_PATCH}, {APPLY_PATCH}",
            )
        body = _parse_body(patch, yaml_ok=ctype == APPLY_PATCH)
        ops = decode_json_patch(body) if ctype == JSON_PATCH else None
        if ops is None and not isinstance(body, dict):
            raise ApiError.bad_request("error decoding patch: the patch must be a JSON object")
        with self.lock:
            now = self._reconcile_locked()
            current = self._must_get(info, ns, name)
            if subresource not in (None, "status", "scale"):
                raise self._no_subresource(info, subresource)
            target = self._scale_view(info, current) if subresource == "scale" else copy.deepcopy(current)
            try:
                if ops is not None:
                    patched = apply_json_patch(target, ops)
                elif ctype == MERGE_PATCH:
                    patched = merge_patch(target, body)
                else:
                    patched = strategic_merge_patch(target, body)
            except PatchError as exc:
                raise ApiError(
                    422,
                    "Invalid",
                    f"the server rejected our request due to an error in our request: {exc}",
                    {"causes": [{"message": str(exc)}]},
                ) from exc
            if not isinstance(patched, dict):
                raise ApiError.bad_request("the patched object is not a JSON object")
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
            self._check_type(info, patched)
            return self._commit(info, current, patched, "patch", now, dry_run)

    def delete(self, kind: str, ns: str | None, name: str, *, dry_run: bool = False) -> JSON:
        """Delete at once (no graceful termination); owned pods and namespaces cascade."""
        info = kind_info(kind)
        with self.lock:
            now = self._reconcile_locked()
            obj = copy.deepcopy(self._must_get(info, ns, name))
            if dry_run:
                return obj
            key_ns = ns if info.namespaced else ""
            self._remove(info, key_ns or "", name)
            if info.kind == "Namespace":
                for other in KINDS.values():
                    if other.namespaced:
                        for obj_ns, obj_name in [k for k in self._store[other.kind] if k[0] == name]:
                            self._remove(other, obj_ns, obj_name)
            self._record(info, key_ns or "", name, "delete", now)
            return obj

    # ------------------------------------------------------------------ non-generic API

    def reconcile(self, now: float | None = None) -> None:
        """Advance the controller and kubelet to ``now`` (default: the clock)."""
        with self.lock:
            self._reconcile_locked(now)

    def health(self, ns: str, service_name: str, port: str | None = None) -> tuple[int, JSON]:
        """What the service's /health would answer: 200 only if a Ready pod on a good image backs it."""
        info = KINDS["Service"]
        with self.lock:
            self._reconcile_locked()
            svc = self._must_get(info, ns, service_name)
            spec = svc.get("spec") or {}
            unavailable = {"status": "unavailable", "service": service_name}
            if port is not None:
                ports = spec.get("ports") or []
                names = {str(p.get("port")) for p in ports} | {
                    str(p.get("name")) for p in ports if p.get("name")
                }
                if port not in names:
                    return 503, {
                        **unavailable,
                        "reason": f'no endpoints available for service "{service_name}:{port}"',
                    }
            selector = spec.get("selector") or {}
            if not selector:
                return 503, {**unavailable, "reason": "service has no selector"}
            reqs = [Requirement(k, "=", (str(v),)) for k, v in selector.items()]
            pods = [
                (self._pods[k], p)
                for k, p in self._store["Pod"].items()
                if k[0] == ns and labels_match(reqs, p["metadata"].get("labels")) and k in self._pods
            ]
            if not pods:
                sel = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
                return 503, {**unavailable, "reason": f"no pods match selector {sel}"}
            ready = [(sim, p) for sim, p in pods if sim.ready_since is not None]
            good = [(sim, p) for sim, p in ready if not any(self._bad_image_mode(i) for i in _images(p))]
            if not good:
                if ready:
                    bad = sorted({i for _, p in ready for i in _images(p) if self._bad_image_mode(i)})
                    return 503, {**unavailable, "reason": f"ready pods run a bad image: {', '.join(bad)}"}
                reasons = sorted({r for _, p in pods for r in _waiting_reasons(p)}) or ["not ready yet"]
                return 503, {
                    **unavailable,
                    "reason": f"no ready endpoints (0/{len(pods)} pods ready: {', '.join(reasons)})",
                }
            _, newest = max(good, key=lambda sp: sp[0].seq)
            image = _images(newest)[0]
            return 200, {
                "status": "ok",
                "service": service_name,
                "version": image_tag(image),
                "image": image,
                "pods": len(good),
            }

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
        info = KINDS["Pod"]
        with self.lock:
            now = self._reconcile_locked()
            pod = self._must_get(info, ns, name)
            sim = self._pods.get((ns, name))
            containers = (pod.get("spec") or {}).get("containers") or []
            names = [c.get("name") for c in containers]
            if container is None:
                if len(names) != 1:
                    raise ApiError.bad_request(
                        f"a container name must be specified for pod {name}, "
                        f"choose one of: [{' '.join(names)}]"
                    )
                container = names[0]
            if container not in names or sim is None:
                raise ApiError.bad_request(f"container {container} is not valid for pod {name}")
            spec = containers[names.index(container)]
            csim = sim.containers[container]
            lines = self._log_lines(name, spec, csim, now, previous)
        if since_seconds is not None:
            lines = [(t, text) for t, text in lines if t >= now - since_seconds]
        if tail_lines is not None:
            lines = lines[-tail_lines:] if tail_lines > 0 else []
        out = "".join(
            (f"{self._ts(t, nanos=True)} " if timestamps else "") + text + "\n" for t, text in lines
        )
        if limit_bytes is not None:
            out = out.encode()[:limit_bytes].decode(errors="ignore")
        return out

    def add_log_lines(
        self, ns: str, pod: str, lines: list[str], *, container: str | None = None, ago: float = 0.0
    ) -> None:
        """Make a running container log `lines`, stamped `ago` seconds in the past (tests' corpus)."""
        with self.lock:
            now = self._reconcile_locked()
            sim = self._pods.get((ns, pod))
            if sim is None:
                raise KeyError(f"no pod {ns}/{pod}")
            csim = sim.containers[container] if container else next(iter(sim.containers.values()))
            t = now - ago
            csim.extra_log.extend((t + i * 1e-6, line) for i, line in enumerate(lines))
            csim.extra_log.sort(key=lambda entry: entry[0])

    def summary(self) -> JSON:
        """A compact picture of the cluster for the admin endpoint and the console."""
        with self.lock:
            now = self._reconcile_locked()
            deployments = []
            for (ns, name), dep in sorted(self._store["Deployment"].items()):
                status = dep.get("status") or {}
                conds = {
                    c["type"]: f"{c['status']}/{c.get('reason', '')}" for c in status.get("conditions", [])
                }
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
                        "images": _images({"spec": dep["spec"]["template"].get("spec") or {}}),
                        "conditions": conds,
                    }
                )
            pods = []
            for (ns, name), pod in sorted(self._store["Pod"].items()):
                statuses = (pod.get("status") or {}).get("containerStatuses") or []
                pods.append(
                    {
                        "namespace": ns,
                        "name": name,
                        "phase": (pod.get("status") or {}).get("phase"),
                        "ready": all(s.get("ready") for s in statuses) and bool(statuses),
                        "images": _images(pod),
                        "restarts": sum(s.get("restartCount", 0) for s in statuses),
                        "reasons": _waiting_reasons(pod),
                    }
                )
            return {
                "resourceVersion": str(self._rv),
                "time": self._ts(now),
                "settings": {
                    "ready_delay": self.ready_delay,
                    "progress_deadline": self.progress_deadline,
                    "bad_images": dict(self._bad_images),
                },
                "counts": {k: len(v) for k, v in self._store.items()},
                "deployments": deployments,
                "pods": pods,
                "services": sorted(f"{ns}/{n}" for ns, n in self._store["Service"]),
                "ingresses": sorted(f"{ns}/{n}" for ns, n in self._store["Ingress"]),
            }

    # ------------------------------------------------------------------ storage internals

    def _ts(self, t: float, *, nanos: bool = False) -> str:
        dt = datetime.fromtimestamp(t + self._wall_offset, tz=UTC)
        if nanos:
            return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond:06d}000Z"
        return dt.strftime("%Y-%m-%dT%H:%M:%SZ")

    def _suffix(self, n: int = 5) -> str:
        return "".join(self._rand.choice(_SUFFIX_ALPHABET) for _ in range(n))

    def _bump(self, obj: JSON) -> None:
        self._rv += 1
        _meta(obj)["resourceVersion"] = str(self._rv)

    def _put(self, info: KindInfo, ns: str, name: str, obj: JSON) -> None:
        self._bump(obj)
        self._store[info.kind][(ns, name)] = obj

    def _remove(self, info: KindInfo, ns: str, name: str) -> None:
        self._store[info.kind].pop((ns, name), None)
        self._rv += 1
        if info.kind == "Pod":
            sim = self._pods.pop((ns, name), None)
            if sim and sim.owner:
                dsim = self._deployments.get((ns, sim.owner[0]))
                rs = dsim.rs.get(sim.owner[1]) if dsim else None
                if rs and name in rs.pods:
                    rs.pods.remove(name)
        elif info.kind == "Deployment":
            dsim = self._deployments.pop((ns, name), None)
            for rs in dsim.rs.values() if dsim else ():
                for pod in list(rs.pods):
                    self._remove(KINDS["Pod"], ns, pod)

    def _must_get(self, info: KindInfo, ns: str | None, name: str) -> JSON:
        obj = self._store[info.kind].get(((ns or "") if info.namespaced else "", name))
        if obj is None:
            raise ApiError.not_found(info, name)
        return obj

    @staticmethod
    def _no_subresource(info: KindInfo, sub: str | None) -> ApiError:
        return ApiError(
            404, "NotFound", f"the server could not find the requested resource ({info.plural}/{sub})"
        )

    @staticmethod
    def _check_type(info: KindInfo, obj: JSON) -> None:
        if obj.get("kind") not in (None, info.kind) or obj.get("apiVersion") not in (None, info.api_version):
            raise ApiError.bad_request(
                f"the API version in the data ({obj.get('apiVersion')}) does not match the expected "
                f"API version ({info.api_version}) / kind ({info.kind})"
            )
        obj["apiVersion"] = info.api_version
        obj["kind"] = info.kind

    @staticmethod
    def _namespace_for(info: KindInfo, meta: JSON, namespace: str | None) -> str:
        if not info.namespaced:
            return ""
        body_ns = meta.get("namespace")
        if namespace and body_ns and body_ns != namespace:
            raise ApiError.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        return namespace or body_ns or "default"

    def _ensure_namespace(self, ns: str, now: float) -> None:
        if ("", ns) in self._store["Namespace"]:
            return
        obj = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": ns,
                "uid": str(uuid.UUID(int=self._rand.getrandbits(128), version=4)),
                "creationTimestamp": self._ts(now),
                "labels": {"kubernetes.io/metadata.name": ns},
                "annotations": {},
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }
        self._put(KINDS["Namespace"], "", ns, obj)

    @staticmethod
    def _initial_status(info: KindInfo) -> JSON:
        if info.kind in ("Service", "Ingress"):
            return {"loadBalancer": {}}
        if info.kind == "Namespace":
            return {"phase": "Active"}
        return {}

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
        meta = _meta(new)
        name = cur_meta["name"]
        for key in ("name", "namespace", "uid", "creationTimestamp", "generation", "resourceVersion"):
            if key in cur_meta:
                meta[key] = cur_meta[key]
            else:
                meta.pop(key, None)
        meta.setdefault("labels", {})
        meta.setdefault("annotations", {})
        if info.has_status and not status_write:
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
            else:
                new.pop("status", None)
        self._default(info, new, current)
        self._validate(info, name, new, current)
        if info.kind != "Event" and new.get("spec") != current.get("spec"):
            meta["generation"] = int(cur_meta.get("generation") or 1) + 1
        if dry_run:
            return new
        ns = cur_meta.get("namespace", "")
        if new != current:
            self._put(info, ns, name, new)
        self._record(info, ns, name, verb, now)
        return copy.deepcopy(self._store[info.kind][(ns, name)])

    def _scale_view(self, info: KindInfo, dep: JSON) -> JSON:
        if info.kind != "Deployment":
            raise self._no_subresource(info, "scale")
        meta = dep["metadata"]
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
                "resourceVersion": meta["resourceVersion"],
                "creationTimestamp": meta["creationTimestamp"],
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
            raise self._no_subresource(info, "scale")
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

    # ------------------------------------------------------------------ defaulting & validation

    def _default(self, info: KindInfo, obj: JSON, current: JSON | None) -> None:
        spec = obj.get("spec")
        if info.kind == "Deployment" and isinstance(spec, dict):
            spec.setdefault("replicas", 1)
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", DEFAULT_PROGRESS_DEADLINE_SECONDS)
            strategy = spec.setdefault("strategy", {})
            strategy.setdefault("type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                rolling = strategy.setdefault("rollingUpdate", {})
                rolling.setdefault("maxSurge", "25%")
                rolling.setdefault("maxUnavailable", "25%")
            template = spec.get("template")
            if isinstance(template, dict):
                template.setdefault("metadata", {})
                self._default_pod_spec(template.get("spec"))
        elif info.kind == "Pod":
            self._default_pod_spec(spec)
        elif info.kind == "Service" and isinstance(spec, dict):
            spec.setdefault("type", "ClusterIP")
            spec.setdefault("sessionAffinity", "None")
            if not spec.get("clusterIP"):
                old = ((current or {}).get("spec") or {}).get("clusterIP")
                if not old:
                    self._ip_seq += 1
                    old = f"10.96.{(self._ip_seq // 250) % 250}.{self._ip_seq % 250 + 2}"
                spec["clusterIP"] = old
            spec["clusterIPs"] = [spec["clusterIP"]]
            for port in spec.get("ports") or []:
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")
                    if "port" in port:
                        port.setdefault("targetPort", port["port"])

    @staticmethod
    def _default_pod_spec(spec: Any) -> None:
        if not isinstance(spec, dict):
            return
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("schedulerName", "default-scheduler")
        for container in spec.get("containers") or []:
            if not isinstance(container, dict):
                continue
            image = str(container.get("image") or "")
            container.setdefault(
                "imagePullPolicy", "Always" if image_tag(image) == "latest" else "IfNotPresent"
            )
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")
            for port in container.get("ports") or []:
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")

    def _validate(self, info: KindInfo, name: str, obj: JSON, current: JSON | None) -> None:
        def invalid(path: str, message: str) -> ApiError:
            return ApiError.invalid(info, name, path, message)

        if info.kind != "Event" and (len(name) > 253 or not _NAME_RE.match(name)):
            raise invalid(
                "metadata.name",
                f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist '
                "of lower case alphanumeric characters, '-' or '.'",
            )
        spec = obj.get("spec")
        if info.kind == "Deployment":
            if not isinstance(spec, dict):
                raise invalid("spec", "Required value")
            replicas = spec.get("replicas")
            if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
                raise invalid(
                    "spec.replicas", f"Invalid value: {replicas!r}: must be greater than or equal to 0"
                )
            selector = spec.get("selector")
            if not isinstance(selector, dict) or not (
                selector.get("matchLabels") or selector.get("matchExpressions")
            ):
                raise invalid("spec.selector", "Required value")
            template = spec.get("template")
            if not isinstance(template, dict):
                raise invalid("spec.template", "Required value")
            labels = (template.get("metadata") or {}).get("labels") or {}
            if not labels_match(_selector_requirements(selector), labels):
                raise invalid(
                    "spec.template.metadata.labels",
                    f"Invalid value: {json.dumps(labels)}: `selector` does not match template `labels`",
                )
            if current is not None and current["spec"].get("selector") != selector:
                raise invalid("spec.selector", f"Invalid value: {json.dumps(selector)}: field is immutable")
            self._validate_pod_spec(template.get("spec"), "spec.template.spec", invalid)
        elif info.kind == "Pod":
            self._validate_pod_spec(spec, "spec", invalid)
        elif info.kind == "Service" and isinstance(spec, dict):
            for i, port in enumerate(spec.get("ports") or []):
                if not isinstance(port, dict) or not isinstance(port.get("port"), int):
                    raise invalid(f"spec.ports[{i}].port", "Required value")
        elif info.kind == "Ingress" and isinstance(spec, dict):
            for i, rule in enumerate(spec.get("rules") or []):
                for j, path in enumerate(((rule or {}).get("http") or {}).get("paths") or []):
                    where = f"spec.rules[{i}].http.paths[{j}]"
                    if (path or {}).get("pathType") not in ("Exact", "Prefix", "ImplementationSpecific"):
                        raise invalid(
                            f"{where}.pathType",
                            'Unsupported value: supported values: "Exact", '
                            '"ImplementationSpecific", "Prefix"',
                        )
                    if not isinstance((path or {}).get("backend"), dict):
                        raise invalid(f"{where}.backend", "Required value")

    @staticmethod
    def _validate_pod_spec(spec: Any, where: str, invalid: Callable[[str, str], ApiError]) -> None:
        containers = spec.get("containers") if isinstance(spec, dict) else None
        if not isinstance(containers, list) or not containers:
            raise invalid(f"{where}.containers", "Required value")
        seen: set[str] = set()
        for i, container in enumerate(containers):
            if not isinstance(container, dict) or not container.get("name"):
                raise invalid(f"{where}.containers[{i}].name", "Required value")
            if container["name"] in seen:
                raise invalid(f"{where}.containers[{i}].name", f'Duplicate value: "{container["name"]}"')
            seen.add(container["name"])
            if not container.get("image"):
                raise invalid(f"{where}.containers[{i}].image", "Required value")

    # ------------------------------------------------------------------ the simulation

    def _reconcile_locked(self, now: float | None = None) -> float:
        now = self._clock() if now is None else now
        for key in list(self._pods):
            self._update_pod(key, now)
        for (ns, _name), dep in sorted(self._store["Deployment"].items()):
            self._sync_deployment(ns, dep, now)
        return now

    def _bad_image_mode(self, image: str) -> str | None:
        return self._bad_images.get(image) or self._bad_images.get(image_tag(image))

    def _register_pod(self, ns: str, pod: JSON, owner: tuple[str, str] | None, now: float) -> _PodSim:
        self._seq += 1
        ip_n = self._seq
        sim = _PodSim(
            created=now, seq=self._seq, ip=f"10.244.{(ip_n // 250) % 250}.{ip_n % 250 + 2}", owner=owner
        )
        for c in (pod.get("spec") or {}).get("containers") or []:
            sim.containers[c["name"]] = _ContainerSim(started=now, mode_since=now)
        name = pod["metadata"]["name"]
        self._pods[(ns, name)] = sim
        self._update_pod((ns, name), now)
        return sim

    def _update_pod(self, key: tuple[str, str], now: float) -> None:
        """The kubelet: advance readiness / crash loops and publish pod status when it changed."""
        pod = self._store["Pod"].get(key)
        sim = self._pods.get(key)
        if pod is None or sim is None:
            return
        ns, name = key
        delay = max(self.ready_delay, 0.0)
        period = max(delay, 0.05)
        statuses = []
        for c in (pod.get("spec") or {}).get("containers") or []:
            csim = sim.containers.setdefault(c["name"], _ContainerSim(started=now, mode_since=now))
            image = str(c.get("image") or "")
            mode = self._bad_image_mode(image) if csim.ready_since is None else None
            if mode != csim.mode:
                if csim.mode is not None and mode is None:
                    csim.started = now  # the registry was fixed: the next attempt starts now
                csim.mode, csim.mode_since = mode, now
                if mode == "ImagePullBackOff":
                    self._pod_event(
                        pod,
                        "Warning",
                        "Failed",
                        f'Failed to pull image "{image}": rpc error: code = '
                        f'NotFound desc = failed to pull and unpack image "{image}": not found',
                        now,
                    )
                    self._pod_event(pod, "Warning", "Failed", "Error: ErrImagePull", now)
                    self._pod_event(pod, "Normal", "BackOff", f'Back-off pulling image "{image}"', now)
            if mode == "CrashLoopBackOff" and now >= csim.started + period:
                crashes = int((now - csim.started) // period)
                csim.restarts += crashes
                csim.started += crashes * period
                csim.last_exit = (csim.started - period, csim.started)
                self._pod_event(
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
            self._bump(pod)

    def _container_status(self, pod: JSON, c: JSON, csim: _ContainerSim, image: str, now: float) -> JSON:
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
            "state": {"running": {"startedAt": self._ts(csim.started)}},
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
                    "startedAt": self._ts(started),
                    "finishedAt": self._ts(finished),
                    "containerID": f"containerd://{cid}",
                }
            }
        return status

    def _pod_status(self, pod: JSON, sim: _PodSim, statuses: list[JSON]) -> JSON:
        ready = sim.ready_since is not None
        pulling = any(
            s["state"].get("waiting", {}).get("reason") in ("ErrImagePull", "ImagePullBackOff")
            for s in statuses
        )
        created = self._ts(sim.created)
        unready = [s["name"] for s in statuses if not s["ready"]]

        def cond(kind: str, ok: bool, since: float | None) -> JSON:
            out: JSON = {
                "type": kind,
                "status": "True" if ok else "False",
                "lastProbeTime": None,
                "lastTransitionTime": self._ts(since) if since is not None else created,
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

    def _available(self, sim: _PodSim | None, now: float, min_ready: float) -> bool:
        return sim is not None and sim.ready_since is not None and sim.ready_since + min_ready <= now

    def _sync_deployment(self, ns: str, dep: JSON, now: float) -> None:
        """The deployment controller: one pass of the rolling-update algorithm plus status."""
        meta = dep["metadata"]
        name = meta["name"]
        spec = dep["spec"]
        dsim = self._deployments.get((ns, name))
        if dsim is None or dsim.uid != meta["uid"]:
            dsim = self._deployments[(ns, name)] = _DeploymentSim(uid=meta["uid"], progress_at=now)
        desired = int(spec.get("replicas", 1))
        paused = bool(spec.get("paused"))
        h = template_hash(spec["template"])
        created_new = False
        if not paused:
            top = max((rs.revision for rs in dsim.rs.values()), default=0)
            rs_new = dsim.rs.get(h)
            if rs_new is None:
                rs_new = dsim.rs[h] = _ReplicaSet(
                    name=f"{name}-{h}",
                    hash=h,
                    uid=str(uuid.UUID(int=self._rand.getrandbits(128), version=4)),
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

        def avail(rs: _ReplicaSet) -> int:
            return sum(self._available(self._pods.get((ns, p)), now, min_ready) for p in rs.pods)

        def scale(rs: _ReplicaSet, n: int) -> None:
            if n != rs.replicas:
                direction = "up" if n > rs.replicas else "down"
                self._event(
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
                surge = _resolve_int_or_percent(rolling.get("maxSurge"), desired, round_up=True)
                unavailable = _resolve_int_or_percent(rolling.get("maxUnavailable"), desired, round_up=False)
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
        self._update_deployment_status(ns, dep, dsim, new, created_new, paused, now, min_ready)

    def _sync_rs_pods(self, ns: str, dep: JSON, rs: _ReplicaSet, now: float) -> None:
        while len(rs.pods) < rs.replicas:
            self._create_rs_pod(ns, dep, rs, now)
        if len(rs.pods) > rs.replicas:
            # Like the ReplicaSet controller: unready pods first, then the youngest.
            ranked = sorted(
                rs.pods,
                key=lambda p: (
                    self._pods[(ns, p)].ready_since is not None if (ns, p) in self._pods else False,
                    -(self._pods[(ns, p)].seq if (ns, p) in self._pods else 0),
                ),
            )
            for pod_name in ranked[: len(rs.pods) - rs.replicas]:
                self._remove(KINDS["Pod"], ns, pod_name)

    def _create_rs_pod(self, ns: str, dep: JSON, rs: _ReplicaSet, now: float) -> None:
        template = rs.template
        while True:
            pod_name = f"{rs.name}-{self._suffix()}"
            if (ns, pod_name) not in self._store["Pod"]:
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
                "uid": str(uuid.UUID(int=self._rand.getrandbits(128), version=4)),
                "creationTimestamp": self._ts(now),
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
        self._put(KINDS["Pod"], ns, pod_name, pod)
        rs.pods.append(pod_name)
        self._register_pod(ns, pod, (dep["metadata"]["name"], rs.hash), now)

    def _update_deployment_status(
        self,
        ns: str,
        dep: JSON,
        dsim: _DeploymentSim,
        new: _ReplicaSet | None,
        created_new: bool,
        paused: bool,
        now: float,
        min_ready: float,
    ) -> None:
        spec = dep["spec"]
        desired = int(spec.get("replicas", 1))
        old_status = dep.get("status") or {}
        all_pods = [p for rs in dsim.rs.values() for p in rs.pods]
        sims = [self._pods.get((ns, p)) for p in all_pods]
        total = len(all_pods)
        updated = len(new.pods) if new else 0
        ready = sum(1 for s in sims if s is not None and s.ready_since is not None)
        available = sum(self._available(s, now, min_ready) for s in sims)
        rs_total = sum(rs.replicas for rs in dsim.rs.values())
        rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        max_unavailable = (
            _resolve_int_or_percent(rolling.get("maxUnavailable"), desired, round_up=False)
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
        ts = self._ts(now)

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
        revision = str(new.revision) if new else annotations.get(_REVISION_ANNOTATION)
        changed = status != old_status
        if revision and annotations.get(_REVISION_ANNOTATION) != revision:
            annotations[_REVISION_ANNOTATION] = revision
            changed = True
        if changed:
            dep["status"] = status
            self._bump(dep)

    # ------------------------------------------------------------------ events

    def _pod_event(self, pod: JSON, kind: str, reason: str, message: str, now: float) -> None:
        self._event(pod["metadata"]["namespace"], pod, kind, reason, message, "kubelet", now)

    def _event(
        self, ns: str, obj: JSON, kind: str, reason: str, message: str, component: str, now: float
    ) -> None:
        """Record an Event; repeats of the same (object, reason, message) bump ``count`` like kube does."""
        meta = obj["metadata"]
        key = (ns, meta["uid"], reason, message)
        ts = self._ts(now)
        existing_name = self._event_keys.get(key)
        existing = self._store["Event"].get((ns, existing_name)) if existing_name else None
        if existing is not None:
            existing["count"] = int(existing.get("count", 1)) + 1
            existing["lastTimestamp"] = ts
            self._bump(existing)
            return
        name = f"{meta['name']}.{self._rand.getrandbits(64):016x}"
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": name,
                "namespace": ns,
                "uid": str(uuid.UUID(int=self._rand.getrandbits(128), version=4)),
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
        self._put(KINDS["Event"], ns, name, event)
        self._event_keys[key] = name
        self._events.append((ns, name))
        self._trim_events()

    def _trim_events(self) -> None:
        while len(self._events) > MAX_EVENTS:
            ns, name = self._events.popleft()
            self._store["Event"].pop((ns, name), None)
        if len(self._event_keys) > 2 * MAX_EVENTS:
            self._event_keys = {
                k: v for k, v in self._event_keys.items() if (k[0], v) in self._store["Event"]
            }

    # ------------------------------------------------------------------ logs

    def _log_lines(
        self, pod: str, spec: JSON, csim: _ContainerSim, now: float, previous: bool
    ) -> list[tuple[float, str]]:
        name = spec["name"]
        image = str(spec.get("image") or "")
        version = image_tag(image)
        prefix = f"[{name} {version}]"
        if previous:
            if csim.last_exit is None:
                raise ApiError.bad_request(f'previous terminated container "{name}" in pod "{pod}" not found')
            return self._crash_lines(prefix, name, image, *csim.last_exit)
        if csim.mode == "ImagePullBackOff":
            raise ApiError.bad_request(
                f'container "{name}" in pod "{pod}" is waiting to start: trying and failing to pull image'
            )
        if csim.mode == "CrashLoopBackOff":
            # While backing off there is no live instance; the kubelet serves the last one.
            if csim.last_exit is not None:
                return self._crash_lines(prefix, name, image, *csim.last_exit)
            lines = self._crash_lines(
                prefix, name, image, csim.started, csim.started + max(self.ready_delay, 0.05)
            )
            return [(t, text) for t, text in lines if t <= now]
        port = next((p.get("containerPort") for p in spec.get("ports") or [] if isinstance(p, dict)), 8080)
        start = csim.started
        boot = [
            f"INFO  {prefix} starting {name} version={version} image={image}",
            f"INFO  {prefix} loading config from /etc/payflow/config.yaml",
            f"INFO  {prefix} connected to postgres (pool=10)",
            f"INFO  {prefix} connected to redis",
            f"INFO  {prefix} http server listening on :{port}",
            f"INFO  {prefix} ready to serve traffic",
        ]
        lines = [(start + i * 0.001, text) for i, text in enumerate(boot)]
        count = int(max(now - start, 0) / LOG_INTERVAL)
        routes = (
            "GET /health 200",
            "POST /api/v1/payments 201",
            "GET /api/v1/payments/{id} 200",
            "GET /metrics 200",
        )
        for i in range(max(1, count - MAX_LOG_LINES + 1), count + 1):
            h = int.from_bytes(hashlib.blake2b(f"{pod}/{name}/{i}".encode(), digest_size=8).digest(), "big")
            if self.leaky_logs and h % 23 == 0:
                text = LEAKY_LINES[h // 23 % len(LEAKY_LINES)].format(prefix=prefix, n=h % 100_000)
            elif h % 17 == 0:
                text = f"WARN  {prefix} slow request POST /api/v1/payments took {200 + h % 800}ms"
            else:
                text = f"INFO  {prefix} {routes[h % len(routes)]} {1 + h % 40}ms"
            lines.append((start + i * LOG_INTERVAL, text))
        if csim.extra_log:
            lines = sorted(lines + [e for e in csim.extra_log if e[0] <= now], key=lambda e: e[0])
        return [(t, f"{self._app_ts(t)} {text}") for t, text in lines[-MAX_LOG_LINES:]]

    def _crash_lines(
        self, prefix: str, name: str, image: str, start: float, end: float
    ) -> list[tuple[float, str]]:
        version = image_tag(image)
        script = [
            (0.0, f"INFO  {prefix} starting {name} version={version} image={image}"),
            (0.1, f"INFO  {prefix} loading config from /etc/payflow/config.yaml"),
            (0.5, f"ERROR {prefix} failed to initialise payment provider client (version {version})"),
            (0.8, f"ERROR {prefix} panic: runtime error: invalid memory address or nil pointer dereference"),
            (0.95, f"ERROR {prefix} exiting with status 1"),
        ]
        return [
            (start + frac * (end - start), f"{self._app_ts(start + frac * (end - start))} {text}")
            for frac, text in script
        ]

    def _app_ts(self, t: float) -> str:
        dt = datetime.fromtimestamp(t + self._wall_offset, tz=UTC)
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _images(pod: JSON) -> list[str]:
    return [str(c.get("image") or "") for c in (pod.get("spec") or {}).get("containers") or []]


def _waiting_reasons(pod: JSON) -> list[str]:
    out = []
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        reason = ((status.get("state") or {}).get("waiting") or {}).get("reason")
        if reason:
            out.append(reason)
    return out
