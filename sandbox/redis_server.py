"""A private, throw-away `redis-server` for tests, benchmarks and `make run`.

Tests run against a real server rather than a fake because the things worth testing — Lua
scripts, SET NX/KEEPTTL, stream ids, reconnect after an outage — are exactly what fakes get
subtly wrong. Each server binds 127.0.0.1 on its own free port, keeps nothing on disk, and is
killed at interpreter exit even if a test crashes.

    with RedisServer() as server:              # or: server = RedisServer().start()
        store = RedisStore(server.url)
        server.stop(); ...; server.start()     # same port, empty data: an outage and recovery

tests/support/redis_server.py makes a pytest fixture of it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

import redis

from sandbox.local import LocalServer, free_port, wait_until

__all__ = ["RedisServer", "RedisServerMissing", "find_redis_server"]

_INSTALL_HINT = (
    "redis-server was not found; install the `redis-server` "
    "package (e.g. `apt-get install -y redis-server`) or set REDIS_SERVER_BIN to its path"
)


class RedisServerMissing(RuntimeError):
    """No redis-server binary; the message says how to install one."""


def find_redis_server() -> str:
    """Path of the redis-server binary: $REDIS_SERVER_BIN, then PATH, then /usr/bin."""
    candidates = [os.environ.get("REDIS_SERVER_BIN"), shutil.which("redis-server"), "/usr/bin/redis-server"]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RedisServerMissing(_INSTALL_HINT)


class RedisServer(LocalServer):
    """One redis-server subprocess (not daemonised) with no persistence.

    ``port`` is chosen once and kept, so `stop` then `start` brings the server back where
    clients expect it (with empty data, since nothing is saved). ``password`` sets
    ``--requirepass`` and is put into `url`.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        port: int | None = None,
        password: str | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 10.0,
    ) -> None:
        self.executable = find_redis_server()
        self.password = password
        self.extra_args = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port(self.host)
        self._dir = Path(tempfile.mkdtemp(prefix="payflow-redis-"))
        self._handle = _Handle()
        # Never leave an orphan server behind: runs on close(), garbage collection or exit.
        self._finalizer = weakref.finalize(self, _cleanup, self._handle, self._dir)

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        proc = self._handle.proc
        return proc is not None and proc.poll() is None

    @property
    def pid(self) -> int | None:
        proc = self._handle.proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def log_path(self) -> Path:
        return self._dir / "redis.log"

    def start(self) -> Self:
        """Start (or restart) the server and return once it answers PING."""
        if self.running:
            return self
        for attempt in range(5):
            try:
                self._spawn()
                return self
            except _PortTaken:
                if self._fixed_port or attempt == 4:
                    raise RuntimeError(f"port {self.port} is in use; {self.log_tail()}") from None
                self.port = free_port(self.host)  # lost a race for the free port; pick another
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        args = [
            self.executable,
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self._dir),
            "--daemonize", "no",
            "--logfile", "",
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        args += self.extra_args
        with self.log_path.open("ab") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._handle.proc = proc

        def answers() -> bool:
            if proc.poll() is not None:
                tail = self.log_tail()
                self._handle.proc = None
                if "Address already in use" in tail:
                    raise _PortTaken
                raise RuntimeError(f"redis-server exited during startup; {tail}")
            return self._answers()

        try:
            wait_until(answers, self.startup_timeout, "redis-server to answer PING")
        except AssertionError:
            self.stop()
            raise

    def _answers(self) -> bool:
        client = self.client(socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
            return False
        finally:
            client.close()

    def stop(self) -> None:
        """Terminate the server and wait for it; the port is free again afterwards. Idempotent."""
        self._handle.stop()

    def flush(self) -> None:
        """Remove every key (FLUSHALL) and every cached Lua script."""
        client = self.client()
        try:
            client.flushall()
            client.script_flush()
        finally:
            client.close()

    def client(self, **kwargs: Any) -> redis.Redis:
        """A synchronous client for test set-up and inspection."""
        return redis.Redis.from_url(self.url, decode_responses=True, **kwargs)

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self._finalizer()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer {self.address} {state}>"


class _PortTaken(Exception):
    pass


class _Handle:
    """The live process, held apart from `RedisServer` so the finalizer can reach it."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _cleanup(handle: _Handle, directory: Path) -> None:
    handle.stop()
    shutil.rmtree(directory, ignore_errors=True)
