"""A real `payflow-bot serve` process whose stderr is read all along (a full pipe would stall
the bot) and kept line by line, so tests assert on exactly what the bot logged."""

from __future__ import annotations

import json
import subprocess
import threading
from typing import Any, Self

import httpx

from sandbox.local import free_port, serve_process, wait_until


class Served:
    def __init__(self, settings: dict[str, str], *args: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = serve_process(
            self.port, settings, *args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._drain = threading.Thread(target=self._read, name="serve-stderr", daemon=True)
        self._drain.start()
        self.http = httpx.Client(base_url=self.url, timeout=10)
        self.socket: Any = None  # the Socket Mode endpoint it is connected to, when a test gives one

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._lock:
                self._lines.append(line.rstrip("\n"))

    def lines(self, start: int = 0) -> list[str]:
        with self._lock:
            return self._lines[start:]

    def records(self, start: int = 0) -> list[dict[str, Any]]:
        """Every line since `start` as the JSON object it must be."""
        return [json.loads(line) for line in self.lines(start)]

    def wait_up(self, timeout: float = 20) -> Self:
        def up() -> bool:
            assert self.proc.poll() is None, "serve exited:\n" + "\n".join(self.lines())
            try:
                return self.http.get("/healthz", timeout=0.5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout, "serve to answer /healthz", poll=0.05)
        return self

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._drain.join(timeout=5)
