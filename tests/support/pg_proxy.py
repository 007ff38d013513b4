"""A TCP relay in front of the test PostgreSQL that can lose answers the way a network does.

- `lose_commit_answers`: on a connection whose client sends `COMMIT`, the server's bytes are
  dropped from then on (the commit happens; its answer never arrives);
- `hang_new`: new connections are accepted and never answered (a server that stopped answering).

    with PgProxy(postgres_server.server.port) as proxy:
        dsn = proxy.dsn(postgres_server.bot_dsn)
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from typing import Self


class PgProxy:
    host = "127.0.0.1"

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.lose_commit_answers = False
        self.hang_new = False
        self.commits_seen = 0
        self._listener = socket.create_server((self.host, 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name=f"pg-proxy:{self.port}", daemon=True).start()

    def dsn(self, dsn: str) -> str:
        return dsn.replace(f":{self.upstream_port}/", f":{self.port}/")

    def _keep(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._keep(client)
            if self.hang_new:
                continue  # accepted, read by nobody, never answered
            server = socket.create_connection((self.host, self.upstream_port))
            self._keep(server)
            silenced = threading.Event()
            threading.Thread(target=self._pump, args=(client, server, silenced, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, silenced, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, silenced: threading.Event, upward: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if upward and b"COMMIT" in data and self.lose_commit_answers:
                    with self._lock:
                        self.commits_seen += 1
                    silenced.set()
                if not upward and silenced.is_set():
                    continue  # the answer is lost on the way back
                dst.sendall(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
