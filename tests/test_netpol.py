"""`/payflow netpol` through the served bot against the sandbox (issue 13): the seeded namespace
leaves the catalog's last service without an allow policy, shown first; policies the test adds
with matchExpressions change the answer exactly as Kubernetes' selector rules say; and the
selector rules themselves, operator by operator."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.domain import netpol

NS = "payflow"


def _rows(post: dict[str, Any]) -> list[str]:
    """The table's code lines, in the order shown."""
    blocks = post["blocks"] if isinstance(post["blocks"], list) else json.loads(post["blocks"])
    texts = [b["text"]["text"] for b in blocks if b.get("type") == "section"]
    lines = [line for t in texts for line in t.splitlines()]
    return [line.strip("`") for line in lines if line.startswith("`")][1:]  # the first is the header


def _policy(name: str, selector: dict[str, Any], *, ingress: bool = True, egress: bool = True) -> dict:
    spec: dict[str, Any] = {"podSelector": selector, "policyTypes": []}
    if ingress:
        spec["policyTypes"].append("Ingress")
        spec["ingress"] = [{"from": [{"podSelector": {"matchLabels": {"app": "api-gateway"}}}]}]
    if egress:
        spec["policyTypes"].append("Egress")
        spec["egress"] = [{"to": [{"podSelector": {"matchLabels": {"app": "postgres"}}}]}]
    return {"metadata": {"name": name}, "spec": spec}


def test_the_uncovered_service_comes_first_and_a_new_policy_changes_the_answer(chat, k8s_view, catalog):
    last = list(catalog.services)[-1]
    k8s_view.apps.patch_namespaced_deployment_scale(
        f"{last}-green", NS, {"spec": {"replicas": 2}}, _request_timeout=5
    )
    k8s_view.wait_settled()
    answer = chat.run("netpol")
    [post] = answer.posts
    rows = _rows(post)
    assert rows[0].split()[:2] == [last, "blue"] and rows[1].split()[:2] == [last, "green"]
    assert "deny all (default-deny-ingress)" in rows[0] and "none: not isolated" in rows[0]
    covered = next(r for r in rows if r.startswith("wallet-service") and "blue" in r)
    assert "wallet-service-allow-ingress" in covered and "wallet-service-allow-egress" in covered
    text = answer.all_text()
    assert f"*{last}* blue (ingress and egress), *{last}* green (ingress and egress)" in text
    assert ["api-gateway", "green", "0", "—", "—"] in [
        r.split() for r in rows
    ] and "`default-deny-ingress`" in text
    assert "Selecting no service's pods: `db-jobs-allow-egress`" in text
    assert "⚠️ Network policies · payflow" in text

    # blue only: NotIn keeps green out; Exists and In must hold too
    only_blue = {
        "matchExpressions": [
            {"key": "app", "operator": "In", "values": [last]},
            {"key": "color", "operator": "NotIn", "values": ["green"]},
            {"key": "color", "operator": "Exists"},
        ]
    }
    k8s_view.net.create_namespaced_network_policy(NS, _policy("txn-blue", only_blue), _request_timeout=5)
    rows = _rows(chat.run(f"netpol {last}").posts[0])
    assert rows[0].split()[:2] == [last, "green"] and "none: not isolated" in rows[0]
    assert rows[1].split()[:2] == [last, "blue"] and "txn-blue" in rows[1] and "none" not in rows[1]

    green = {
        "matchLabels": {"app": last},
        "matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}],
    }
    k8s_view.net.create_namespaced_network_policy(NS, _policy("txn-all", green), _request_timeout=5)
    answer = chat.run("netpol")
    assert "✅ Network policies · payflow" in answer.all_text()
    assert all("none" not in r and "deny all" not in r for r in _rows(answer.posts[0]))
    [*_, entry] = chat.audit()
    assert (entry.action, entry.outcome) == ("netpol", "ok")


def test_bad_input_is_refused_and_reads_nothing(chat, k8s_view):
    answer = chat.run("netpol nope")
    assert "Unknown service `nope`" in answer.ack_text and not answer.posts
    answer = chat.run("netpol wallet-service extra")
    assert "Too many arguments: `extra`" in answer.ack_text and not answer.posts


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({}, {"app": "x"}, True),
        ({"matchLabels": {"app": "x"}}, {"app": "x", "color": "blue"}, True),
        ({"matchLabels": {"app": "x", "color": "green"}}, {"app": "x", "color": "blue"}, False),
        ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["x", "y"]}]}, {"app": "y"}, True),
        ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["x"]}]}, {}, False),
        ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["x"]}]}, {}, True),
        ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["x"]}]}, {"app": "x"}, False),
        ({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, {"app": ""}, True),
        ({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, {"app": ""}, False),
        ({"matchExpressions": [{"key": "app", "operator": "Gt", "values": ["1"]}]}, {"app": "2"}, False),
        (  # matchLabels AND matchExpressions
            {"matchLabels": {"app": "x"}, "matchExpressions": [{"key": "tier", "operator": "Exists"}]},
            {"app": "x"},
            False,
        ),
    ],
)
def test_label_selectors_follow_kubernetes(selector, labels, expected):
    assert netpol.selects(selector, labels) is expected


def test_policy_types_default_as_kubernetes_says():
    only_rules = netpol.policy({"metadata": {"name": "p"}, "spec": {"egress": [{}]}})
    assert only_rules.types == {"Ingress", "Egress"}
    bare = netpol.policy({"metadata": {"name": "p"}, "spec": {"podSelector": {}}})
    assert bare.types == {"Ingress"} and bare.default_deny_ingress
    egress_only = netpol.policy({"metadata": {"name": "p"}, "spec": {"policyTypes": ["Egress"]}})
    assert egress_only.types == {"Egress"} and not egress_only.default_deny_ingress
    pods = [{"app": "x"}, {"app": "y"}]
    found = netpol.direction([egress_only], pods, "Egress")
    assert (found.denied_pods, found.covered, found.describe(2)) == (2, False, "deny all (p)")
    assert netpol.direction([egress_only], pods, "Ingress").describe(2) == "none: not isolated"
