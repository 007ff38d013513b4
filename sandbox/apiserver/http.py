"""The HTTP front's routing: REST paths to registry calls, the way kube-apiserver lays them out
(``/api/v1/namespaces/{ns}/{plural}/{name}/{subresource}`` and ``/apis/{group}/{version}/...``),
bearer-token authentication, and answers as the real server shapes them."""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from sandbox.apiserver import discovery
from sandbox.apiserver.admin import admin
from sandbox.apiserver.cluster import Cluster
from sandbox.apiserver.kinds import KINDS, ApiError, KindInfo
from sandbox.apiserver.wire import (
    Query,
    Response,
    json_body,
    kind_for,
    method_not_allowed,
    not_found_path,
    query_bool,
    query_int,
    query_str,
    unauthorized,
)

UNAUTHENTICATED_PATHS = frozenset({"/healthz", "/livez", "/readyz"})


class SandboxApp:
    """Request routing, kept apart from the socket plumbing so it can be reasoned about alone."""

    def __init__(self, cluster: Cluster, token: str, server_address: str) -> None:
        self.cluster = cluster
        self.token = token
        self.server_address = server_address

    def handle(self, method: str, target: str, headers: Any, body: bytes) -> Response:
        url = urlsplit(target)
        path = url.path.rstrip("/") or "/"
        if path in UNAUTHENTICATED_PATHS:
            return Response.text(200, "ok")
        if path == "/metrics" and method == "GET" and self.cluster.traffic is not None:
            text = self.cluster.traffic.exposition()  # synthetic traffic, for a real Prometheus
            return Response(200, text.encode(), "text/plain; version=0.0.4; charset=utf-8")
        auth = headers.get("Authorization") or ""
        scheme, _, presented = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            presented.strip().encode(), self.token.encode()
        ):
            return unauthorized()
        query = parse_qs(url.query, keep_blank_values=True)
        segments = [unquote(s) for s in url.path.split("/") if s]
        try:
            return self._route(method, segments, query, headers, body)
        except ApiError as err:
            return Response.error(err)

    # ------------------------------------------------------------------ routing

    def _route(self, method: str, segs: list[str], query: Query, headers: Any, body: bytes) -> Response:
        if segs and segs[0] == "sandbox":
            return admin(self.cluster, method, segs[1:], query, body)
        if segs == ["version"]:
            return self._only_get(method, Response.json(200, discovery.VERSION_INFO))
        if segs == ["api"]:
            return self._only_get(method, Response.json(200, discovery.api_versions(self.server_address)))
        if segs == ["apis"]:
            return self._only_get(method, Response.json(200, discovery.api_groups()))
        if len(segs) >= 2 and segs[0] == "api" and segs[1] == "v1":
            group_version, rest = "v1", segs[2:]
        elif len(segs) >= 3 and segs[0] == "apis":
            group_version, rest = f"{segs[1]}/{segs[2]}", segs[3:]
        else:
            raise not_found_path()
        if not rest:
            return self._only_get(method, Response.json(200, discovery.resource_list(group_version)))
        if rest[0] == "namespaces" and group_version == "v1" and len(rest) <= 2:
            info = KINDS["Namespace"]
            if len(rest) == 1:
                return self._collection(method, info, None, query, body)
            return self._item(method, info, None, rest[1], query, headers, body)
        if rest[0] == "namespaces":
            if len(rest) < 3:
                raise not_found_path()
            ns, info = rest[1], kind_for(group_version, rest[2])
            if len(rest) == 3:
                return self._collection(method, info, ns, query, body)
            if len(rest) == 4:
                return self._item(method, info, ns, rest[3], query, headers, body)
            return self._subresource(method, info, ns, rest[3], rest[4], rest[5:], query, headers, body)
        if len(rest) == 1:
            info = kind_for(group_version, rest[0])
            if method != "GET":
                raise method_not_allowed(method)
            return self._list(info, None, query)
        raise not_found_path()

    @staticmethod
    def _only_get(method: str, response: Response) -> Response:
        if method != "GET":
            raise method_not_allowed(method)
        return response

    def _collection(self, method: str, info: KindInfo, ns: str | None, query: Query, body: bytes) -> Response:
        if method == "GET":
            return self._list(info, ns, query)
        if method == "POST":
            obj = json_body(body)
            created = self.cluster.create(info.kind, obj, namespace=ns, dry_run=self._dry_run(query))
            return Response.json(201, created)
        raise method_not_allowed(method)

    def _list(self, info: KindInfo, ns: str | None, query: Query) -> Response:
        if query_bool(query, "watch"):
            raise ApiError(405, "MethodNotAllowed", "watch is not supported by the PayFlow sandbox")
        with self.cluster.lock:  # items and list resourceVersion from one snapshot
            items = self.cluster.list(
                info.kind,
                ns,
                label_selector=query_str(query, "labelSelector"),
                field_selector=query_str(query, "fieldSelector"),
            )
            rv = self.cluster.resource_version
        return Response.json(
            200,
            {
                "kind": f"{info.kind}List",
                "apiVersion": info.api_version,
                "metadata": {"resourceVersion": rv},
                "items": items,
            },
        )

    def _item(
        self,
        method: str,
        info: KindInfo,
        ns: str | None,
        name: str,
        query: Query,
        headers: Any,
        body: bytes,
    ) -> Response:
        dry_run = self._dry_run(query)
        if method == "GET":
            return Response.json(200, self.cluster.get(info.kind, ns, name))
        if method == "PUT":
            return Response.json(
                200, self.cluster.replace(info.kind, ns, name, json_body(body), dry_run=dry_run)
            )
        if method == "PATCH":
            ctype = headers.get("Content-Type") or ""
            return Response.json(200, self.cluster.patch(info.kind, ns, name, body, ctype, dry_run=dry_run))
        if method == "DELETE":
            obj = self.cluster.delete(info.kind, ns, name, dry_run=dry_run)
            if info.kind in ("Pod", "Service", "Namespace"):
                return Response.json(200, obj)
            return Response.json(
                200,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": {
                        "name": name,
                        "group": info.group,
                        "kind": info.plural,
                        "uid": obj["metadata"]["uid"],
                    },
                },
            )
        raise method_not_allowed(method)

    def _subresource(
        self,
        method: str,
        info: KindInfo,
        ns: str,
        name: str,
        sub: str,
        extra: list[str],
        query: Query,
        headers: Any,
        body: bytes,
    ) -> Response:
        if info.kind == "Service" and sub == "proxy":
            return self._proxy(method, ns, name, "/".join(extra))
        if extra:
            raise not_found_path()
        if info.kind == "Pod" and sub == "log":
            if method != "GET":
                raise method_not_allowed(method)
            text = self.cluster.pod_log(
                ns,
                name,
                container=query_str(query, "container"),
                tail_lines=query_int(query, "tailLines"),
                since_seconds=query_int(query, "sinceSeconds"),
                timestamps=query_bool(query, "timestamps"),
                previous=query_bool(query, "previous"),
                limit_bytes=query_int(query, "limitBytes"),
            )
            return Response.text(200, text)
        if info.kind != "Deployment" or sub not in ("scale", "status"):
            raise not_found_path()
        dry_run = self._dry_run(query)
        if method == "GET":
            return Response.json(200, self.cluster.get(info.kind, ns, name, subresource=sub))
        if method == "PUT":
            obj = json_body(body)
            return Response.json(
                200, self.cluster.replace(info.kind, ns, name, obj, subresource=sub, dry_run=dry_run)
            )
        if method == "PATCH":
            ctype = headers.get("Content-Type") or ""
            patched = self.cluster.patch(info.kind, ns, name, body, ctype, subresource=sub, dry_run=dry_run)
            return Response.json(200, patched)
        raise method_not_allowed(method)

    def _proxy(self, method: str, ns: str, target: str, path: str) -> Response:
        """``services/[scheme:]name[:port]/proxy/<path>``: only the health endpoint has a backend."""
        parts = target.split(":")
        if len(parts) == 3 or (len(parts) == 2 and parts[0] in ("http", "https")):
            parts = parts[1:]
        name, port = parts[0], (parts[1] if len(parts) > 1 and parts[1] else None)
        if method != "GET":
            raise method_not_allowed(method)
        code, payload = self.cluster.health(ns, name, port)
        if path.strip("/").rsplit("/", 1)[-1] not in ("health", "healthz"):
            if code != 200:
                return Response.json(code, payload)
            return Response.text(404, "404 page not found\n")
        return Response.json(code, payload)

    @staticmethod
    def _dry_run(query: Query) -> bool:
        values = query.get("dryRun") or []
        if any(v not in ("All", "") for v in values):
            raise ApiError.bad_request(f"unsupported dry run directive: {values}")
        return "All" in values
