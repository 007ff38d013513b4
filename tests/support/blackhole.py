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

import contextlib
import socket
import threading
from types import TracebackType
from typing import Self


class BlackHole:
    host = "127.0.0.1"

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind((self.host, 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._connections = 0
        self._first_bytes: list[bytes] = []  # what each connection sent first (its request line)
        self._sockets: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name=f"blackhole:{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    @property
    def requests(self) -> list[bytes]:
        """The first bytes each connection sent (for HTTP, the request line and headers)."""
        with self._lock:
            return list(self._first_bytes)

    def start(self) -> Self:
        self._thread.start()
        return self

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._connections += 1
                self._sockets.append(conn)
                index = len(self._first_bytes)
                self._first_bytes.append(b"")
            threading.Thread(target=self._swallow, args=(conn, index), daemon=True).start()

    def _swallow(self, conn: socket.socket, index: int) -> None:
        """Read and keep the first bytes; never write. Returns when the client gives up."""
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                if len(self._first_bytes[index]) < 4096:
                    self._first_bytes[index] += data[:4096]

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        self._listener.close()
        with self._lock:
            for conn in self._sockets:
                with contextlib.suppress(OSError):
                    conn.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
