"""Discovery: what ``kubectl api-resources`` and client libraries read before their first
request (``/version``, ``/api``, ``/apis``, each group version's resource list)."""

from __future__ import annotations

from typing import Any

from sandbox.apiserver.kinds import KINDS
from sandbox.apiserver.wire import not_found_path

VERSION_INFO = {
    "major": "1",
    "minor": "37",
    "gitVersion": "v1.37.0-payflow-sandbox",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.24.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}

_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
SHORT_NAMES = {
    "Deployment": ["deploy"],
    "Service": ["svc"],
    "Ingress": ["ing"],
    "Pod": ["po"],
    "Event": ["ev"],
    "NetworkPolicy": ["netpol"],
    "CronJob": ["cj"],
    "ConfigMap": ["cm"],
}
_SUBRESOURCES: dict[str, list[tuple[str, str, str, list[str]]]] = {
    # plural -> [(subresource, kind, group/version or "", verbs)]
    "deployments": [
        ("scale", "Scale", "autoscaling/v1", ["get", "patch", "update"]),
        ("status", "Deployment", "", ["get", "patch", "update"]),
    ],
    "pods": [("log", "Pod", "", ["get"])],
    "jobs": [("status", "Job", "", ["get", "patch", "update"])],
    "cronjobs": [("status", "CronJob", "", ["get", "patch", "update"])],
    "services": [("proxy", "ServiceProxyOptions", "", ["get"])],
}


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def api_groups() -> dict[str, Any]:
    groups: dict[str, list[str]] = {}
    for info in KINDS.values():
        if info.group:
            groups.setdefault(info.group, []).append(info.api_version)
    items = []
    for group, versions in sorted(groups.items()):
        gv = [{"groupVersion": v, "version": v.rpartition("/")[2]} for v in sorted(set(versions))]
        items.append({"name": group, "versions": gv, "preferredVersion": gv[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": items}


def resource_list(group_version: str) -> dict[str, Any]:
    resources = []
    for info in KINDS.values():
        if info.api_version != group_version:
            continue
        resources.append(
            {
                "name": info.plural,
                "singularName": info.kind.lower(),
                "namespaced": info.namespaced,
                "kind": info.kind,
                "verbs": _VERBS if info.namespaced else ["get", "list", "watch", "create", "delete"],
                "shortNames": SHORT_NAMES.get(info.kind, []),
            }
        )
        for sub, kind, sub_gv, verbs in _SUBRESOURCES.get(info.plural, []):
            entry: dict[str, Any] = {
                "name": f"{info.plural}/{sub}",
                "singularName": "",
                "namespaced": True,
                "kind": kind,
                "verbs": verbs,
            }
            if sub_gv:
                entry["group"], entry["version"] = sub_gv.split("/")
            resources.append(entry)
    if not resources:
        raise not_found_path()
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }
