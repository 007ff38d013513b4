"""A dependency that is up but hung: a TCP server on a free loopback port that accepts every
connection, reads whatever is sent and never answers a byte.

This is the failure that costs the most — a refused connection fails at once, a black hole
costs a full timeout per attempt — so it is what proves "one deadline per call, no hidden
retries": the test counts the connections and the requests the black hole saw.

    with BlackHole() as hole:
        ...point a client at hole.url...
        assert hole.connections == 1
"""

from __future__ import annotations

import socket

from tests.support.loopback import LoopbackServer


class BlackHole(LoopbackServer):
    def __init__(self) -> None:
        super().__init__("blackhole")
        self._first_bytes: dict[int, bytes] = {}  # what each connection sent first (its request line)

    @property
    def requests(self) -> list[bytes]:
        """The first bytes each connection sent (for HTTP, the request line and headers)."""
        with self._lock:
            return [self._first_bytes.get(i, b"") for i in range(len(self._sockets))]

    def _serve(self, conn: socket.socket, index: int) -> None:
        """Read and keep the first bytes; never write. Returns when the client gives up."""
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                kept = self._first_bytes.get(index, b"")
                if len(kept) < 4096:
                    self._first_bytes[index] = kept + data[:4096]
