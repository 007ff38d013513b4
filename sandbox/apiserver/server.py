"""The sandbox API server process part: the socket, the handler threads, the ticker that lets
the controllers' time pass between requests, and the kubeconfig that points clients at it."""

from __future__ import annotations

import logging
import os
import secrets
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

from sandbox.apiserver.cluster import Cluster
from sandbox.apiserver.http import SandboxApp
from sandbox.apiserver.kinds import ApiError
from sandbox.apiserver.wire import Response
from sandbox.httpd import KeepAliveHandler, TrackingServer

log = logging.getLogger(__name__)

CLUSTER_NAME = "payflow-sandbox"
TICK_SECONDS = 0.05


class _Handler(KeepAliveHandler):
    server_version = "payflow-sandbox/1.0"
    timeout = 120  # idle keep-alive connections are dropped eventually
    server: _HTTPServer

    def _dispatch(self) -> None:
        try:
            body = self.read_body()
        except ValueError:
            self.close_connection = True
            response = Response.error(ApiError.bad_request("the request body is not valid HTTP framing"))
        else:
            try:
                response = self.server.app.handle(self.command, self.path, self.headers, body)
            except Exception:
                log.exception("sandbox: unhandled error serving %s %s", self.command, self.path)
                response = Response.error(
                    ApiError(500, "InternalError", "an error on the server has prevented the request")
                )
        headers = [("Cache-Control", "no-cache, private"), *response.headers.items()]
        self.send_body(response.status, response.content_type, response.body, headers)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("sandbox %s - " + format, self.address_string(), *args)


class _HTTPServer(TrackingServer):
    allow_reuse_address = True
    app: SandboxApp

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)


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
