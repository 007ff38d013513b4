"""Which NetworkPolicies select which pods, by Kubernetes' own rules, so `/payflow netpol` can say
which services' pods are not isolated (issue 13).

A policy selects a pod of its namespace when its `podSelector` matches the pod's labels
(`matchLabels` AND every `matchExpressions` requirement; an empty selector selects every pod).
Its directions are its `policyTypes`; when those are absent (an object written before the API
server defaulted them), Ingress always and Egress only if it has egress rules. A pod selected in a
direction is isolated there: only what some selecting policy's rules allow gets through, so a
direction whose selecting policies carry no rules is "deny all". A rule that lets every source
in (no peers and no ports, `namespaceSelector: {}`, ipBlock 0.0.0.0/0 without exceptions) makes
the isolation one in name only: those pods are "open to all".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

INGRESS, EGRESS = "Ingress", "Egress"
DIRECTIONS = (INGRESS, EGRESS)


@dataclass(frozen=True)
class Policy:
    name: str
    selector: Mapping[str, Any]
    types: frozenset[str]
    rules: Mapping[str, int]  # direction -> number of rules (0: the direction is denied entirely)
    open_to_all: frozenset[str] = frozenset()  # directions in which some rule lets everything through

    @property
    def selects_all(self) -> bool:
        return not self.selector.get("matchLabels") and not self.selector.get("matchExpressions")

    @property
    def default_deny_ingress(self) -> bool:
        return self.selects_all and INGRESS in self.types and not self.rules[INGRESS]


def requirement_holds(expr: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """One `matchExpressions` entry; an operator Kubernetes does not know matches nothing."""
    key, op = expr.get("key"), expr.get("operator")
    values = list(expr.get("values") or [])
    if not isinstance(key, str):
        return False
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    return False


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector against labels: matchLabels AND matchExpressions; empty selects all."""
    selector = selector or {}
    match_labels = selector.get("matchLabels") or {}
    if any(labels.get(k) != v for k, v in match_labels.items()):
        return False
    return all(requirement_holds(e, labels) for e in selector.get("matchExpressions") or [])


_EVERYWHERE = ("0.0.0.0/0", "::/0")


def _peer_is_everyone(peer: Any) -> bool:
    if not isinstance(peer, Mapping):
        return False
    block = peer.get("ipBlock")
    if isinstance(block, Mapping):
        return block.get("cidr") in _EVERYWHERE and not block.get("except")
    namespaces = peer.get("namespaceSelector")
    return (
        namespaces is not None
        and not _selects_by_something(namespaces)
        and not _selects_by_something(peer.get("podSelector"))
    )


def _selects_by_something(selector: Any) -> bool:
    return isinstance(selector, Mapping) and bool(
        selector.get("matchLabels") or selector.get("matchExpressions")
    )


def _rule_is_open(rule: Any, peers: str) -> bool:
    """Every source (or destination) on every port: no peers and no ports, or a peer that is all."""
    if not isinstance(rule, Mapping) or rule.get("ports"):
        return False
    listed = rule.get(peers) or []
    return not listed or any(_peer_is_everyone(p) for p in listed)


def policy(obj: Mapping[str, Any]) -> Policy:
    """A NetworkPolicy object as read from the API server (raw JSON)."""
    spec = obj.get("spec") or {}
    ingress, egress = spec.get("ingress") or [], spec.get("egress") or []
    declared = [t for t in spec.get("policyTypes") or [] if t in DIRECTIONS]
    types = set(declared) if declared else {INGRESS, *([EGRESS] if egress else [])}
    return Policy(
        name=str((obj.get("metadata") or {}).get("name", "?")),
        selector=spec.get("podSelector") or {},
        types=frozenset(types),
        rules={INGRESS: len(ingress), EGRESS: len(egress)},
        open_to_all=frozenset(
            d
            for d, rules, peers in ((INGRESS, ingress, "from"), (EGRESS, egress, "to"))
            if any(_rule_is_open(r, peers) for r in rules)
        ),
    )


@dataclass(frozen=True)
class Direction:
    """One direction of a group of pods: which policies select them, and how many pods no policy
    selects (open) or only rule-less policies select (nothing allowed)."""

    policies: tuple[str, ...]  # selecting policies with rules for this direction
    deny_all: tuple[str, ...]  # selecting policies without rules (isolate, allow nothing)
    open_pods: int
    denied_pods: int
    wide: tuple[str, ...] = ()  # selecting policies with a rule open to everything
    wide_pods: int = 0  # pods isolated only in name: some selecting policy lets everything through

    @property
    def covered(self) -> bool:
        """Every pod isolated and allowed something: what an allow-list policy set looks like."""
        return self.open_pods == 0 and self.denied_pods == 0 and self.wide_pods == 0 and bool(self.policies)

    def describe(self, pods: int) -> str:
        if self.open_pods == pods:
            return "none: not isolated"
        if self.open_pods:
            return f"none for {self.open_pods} of {pods} pods"
        if self.wide_pods:
            names = ", ".join(self.wide)
            return (
                f"open to all ({names})"
                if self.wide_pods == pods
                else f"open to all for {self.wide_pods} of {pods} pods ({names})"
            )
        if self.denied_pods:
            deny = ", ".join(self.deny_all)
            return (
                f"deny all ({deny})"
                if self.denied_pods == pods
                else f"deny all for {self.denied_pods} of {pods} pods ({deny})"
            )
        return ", ".join(self.policies)


def direction(policies: Iterable[Policy], pods: list[Mapping[str, str]], kind: str) -> Direction:
    """How the pods (their labels) are covered in `kind` (Ingress or Egress)."""
    allowing: set[str] = set()
    denying: set[str] = set()
    wide: set[str] = set()
    open_pods = denied_pods = wide_pods = 0
    relevant = [p for p in policies if kind in p.types]
    for labels in pods:
        picked = [p for p in relevant if selects(p.selector, labels)]
        allows = {p.name for p in picked if p.rules[kind]}
        denies = {p.name for p in picked if not p.rules[kind]}
        everything = {p.name for p in picked if kind in p.open_to_all}
        allowing |= allows
        denying |= denies
        wide |= everything
        if not picked:
            open_pods += 1
        elif everything:
            wide_pods += 1
        elif not allows:
            denied_pods += 1
    return Direction(
        tuple(sorted(allowing)),
        tuple(sorted(denying)),
        open_pods,
        denied_pods,
        tuple(sorted(wide)),
        wide_pods,
    )
