"""The HTTP front's routing: REST paths to registry calls, the way kube-apiserver lays them out
(``/api/v1/namespaces/{ns}/{plural}/{name}/{subresource}`` and ``/apis/{group}/{version}/...``),
bearer-token authentication, and answers as the real server shapes them."""

from __future__ import annotations

import hmac
import threading
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

from sandbox.apiserver import discovery, protobuf, watch
from sandbox.apiserver.admin import admin
from sandbox.apiserver.cluster import Cluster
from sandbox.apiserver.kinds import JSON, KINDS, ApiError, KindInfo
from sandbox.apiserver.selectors import parse_field_selector, parse_label_selector
from sandbox.apiserver.tables import table, wants_table
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
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


class RequestRecord(NamedTuple):
    """One API request as RBAC sees it (``kubectl auth can-i`` terms)."""

    verb: str  # get, list, watch, create, update, patch, delete
    group: str  # "" for the core group
    resource: str  # plural
    subresource: str  # "" when none
    namespace: str  # "" for cluster-scoped or all-namespaces requests


class SandboxApp:
    """Request routing, kept apart from the socket plumbing so it can be reasoned about alone."""

    def __init__(
        self,
        cluster: Cluster,
        token: str,
        server_address: str,
        stop: threading.Event | None = None,
        record: list[RequestRecord] | None = None,
    ) -> None:
        self.cluster = cluster
        self.token = token
        self.server_address = server_address
        self._stop = stop or threading.Event()
        self._record = record

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
                self._note(method, info, None, "", query, collection=True)
                return self._collection(method, info, None, query, headers, body)
            self._note(method, info, None, "", query)
            return self._item(method, info, None, rest[1], query, headers, body)
        if rest[0] == "namespaces":
            if len(rest) < 3:
                raise not_found_path()
            ns, info = rest[1], kind_for(group_version, rest[2])
            if len(rest) == 3:
                self._note(method, info, ns, "", query, collection=True)
                return self._collection(method, info, ns, query, headers, body)
            if len(rest) == 4:
                self._note(method, info, ns, "", query)
                return self._item(method, info, ns, rest[3], query, headers, body)
            self._note(method, info, ns, rest[4], query)
            return self._subresource(method, info, ns, rest[3], rest[4], rest[5:], query, headers, body)
        if len(rest) == 1:
            info = kind_for(group_version, rest[0])
            if method != "GET":
                raise method_not_allowed(method)
            self._note(method, info, None, "", query, collection=True)
            return self._list(info, None, query, headers)
        raise not_found_path()

    @staticmethod
    def _only_get(method: str, response: Response) -> Response:
        if method != "GET":
            raise method_not_allowed(method)
        return response

    def _note(
        self, method: str, info: KindInfo, ns: str | None, sub: str, query: Query, *, collection: bool = False
    ) -> None:
        if self._record is None:
            return
        verb = _VERBS.get(method)
        if verb is None:
            verb = ("watch" if query_bool(query, "watch") else "list") if collection else "get"
        self._record.append(RequestRecord(verb, info.group, info.plural, sub, ns or ""))

    def _collection(
        self, method: str, info: KindInfo, ns: str | None, query: Query, headers: Any, body: bytes
    ) -> Response:
        if method == "GET":
            return self._list(info, ns, query, headers)
        if method == "POST":
            obj = self._body(headers, body)
            created = self.cluster.create(info.kind, obj, namespace=ns, dry_run=self._dry_run(query))
            return Response.json(201, created)
        raise method_not_allowed(method)

    def _list(self, info: KindInfo, ns: str | None, query: Query, headers: Any) -> Response:
        as_table = wants_table(headers.get("Accept"))
        include = self._include_object(query)
        labels, fields = query_str(query, "labelSelector"), query_str(query, "fieldSelector")
        if query_bool(query, "watch"):
            return self._watch(info, ns, query, labels, fields, as_table, include)
        # Items and the list's resourceVersion from one snapshot, serialized before the lock is
        # let go: the stored objects themselves are written out, never copied.
        with self.cluster.lock:
            items = self.cluster.list(
                info.kind, ns, label_selector=labels, field_selector=fields, copies=False
            )
            rv = self.cluster.resource_version
            if as_table:
                return Response.json(200, table(info, items, rv, self._wall_now(), include))
            return Response.json(
                200,
                {
                    "kind": f"{info.kind}List",
                    "apiVersion": info.api_version,
                    "metadata": {"resourceVersion": rv},
                    "items": items,
                },
            )

    def _watch(
        self,
        info: KindInfo,
        ns: str | None,
        query: Query,
        labels: str | None,
        fields: str | None,
        as_table: bool,
        include: str,
    ) -> Response:
        flt = watch.Filter(info, ns, parse_label_selector(labels), parse_field_selector(fields))
        rv_param = query_str(query, "resourceVersion") or ""
        if rv_param not in ("", "0") and not rv_param.isdigit():
            raise ApiError.bad_request(f"invalid resourceVersion: {rv_param!r}")
        timeout = query_int(query, "timeoutSeconds")
        if timeout is not None and timeout < 0:
            raise ApiError.bad_request("timeoutSeconds must not be negative")
        cache = self.cluster.watches
        with self.cluster.lock:  # the initial objects and the position in the history agree
            initial = self.cluster.list(info.kind, ns, label_selector=labels, field_selector=fields)
            current = int(self.cluster.resource_version)
        start = current if rv_param in ("", "0") else int(rv_param)

        def render(obj: JSON) -> JSON:
            if not as_table:
                return obj
            return table(info, [obj], obj["metadata"].get("resourceVersion", ""), self._wall_now(), include)

        events = watch.stream(
            cache,
            flt,
            initial,
            start,
            rv_param in ("", "0"),
            render=render,
            timeout=float(timeout) if timeout else watch.DEFAULT_TIMEOUT_SECONDS,
            bookmarks=query_bool(query, "allowWatchBookmarks"),
            stop=self._stop,
        )
        return Response(200, b"", "application/json", stream=events)

    @staticmethod
    def _include_object(query: Query) -> str:
        include = query_str(query, "includeObject") or "Metadata"
        if include not in ("None", "Metadata", "Object"):
            raise ApiError.bad_request(f'includeObject: Unsupported value: "{include}"')
        return include

    def _wall_now(self) -> datetime:
        return datetime.fromtimestamp(self.cluster.now() + self.cluster.store.wall_offset, tz=UTC)

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
            obj = self.cluster.get(info.kind, ns, name)
            if wants_table(headers.get("Accept")):
                rv = obj["metadata"].get("resourceVersion", "")
                return Response.json(
                    200, table(info, [obj], rv, self._wall_now(), self._include_object(query))
                )
            return Response.json(200, obj)
        if method == "PUT":
            return Response.json(
                200, self.cluster.replace(info.kind, ns, name, self._body(headers, body), dry_run=dry_run)
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
        if (info.kind, sub) not in (
            ("Deployment", "scale"),
            ("Deployment", "status"),
            ("Job", "status"),
            ("CronJob", "status"),
        ):
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
    def _body(headers: Any, body: bytes) -> Any:
        """JSON, or protobuf as kubectl's typed clients send it (``sandbox.apiserver.protobuf``)."""
        ctype = (headers.get("Content-Type") or "").split(";")[0].strip()
        if ctype == protobuf.MEDIA_TYPE:
            return protobuf.decode_object(body)
        return json_body(body)

    @staticmethod
    def _dry_run(query: Query) -> bool:
        values = query.get("dryRun") or []
        if any(v not in ("All", "") for v in values):
            raise ApiError.bad_request(f"unsupported dry run directive: {values}")
        return "All" in values
