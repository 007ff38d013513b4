"""The three patch dialects (plus server-side apply, treated as strategic merge): RFC 7386 merge,
strategic merge with Kubernetes' list keys and ``$patch`` directives, and RFC 6902 JSON patch.

``decode_patch`` checks what arrived (400, 415), ``Patch.apply`` applies it (422 when it cannot be
applied), so the registry only ever sees a patched object or an ``ApiError``.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any

import yaml

from sandbox.apiserver.kinds import JSON, ApiError

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


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


def parse_body(raw: Any, *, yaml_ok: bool = False) -> Any:
    if not isinstance(raw, bytes | bytearray | str):
        return copy.deepcopy(raw)
    try:
        return json.loads(raw)
    except ValueError as exc:
        if yaml_ok:
            try:
                return yaml.safe_load(bytes(raw) if isinstance(raw, bytearray) else raw)
            except yaml.YAMLError:
                pass
        raise ApiError.bad_request(f"error decoding patch: {exc}") from exc


@dataclass(frozen=True)
class Patch:
    """A decoded patch body of one dialect: ``ops`` for JSON patch, ``body`` for the others."""

    content_type: str
    body: Any
    ops: list[JSON] | None

    def apply(self, target: JSON) -> JSON:
        try:
            if self.ops is not None:
                patched = apply_json_patch(target, self.ops)
            elif self.content_type == MERGE_PATCH:
                patched = merge_patch(target, self.body)
            else:
                patched = strategic_merge_patch(target, self.body)
        except PatchError as exc:
            raise ApiError(
                422,
                "Invalid",
                f"the server rejected our request due to an error in our request: {exc}",
                {"causes": [{"message": str(exc)}]},
            ) from exc
        if not isinstance(patched, dict):
            raise ApiError.bad_request("the patched object is not a JSON object")
        return patched


def decode_patch(raw: Any, content_type: str) -> Patch:
    """``raw`` may be bytes/str (as received over HTTP) or an already-decoded value."""
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    if ctype not in (MERGE_PATCH, STRATEGIC_MERGE_PATCH, JSON_PATCH, APPLY_PATCH):
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media types include: "
            f"{JSON_PATCH}, {MERGE_PATCH}, {STRATEGIC_MERGE_PATCH}, {APPLY_PATCH}",
        )
    body = parse_body(raw, yaml_ok=ctype == APPLY_PATCH)
    ops = decode_json_patch(body) if ctype == JSON_PATCH else None
    if ops is None and not isinstance(body, dict):
        raise ApiError.bad_request("error decoding patch: the patch must be a JSON object")
    return Patch(ctype, body, ops)
