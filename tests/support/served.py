"""A real `payflow-bot serve` process, the one way tests start it (the `start_serve` fixture in
tests/conftest.py). Its stderr is read all along by a thread — a chatty serve would otherwise
block on a full pipe — and kept line by line, so tests assert on exactly what the bot logged."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Sequence
from typing import Any, Self

import httpx

from sandbox.local import free_port, serve_process, wait_until

STOP_GRACE = 45  # seconds: a graceful stop lets the worker finish, so none outlives its test


class Served:
    def __init__(self, settings: dict[str, str], *args: str, wrap: Sequence[str] = ()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = serve_process(
            self.port,
            settings,
            *args,
            wrap=wrap,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._drain = threading.Thread(target=self._read, name="serve-stderr", daemon=True)
        self._drain.start()
        self.http = httpx.Client(base_url=self.url, timeout=10)
        self.socket: Any = None  # the Socket Mode endpoint it is connected to, when a test gives one

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._lock:
                self._lines.append(line.rstrip("\n"))

    def lines(self, start: int = 0) -> list[str]:
        with self._lock:
            return self._lines[start:]

    def text(self) -> str:
        """Everything logged so far; all of it once `wait_exit` or `stop` has returned."""
        return "\n".join(self.lines())

    def records(self, start: int = 0) -> list[dict[str, Any]]:
        """Every line since `start` as the JSON object it must be."""
        return [json.loads(line) for line in self.lines(start)]

    def up(self) -> bool:
        """Whether /healthz answers 200; a serve that has exited fails the test with its log."""
        assert self.proc.poll() is None, f"serve exited ({self.proc.returncode}):\n{self.text()}"
        try:
            return self.http.get("/healthz", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_up(self, timeout: float = 30) -> Self:
        wait_until(self.up, timeout, "serve to answer /healthz", poll=0.05)
        return self

    def wait_exit(self, timeout: float) -> int:
        """The exit code, once stderr has been read to its end."""
        code = self.proc.wait(timeout=timeout)
        self._drain.join(timeout=5)
        return code

    def stop(self) -> None:
        """SIGTERM and a bounded graceful wait, then SIGKILL. Idempotent."""
        self.http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._drain.join(timeout=5)
