"""The sandbox API server process part: the TLS socket, the handler threads, the ticker that
lets the controllers' time pass between requests, and the kubeconfig that points clients at it.

TLS like a real cluster: kubectl sends a bearer token only over TLS, and clients verify the
server against the CA in the kubeconfig (``certificate-authority-data``, as kind writes it).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import secrets
import shutil
import socket
import ssl
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

from sandbox.apiserver import tls
from sandbox.apiserver.cluster import Cluster
from sandbox.apiserver.http import RequestRecord, SandboxApp
from sandbox.apiserver.kinds import ApiError
from sandbox.apiserver.wire import Response
from sandbox.httpd import KeepAliveHandler, TrackingServer

log = logging.getLogger(__name__)

CLUSTER_NAME = "payflow-sandbox"
TICK_SECONDS = 0.05
HANDSHAKE_SECONDS = 10.0  # a client that connects and never speaks TLS does not pin a thread
_PLAIN_HTTP_ANSWER = b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"


class _Handler(KeepAliveHandler):
    server_version = "payflow-sandbox/1.0"
    timeout = 120  # idle keep-alive connections are dropped eventually
    server: _HTTPServer

    def setup(self) -> None:
        """TLS handshake here, in the connection's own thread, never in the accept loop."""
        raw: socket.socket = self.request
        raw.settimeout(HANDSHAKE_SECONDS)
        first = raw.recv(1, socket.MSG_PEEK)
        if first and first != b"\x16":  # not a TLS record: answer as Go's server does
            with contextlib.suppress(OSError):
                raw.sendall(_PLAIN_HTTP_ANSWER)
            raise ConnectionAbortedError("plain HTTP on the TLS port")
        self.request = self.server.ssl_context.wrap_socket(raw, server_side=True)
        super().setup()

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
        if response.stream is None:
            self.send_body(response.status, response.content_type, response.body, headers)
            return
        self.send_stream(response.status, response.content_type, response.stream, headers)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("sandbox %s - " + format, self.address_string(), *args)


class _HTTPServer(TrackingServer):
    allow_reuse_address = True
    app: SandboxApp

    def __init__(self, address: tuple[str, int], ssl_context: ssl.SSLContext) -> None:
        self.ssl_context = ssl_context
        super().__init__(address, _Handler)


def ca_from_kubeconfig(kubeconfig: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Write the CA a kubeconfig carries (``certificate-authority-data``) to `target`: for a
    client that takes a file, of a sandbox running in another process (``payflow-bot sandbox``)."""
    config = yaml.safe_load(Path(kubeconfig).read_text(encoding="utf-8"))
    data = config["clusters"][0]["cluster"]["certificate-authority-data"]
    path = Path(target)
    path.write_bytes(base64.b64decode(data))
    return path


class SandboxServer:
    """The sandbox cluster on ``https://127.0.0.1:<port>``; binds at construction so the URL
    (and a kubeconfig) is known before ``start()``.

    ``record``: when given, every authenticated API request is appended to it as a
    :class:`RequestRecord` (verb, group, resource, subresource, namespace), e.g. to derive the
    RBAC rules a recorded run needed.
    """

    def __init__(
        self,
        cluster: Cluster,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        *,
        record: list[RequestRecord] | None = None,
    ) -> None:
        self.cluster = cluster
        self._token = token or secrets.token_urlsafe(24)
        self._host = host
        served = "127.0.0.1" if host in ("", "0.0.0.0") else host
        self._certs = tls.generate([served, "127.0.0.1", "localhost"])
        self._httpd = _HTTPServer((host, port), self._certs.server_context())
        self._stop = threading.Event()
        self._httpd.app = SandboxApp(cluster, self._token, f"{served}:{self.port}", self._stop, record)
        self._threads: list[threading.Thread] = []
        self._ca_dir: str | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self._host in ("", "0.0.0.0") else self._host
        return f"https://{host}:{self.port}"

    @property
    def token(self) -> str:
        return self._token

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate (public) that signed the serving certificate."""
        return self._certs.ca_pem

    @property
    def ca_file(self) -> Path:
        """The CA certificate as a file, for clients that take a path (Prometheus, curl)."""
        if self._ca_dir is None:
            self._ca_dir = tempfile.mkdtemp(prefix="sandbox-ca-")
            (Path(self._ca_dir) / "ca.crt").write_bytes(self._certs.ca_pem)
        return Path(self._ca_dir) / "ca.crt"

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting only this sandbox's CA (httpx ``verify=``, urllib ``context=``)."""
        return self._certs.client_context()

    def start(self) -> Self:
        if self._threads:
            return self
        tick = threading.Thread(target=self._tick, name="sandbox-ticker", daemon=True)
        self._threads = [self._httpd.serve_in_thread("sandbox-http"), tick]
        tick.start()
        log.debug("sandbox API serving on %s", self.url)
        return self

    def stop(self) -> None:
        self._stop.set()  # ends open watches, woken here
        self.cluster.watches.wake()
        self._httpd.stop_serving(serving=bool(self._threads))
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        if self._ca_dir is not None:
            shutil.rmtree(self._ca_dir, ignore_errors=True)
            self._ca_dir = None

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
        cluster = {"server": self.url, "certificate-authority-data": base64.b64encode(self.ca_pem).decode()}
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": CLUSTER_NAME, "cluster": cluster}],
            "users": [{"name": CLUSTER_NAME, "user": {"token": self._token}}],
            "contexts": [{"name": CLUSTER_NAME, "context": context}],
            "current-context": CLUSTER_NAME,
            "preferences": {},
        }

    def write_kubeconfig(self, path: str | os.PathLike[str], namespace: str | None = None) -> Path:
        """Write a kubeconfig for this server (mode 0600: it holds the bearer token). Atomic: a
        process waiting for the file to exist never reads half of it."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yaml.safe_dump(self.kubeconfig(namespace), fh, sort_keys=False)
        os.replace(partial, target)
        return target

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
