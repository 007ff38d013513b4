"""An HTTP server that answers the way a misbehaving backend (or API server) does: a TCP server on
a free loopback port that reads each request's head and then plays a script of writes, pauses
and an optional hang, never anything more clever. For what a real server never sends but a
broken one does: a body in pieces, a body that trickles or never ends, a megabyte body.

    def answer(request: bytes) -> Script:
        return [HEAD(200, length=35), b'{"status":"ok",', 0.2, b'"version":"v2.0.0"}']

    with ScriptedHttp(answer) as server:
        ...point a client at server.url...
        assert server.requests[0].startswith(b"GET /health")

A script item is bytes (sent), a float (a pause, seconds), or HANG (send nothing more until the
client goes away); after the last item the connection is closed. `BlackHole`'s sibling: like
it, it counts what it saw (`requests`) and learns when a client hung up (`hung_up`).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable

from tests.support.loopback import LoopbackServer

HANG = object()
Script = Iterable[bytes | float | object]


def head(status: int, *, length: int | None = None, chunked: bool = False, extra: str = "") -> bytes:
    """A response head: Content-Length `length`, or chunked, or neither (the body ends at close)."""
    lines = [f"HTTP/1.1 {status} X", "Content-Type: application/json"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    if extra:
        lines.append(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (b"" ends the body)."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def answer_json(status: int, body: bytes) -> Callable[[bytes], Script]:
    """A well-behaved answer of `body` in one piece."""
    return lambda _request: [head(status, length=len(body)) + body]


class ScriptedHttp(LoopbackServer):
    def __init__(self, answer: Callable[[bytes], Script]) -> None:
        super().__init__("scripted")
        self._answer = answer
        self._requests: list[bytes] = []
        self._hung_up = 0

    @property
    def requests(self) -> list[bytes]:
        """Each request's head (request line and headers), in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def hung_up(self) -> int:
        """Connections whose client went away before the script ended (a write failed or HANG saw EOF)."""
        with self._lock:
            return self._hung_up

    def _serve(self, conn: socket.socket, index: int) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                try:
                    more = conn.recv(65536)
                except OSError:
                    return
                if not more:
                    return
                data += more
            request = data.split(b"\r\n\r\n", 1)[0]
            with self._lock:
                self._requests.append(request)
            try:
                for item in self._answer(request):
                    if isinstance(item, bytes):
                        conn.sendall(item)
                    elif isinstance(item, float | int):
                        time.sleep(item)
                    elif item is HANG:
                        while conn.recv(65536):
                            pass
                        raise ConnectionResetError("the client went away")
            except OSError:
                with self._lock:
                    self._hung_up += 1
