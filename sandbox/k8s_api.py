"""The sandbox cluster behind a loopback HTTP server that speaks the Kubernetes REST API.

Only the subset the official ``kubernetes`` Python client uses for the bot is served, but what is
served is faithful (status codes, ``Status`` bodies, content types, keep-alive), so code under test
cannot tell it apart from kube-apiserver. Standard library only: the server must start in
milliseconds inside tests and benchmarks.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import secrets
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from sandbox.cluster import BAD_IMAGE_MODES, KINDS, ApiError, Cluster, KindInfo

log = logging.getLogger(__name__)

CLUSTER_NAME = "payflow-sandbox"
TICK_SECONDS = 0.05
UNAUTHENTICATED_PATHS = frozenset({"/healthz", "/livez", "/readyz"})

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

_VERBS = ["create", "delete", "get", "list", "patch", "update"]
_SHORT_NAMES = {
    "Deployment": ["deploy"],
    "Service": ["svc"],
    "Ingress": ["ing"],
    "Pod": ["po"],
    "Event": ["ev"],
}
_SUBRESOURCES: dict[str, list[tuple[str, str, str, list[str]]]] = {
    # plural -> [(subresource, kind, group/version or "", verbs)]
    "deployments": [
        ("scale", "Scale", "autoscaling/v1", ["get", "patch", "update"]),
        ("status", "Deployment", "", ["get", "patch", "update"]),
    ],
    "pods": [("log", "Pod", "", ["get"])],
    "services": [("proxy", "ServiceProxyOptions", "", ["get"])],
}


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any) -> Response:
        return cls(status, json.dumps(payload, separators=(",", ":")).encode())

    @classmethod
    def text(cls, status: int, text: str) -> Response:
        return cls(status, text.encode(), "text/plain; charset=utf-8")

    @classmethod
    def error(cls, err: ApiError) -> Response:
        return cls.json(err.code, err.status())


def _unauthorized() -> Response:
    return Response.error(ApiError(401, "Unauthorized", "Unauthorized"))


def _not_found_path() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def _method_not_allowed(method: str) -> ApiError:
    return ApiError(
        405, "MethodNotAllowed", f"the server does not allow this method on the requested resource ({method})"
    )


def _kind_for(group_version: str, plural: str) -> KindInfo:
    for info in KINDS.values():
        if info.plural == plural and info.api_version == group_version:
            return info
    raise _not_found_path()


def _query_int(query: dict[str, list[str]], name: str) -> int | None:
    value = _query_str(query, name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ApiError.bad_request(f"invalid value for {name}: {value!r}") from None


def _query_str(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _query_bool(query: dict[str, list[str]], name: str) -> bool:
    return (_query_str(query, name) or "").lower() in ("true", "1")


def _json_body(body: bytes) -> Any:
    if not body:
        raise ApiError.bad_request("the request body is empty")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise ApiError.bad_request(f"error decoding request body: {exc}") from exc


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
            return _unauthorized()
        query = parse_qs(url.query, keep_blank_values=True)
        segments = [unquote(s) for s in url.path.split("/") if s]
        try:
            return self._route(method, segments, query, headers, body)
        except ApiError as err:
            return Response.error(err)

    # ------------------------------------------------------------------ routing

    def _route(
        self, method: str, segs: list[str], query: dict[str, list[str]], headers: Any, body: bytes
    ) -> Response:
        if segs and segs[0] == "sandbox":
            return self._admin(method, segs[1:], query, body)
        if segs == ["version"]:
            return self._only_get(method, Response.json(200, VERSION_INFO))
        if segs == ["api"]:
            return self._only_get(method, Response.json(200, self._api_versions()))
        if segs == ["apis"]:
            return self._only_get(method, Response.json(200, self._api_groups()))
        if len(segs) >= 2 and segs[0] == "api" and segs[1] == "v1":
            group_version, rest = "v1", segs[2:]
        elif len(segs) >= 3 and segs[0] == "apis":
            group_version, rest = f"{segs[1]}/{segs[2]}", segs[3:]
        else:
            raise _not_found_path()
        if not rest:
            return self._only_get(method, Response.json(200, self._resource_list(group_version)))
        if rest[0] == "namespaces" and group_version == "v1" and len(rest) <= 2:
            info = KINDS["Namespace"]
            if len(rest) == 1:
                return self._collection(method, info, None, query, body)
            return self._item(method, info, None, rest[1], query, headers, body)
        if rest[0] == "namespaces":
            if len(rest) < 3:
                raise _not_found_path()
            ns, info = rest[1], _kind_for(group_version, rest[2])
            if len(rest) == 3:
                return self._collection(method, info, ns, query, body)
            if len(rest) == 4:
                return self._item(method, info, ns, rest[3], query, headers, body)
            return self._subresource(method, info, ns, rest[3], rest[4], rest[5:], query, headers, body)
        if len(rest) == 1:
            info = _kind_for(group_version, rest[0])
            if method != "GET":
                raise _method_not_allowed(method)
            return self._list(info, None, query)
        raise _not_found_path()

    @staticmethod
    def _only_get(method: str, response: Response) -> Response:
        if method != "GET":
            raise _method_not_allowed(method)
        return response

    def _collection(
        self, method: str, info: KindInfo, ns: str | None, query: dict[str, list[str]], body: bytes
    ) -> Response:
        if method == "GET":
            return self._list(info, ns, query)
        if method == "POST":
            obj = _json_body(body)
            created = self.cluster.create(info.kind, obj, namespace=ns, dry_run=self._dry_run(query))
            return Response.json(201, created)
        raise _method_not_allowed(method)

    def _list(self, info: KindInfo, ns: str | None, query: dict[str, list[str]]) -> Response:
        if _query_bool(query, "watch"):
            raise ApiError(405, "MethodNotAllowed", "watch is not supported by the PayFlow sandbox")
        with self.cluster.lock:  # items and list resourceVersion from one snapshot
            items = self.cluster.list(
                info.kind,
                ns,
                label_selector=_query_str(query, "labelSelector"),
                field_selector=_query_str(query, "fieldSelector"),
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
        query: dict[str, list[str]],
        headers: Any,
        body: bytes,
    ) -> Response:
        dry_run = self._dry_run(query)
        if method == "GET":
            return Response.json(200, self.cluster.get(info.kind, ns, name))
        if method == "PUT":
            return Response.json(
                200, self.cluster.replace(info.kind, ns, name, _json_body(body), dry_run=dry_run)
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
        raise _method_not_allowed(method)

    def _subresource(
        self,
        method: str,
        info: KindInfo,
        ns: str,
        name: str,
        sub: str,
        extra: list[str],
        query: dict[str, list[str]],
        headers: Any,
        body: bytes,
    ) -> Response:
        if info.kind == "Service" and sub == "proxy":
            return self._proxy(method, ns, name, "/".join(extra))
        if extra:
            raise _not_found_path()
        if info.kind == "Pod" and sub == "log":
            if method != "GET":
                raise _method_not_allowed(method)
            text = self.cluster.pod_log(
                ns,
                name,
                container=_query_str(query, "container"),
                tail_lines=_query_int(query, "tailLines"),
                since_seconds=_query_int(query, "sinceSeconds"),
                timestamps=_query_bool(query, "timestamps"),
                previous=_query_bool(query, "previous"),
                limit_bytes=_query_int(query, "limitBytes"),
            )
            return Response.text(200, text)
        if info.kind != "Deployment" or sub not in ("scale", "status"):
            raise _not_found_path()
        dry_run = self._dry_run(query)
        if method == "GET":
            return Response.json(200, self.cluster.get(info.kind, ns, name, subresource=sub))
        if method == "PUT":
            obj = _json_body(body)
            return Response.json(
                200, self.cluster.replace(info.kind, ns, name, obj, subresource=sub, dry_run=dry_run)
            )
        if method == "PATCH":
            ctype = headers.get("Content-Type") or ""
            patched = self.cluster.patch(info.kind, ns, name, body, ctype, subresource=sub, dry_run=dry_run)
            return Response.json(200, patched)
        raise _method_not_allowed(method)

    def _proxy(self, method: str, ns: str, target: str, path: str) -> Response:
        """``services/[scheme:]name[:port]/proxy/<path>``: only the health endpoint has a backend."""
        parts = target.split(":")
        if len(parts) == 3 or (len(parts) == 2 and parts[0] in ("http", "https")):
            parts = parts[1:]
        name, port = parts[0], (parts[1] if len(parts) > 1 and parts[1] else None)
        if method != "GET":
            raise _method_not_allowed(method)
        code, payload = self.cluster.health(ns, name, port)
        if path.strip("/").rsplit("/", 1)[-1] not in ("health", "healthz"):
            if code != 200:
                return Response.json(code, payload)
            return Response.text(404, "404 page not found\n")
        return Response.json(code, payload)

    @staticmethod
    def _dry_run(query: dict[str, list[str]]) -> bool:
        values = query.get("dryRun") or []
        if any(v not in ("All", "") for v in values):
            raise ApiError.bad_request(f"unsupported dry run directive: {values}")
        return "All" in values

    # ------------------------------------------------------------------ admin

    def _admin(self, method: str, segs: list[str], query: dict[str, list[str]], body: bytes) -> Response:
        cluster = self.cluster
        route = "/".join(segs)
        if route == "state" and method == "GET":
            return Response.json(200, cluster.summary())
        if route == "bad-images":
            if method == "POST":
                payload = _json_body(body)
                image = payload.get("image") if isinstance(payload, dict) else None
                mode = (payload.get("mode") if isinstance(payload, dict) else None) or "ImagePullBackOff"
                if not isinstance(image, str) or not image or mode not in BAD_IMAGE_MODES:
                    raise ApiError.bad_request(
                        f'want {{"image": "<image or tag>", "mode": one of {list(BAD_IMAGE_MODES)}}}'
                    )
                cluster.set_bad_image(image, mode)
            elif method == "DELETE":
                image = _query_str(query, "image")
                if image:
                    cluster.remove_bad_image(image)
                else:
                    cluster.clear_bad_images()
            elif method != "GET":
                raise _method_not_allowed(method)
            return Response.json(200, {"bad_images": cluster.bad_images})
        if route == "settings":
            if method == "POST":
                payload = _json_body(body)
                if not isinstance(payload, dict) or set(payload) - {"ready_delay", "progress_deadline"}:
                    raise ApiError.bad_request(
                        'want {"ready_delay": seconds, "progress_deadline": seconds|null}'
                    )
                try:
                    with cluster.lock:
                        if "ready_delay" in payload:
                            cluster.ready_delay = max(float(payload["ready_delay"]), 0.0)
                        if "progress_deadline" in payload:
                            deadline = payload["progress_deadline"]
                            cluster.progress_deadline = None if deadline is None else float(deadline)
                except (TypeError, ValueError) as exc:
                    raise ApiError.bad_request(f"invalid setting: {exc}") from exc
            elif method != "GET":
                raise _method_not_allowed(method)
            return Response.json(
                200, {"ready_delay": cluster.ready_delay, "progress_deadline": cluster.progress_deadline}
            )
        if route == "dependencies" and cluster.traffic is not None:
            if method == "POST":  # {"postgres": false}: the exporter gauge pg_up drops to 0
                payload = _json_body(body)
                if not isinstance(payload, dict) or not all(isinstance(v, bool) for v in payload.values()):
                    raise ApiError.bad_request('want {"postgres"|"redis"|"rabbitmq": true|false, ...}')
                try:
                    states = cluster.traffic.set_dependencies(payload)
                except ValueError as exc:
                    raise ApiError.bad_request(str(exc)) from exc
                return Response.json(200, states)
            if method == "GET":
                return Response.json(200, dict(cluster.traffic.dependencies))
            raise _method_not_allowed(method)
        if route == "writes" and method == "GET":
            kind, ns, name = (_query_str(query, k) for k in ("kind", "namespace", "name"))
            if not kind or not name:
                raise ApiError.bad_request("kind, namespace and name are required")
            return Response.json(200, {"count": cluster.writes(kind, ns or "", name)})
        raise _not_found_path()

    # ------------------------------------------------------------------ discovery

    def _api_versions(self) -> dict[str, Any]:
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.server_address}],
        }

    @staticmethod
    def _api_groups() -> dict[str, Any]:
        groups: dict[str, list[str]] = {}
        for info in KINDS.values():
            if info.group:
                groups.setdefault(info.group, []).append(info.api_version)
        items = []
        for group, versions in sorted(groups.items()):
            gv = [{"groupVersion": v, "version": v.rpartition("/")[2]} for v in sorted(set(versions))]
            items.append({"name": group, "versions": gv, "preferredVersion": gv[0]})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": items}

    @staticmethod
    def _resource_list(group_version: str) -> dict[str, Any]:
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
                    "verbs": _VERBS if info.namespaced else ["get", "list", "create", "delete"],
                    "shortNames": _SHORT_NAMES.get(info.kind, []),
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
            raise _not_found_path()
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "payflow-sandbox/1.0"
    timeout = 120  # idle keep-alive connections are dropped eventually
    # Headers and body go out in separate writes; with Nagle on, the client's delayed ACK
    # would stall every response by ~40 ms.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        body = self._read_body()
        try:
            response = self.server.app.handle(self.command, self.path, self.headers, body)
        except Exception:
            log.exception("sandbox: unhandled error serving %s %s", self.command, self.path)
            response = Response.error(
                ApiError(500, "InternalError", "an error on the server has prevented the request")
            )
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Cache-Control", "no-cache, private")
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("sandbox %s - " + format, self.address_string(), *args)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    app: SandboxApp

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def track(self, conn: socket.socket, *, add: bool) -> None:
        with self._connections_lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def close_connections(self) -> None:
        """Kick idle keep-alive clients so no handler thread keeps serving after stop()."""
        with self._connections_lock:
            conns = list(self._connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class SandboxServer:
    """The sandbox cluster on ``http://127.0.0.1:<port>``; binds at construction so the URL
    (and a kubeconfig) is known before ``start()``."""

    def __init__(
        self, cluster: Cluster, host: str = "127.0.0.1", port: int = 0, token: str | None = None
    ) -> None:
        self.cluster = cluster
        self._token = token or secrets.token_urlsafe(24)
        self._httpd = _HTTPServer((host, port))
        self._host = host
        self._httpd.app = SandboxApp(cluster, self._token, f"{host}:{self.port}")
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self._host in ("", "0.0.0.0") else self._host
        return f"http://{host}:{self.port}"

    @property
    def token(self) -> str:
        return self._token

    def start(self) -> Self:
        if self._threads:
            return self
        serve = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="sandbox-http", daemon=True
        )
        tick = threading.Thread(target=self._tick, name="sandbox-ticker", daemon=True)
        self._threads = [serve, tick]
        for thread in self._threads:
            thread.start()
        log.debug("sandbox API serving on %s", self.url)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._threads:
            self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.close_connections()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []

    def _tick(self) -> None:
        """Let time pass for the controller even when nobody is asking."""
        while not self._stop.wait(TICK_SECONDS):
            try:
                self.cluster.reconcile()
            except Exception:
                log.exception("sandbox: reconcile failed")

    def kubeconfig(self, namespace: str | None = None) -> dict[str, Any]:
        context: dict[str, Any] = {"cluster": CLUSTER_NAME, "user": CLUSTER_NAME}
        if namespace:
            context["namespace"] = namespace
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": CLUSTER_NAME, "cluster": {"server": self.url}}],
            "users": [{"name": CLUSTER_NAME, "user": {"token": self._token}}],
            "contexts": [{"name": CLUSTER_NAME, "context": context}],
            "current-context": CLUSTER_NAME,
            "preferences": {},
        }

    def write_kubeconfig(self, path: str | os.PathLike[str], namespace: str | None = None) -> Path:
        """Write a kubeconfig for this server (mode 0600: it holds the bearer token)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yaml.safe_dump(self.kubeconfig(namespace), fh, sort_keys=False)
        return target

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
