"""Label and field selectors, parsed and matched the way kube-apiserver does for ``list``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from sandbox.apiserver.kinds import ApiError


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


def selector_requirements(selector: Mapping[str, Any] | None) -> list[Requirement]:
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


def field_value(obj: Any, path: list[str]) -> str:
    for key in path:
        if not isinstance(obj, dict):
            return ""
        obj = obj.get(key)
    if obj is None:
        return ""
    if isinstance(obj, bool):
        return "true" if obj else "false"
    return str(obj)
