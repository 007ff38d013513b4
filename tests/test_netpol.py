"""`/payflow netpol` through the served bot against the sandbox (issue 13): the seeded namespace
leaves the catalog's last service without an allow policy, shown first; policies the test adds
with matchExpressions change the answer exactly as Kubernetes' selector rules say; and the
selector rules themselves, operator by operator."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from bot.domain import netpol
from sandbox.seed import with_services

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


# --- red team ----------------------------------------------------------------------------------


def _create(k8s_view, body: dict) -> None:
    k8s_view.net.create_namespaced_network_policy(NS, body, _request_timeout=5)


@pytest.mark.parametrize(
    ("selector", "said"),
    [
        (
            {"matchExpressions": [{"key": "app", "operator": "In"}]},
            "spec.podSelector.matchExpressions[0].values: Required value: must be specified when "
            "`operator` is 'In' or 'NotIn'",
        ),
        (
            {"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["x"]}]},
            "spec.podSelector.matchExpressions[0].values: Forbidden",
        ),
        (
            {"matchExpressions": [{"key": "app", "operator": "Matches", "values": ["wallet.*"]}]},
            'spec.podSelector.matchExpressions[0].operator: Invalid value: "Matches": not a valid selector '
            "operator",
        ),
    ],
)
def test_a_malformed_selector_is_refused_as_kubernetes_refuses_it(chat, k8s_view, selector, said):
    """The sandbox stored selectors kube-apiserver refuses, so `netpol` was shown cluster states
    that cannot exist (the bot reads such a requirement as matching nothing)."""
    before = chat.run("netpol").all_text()
    with pytest.raises(ApiException) as err:
        _create(k8s_view, _policy("odd-selector", selector))
    assert err.value.status == 422 and said in json.loads(err.value.body)["message"]
    peer = _policy("odd-peer", {"matchLabels": {"app": "x"}})
    peer["spec"]["ingress"] = [{"from": [{"namespaceSelector": selector}]}]
    with pytest.raises(ApiException) as err:
        _create(k8s_view, peer)
    assert (
        err.value.status == 422
        and "spec.ingress[0].from[0].namespaceSelector.matchExpressions" in err.value.body
    )
    assert chat.run("netpol").all_text().count("odd-") == before.count("odd-") == 0


def test_peers_that_allow_everyone_are_not_counted_as_isolation(chat, k8s_view, catalog):
    """A rule without peers and ports, `namespaceSelector: {}` or ipBlock 0.0.0.0/0 lets every
    source in: the pods are isolated only in name."""
    last = list(catalog.services)[-1]
    everyone = [
        {},
        {"from": [{"namespaceSelector": {}}]},
        {"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]},
    ]
    for i, rule in enumerate(everyone):
        body = {
            "metadata": {"name": f"open-{i}"},
            "spec": {
                "podSelector": {"matchLabels": {"app": last}},
                "policyTypes": ["Ingress"],
                "ingress": [rule],
            },
        }
        _create(k8s_view, body)
        rows = [r for r in _rows(chat.run(f"netpol {last}").posts[0]) if r.split()[2] != "0"]
        assert rows and all(f"open to all (open-{i})" in r for r in rows), rows
        k8s_view.net.delete_namespaced_network_policy(f"open-{i}", NS, _request_timeout=5)
    # an ipBlock with exceptions, or a namespaceSelector that selects, is a real allow-list
    narrow = {
        "metadata": {"name": "narrow"},
        "spec": {
            "podSelector": {"matchLabels": {"app": last}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]},
                {"from": [{"namespaceSelector": {"matchLabels": {"team": "pay"}}}]},
            ],
        },
    }
    _create(k8s_view, narrow)
    rows = [r for r in _rows(chat.run(f"netpol {last}").posts[0]) if r.split()[2] != "0"]
    assert rows and all("narrow" in r and "open to all" not in r for r in rows)


def test_empty_selector_egress_only_denies_egress_for_every_pod(chat, k8s_view):
    body = {"metadata": {"name": "deny-egress"}, "spec": {"podSelector": {}, "policyTypes": ["Egress"]}}
    _create(k8s_view, body)
    answer = chat.run("netpol wallet-service")
    rows = [r for r in _rows(answer.posts[0]) if r.split()[2] != "0"]
    assert rows and all("wallet-service-allow-egress" in r for r in rows)
    assert "Default deny (ingress): `default-deny-ingress`" in answer.all_text()  # not deny-egress


def test_a_policy_name_with_a_card_and_labels_with_mentions_reach_no_one(chat, k8s_view, catalog):
    last = list(catalog.services)[-1]
    body = _policy("pci-4111111111111111", {"matchLabels": {"app": last}})
    _create(k8s_view, body)
    _create(k8s_view, _policy("mention", {"matchLabels": {"app": "<!channel>", "card": "4111111111111111"}}))
    text = chat.run("netpol").all_text()
    assert "4111111111111111" not in text and "<!channel>" not in text
    assert "pci-[REDACTED card]" in text


class TestAThousandServices:
    """2,000 service colors: the message stays within Slack's per-block limits (the stand-in
    refuses more), says what it leaves out, and the full table goes in the file."""

    @pytest.fixture
    def catalog(self, catalog):
        return with_services(catalog, 1000)

    def test_netpol_fits_and_accounts_for_every_service(self, chat, k8s_view, slack, catalog):
        for n in range(1, 13):  # twelve services lose their ingress allow-list: more gaps than named
            k8s_view.net.delete_namespaced_network_policy(f"svc-{n:04}-allow-ingress", NS, _request_timeout=5)
        answer = chat.run("netpol")
        [post] = answer.posts
        blocks = post["blocks"] if isinstance(post["blocks"], list) else json.loads(post["blocks"])
        assert len(blocks) <= 50
        for b in blocks:
            if b.get("type") == "section":
                assert len(b["text"]["text"]) <= 3000
        text = answer.all_text()
        assert "Not isolated or allowed nothing: *svc-0" in text and "…and 3 more" in text
        assert "13 of 2000 service colors shown; the full table of all 2000 is in the file" in text
        [content] = slack.uploads.values()
        rows = content.decode().splitlines()
        assert len(rows) == 2 * 1000 + 1
        assert {r.split()[0] for r in rows[1:]} == set(catalog.services)
        [entry] = chat.audit()
        assert (entry.action, entry.outcome) == ("netpol", "ok")
