"""The connection handling both local stand-ins share (the Kubernetes API server and the Slack
Web API): HTTP/1.1 keep-alive on a thread per connection, request bodies with Content-Length or
chunked, and open connections tracked so that ``stop()`` ends their handler threads too."""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

MAX_LINE = 65537  # a chunk-size or trailer line longer than this is not HTTP


class TrackingServer(ThreadingHTTPServer):
    """A threading server that knows its open connections, to drop idle keep-alive ones on stop."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[KeepAliveHandler]) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self.accepted = 0  # connections ever accepted: keep-alive clients open few
        super().__init__(address, handler)

    def track(self, connection: socket.socket, *, add: bool) -> None:
        with self._connections_lock:
            if add:
                self.accepted += 1
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        """Kick keep-alive clients so no handler thread keeps serving after stop()."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def serve_in_thread(self, name: str) -> threading.Thread:
        """Serve on a daemon thread that checks for `stop_serving` every 0.1 s."""
        thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.1}, name=name, daemon=True
        )
        thread.start()
        return thread

    def stop_serving(self, *, serving: bool) -> None:
        """End the serve loop (when one runs), close the listening socket and kick open connections."""
        if serving:
            self.shutdown()
        self.server_close()
        self.close_connections()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection error from %s", client_address, exc_info=True)


class KeepAliveHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive: clients reuse connections, so every answer carries Content-Length."""

    protocol_version = "HTTP/1.1"
    timeout = 60  # idle keep-alive connections do not pin a thread forever
    # Headers and body go out in separate writes; with Nagle on, the client's delayed ACK
    # would stall every response by ~40 ms.
    disable_nagle_algorithm = True
    server: TrackingServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def read_body(self) -> bytes:
        """The request body; ValueError when its framing is not valid HTTP."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline(MAX_LINE).split(b";", 1)[0].strip() or b"0", 16)
                if size < 0:
                    raise ValueError("negative chunk size")
                if size == 0:
                    while self.rfile.readline(MAX_LINE) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(MAX_LINE)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        return self.rfile.read(length) if length else b""

    def send_body(
        self, status: int, content_type: str, body: bytes, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_stream(
        self,
        status: int,
        content_type: str,
        chunks: Iterator[bytes | None],
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """A chunked answer written as ``chunks`` yields; ``None`` is a tick on which a client that
        hung up is noticed (it sends nothing while it reads a stream), which ends the stream."""
        self.close_connection = True
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Transfer-Encoding", "chunked")
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            for chunk in chunks:
                if chunk is None:
                    if select.select([self.connection], [], [], 0)[0]:
                        return
                    continue
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            log.debug("stream ended by the client", exc_info=True)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
