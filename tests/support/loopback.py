"""A TCP server on a free loopback port that accepts every connection and serves each on its own
thread: the base of the tests' misbehaving dependencies (`BlackHole`, `ScriptedHttp`), which
differ only in what they do with a connection. Counts the connections it accepted; `stop()`
closes the listener and every connection, so no serving thread outlives the test."""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import Self

import yaml


class LoopbackServer:
    host = "127.0.0.1"

    def __init__(self, name: str) -> None:
        self._listener = socket.socket()
        self._listener.bind((self.host, 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name=f"{name}:{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        with self._lock:
            return len(self._sockets)

    def _serve(self, conn: socket.socket, index: int) -> None:
        """Serve connection number `index` (0 first), on its own thread."""
        raise NotImplementedError

    def start(self) -> Self:
        self._thread.start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # the listener was closed: stop() was called
                return
            with self._lock:
                index = len(self._sockets)
                self._sockets.append(conn)
            threading.Thread(target=self._serve, args=(conn, index), daemon=True).start()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        self._listener.close()
        with self._lock:
            for conn in self._sockets:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv()
                conn.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def kubeconfig_at(path: Path, server: LoopbackServer) -> Path:
    """A kubeconfig for an API server played by `server` (plain HTTP, bearer token `t0ken`,
    namespace payflow)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server.url}}],
        "users": [{"name": "bot", "user": {"token": "t0ken"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "bot", "namespace": "payflow"}}],
        "current-context": "c",
    }
    path.write_text(yaml.safe_dump(config))
    return path
