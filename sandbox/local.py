"""Small helpers for running the sandbox's local processes: a free loopback port, and waiting
for something to become true with a deadline (never a fixed sleep)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], T], timeout: float, what: str, poll: float = 0.02) -> T:
    """The predicate's first truthy value, asked again every `poll` seconds until `timeout`: the
    one wait of the tests and benches, so every wait has a deadline and a timeout says what never
    happened (an AssertionError naming `what` and the last value seen). Exceptions from the
    predicate propagate: a wait retries nothing it was not asked to."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last: {_shown(value)}")
        time.sleep(min(poll, left))


def _shown(value: object, limit: int = 500) -> str:
    """A value's repr for a failure message, cut visibly when long."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


SETTINGS_PREFIXES = ("SLACK_", "REDIS_", "PAYFLOW_", "ALERTMANAGER_", "PROMETHEUS_", "KUBECONFIG")


def serve_process(
    port: int, settings: dict[str, str], *args: str, wrap: Sequence[str] = (), **popen: Any
) -> subprocess.Popen[Any]:
    """`payflow-bot serve [args]` on loopback, configured only by `settings` (the environment
    contract): whatever the calling shell has set for the bot (or matplotlib) is dropped, so
    nothing leaks in. `wrap` runs it under another command (`unshare ... sh -c ...`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith((*SETTINGS_PREFIXES, "LOG_", "MPL"))}
    env.update({"PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING", **settings})
    command = [
        *wrap,
        sys.executable,
        "-m",
        "bot.shell.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *args,
    ]
    return subprocess.Popen(command, cwd=ROOT, env=env, **popen)


def sandbox_process(port: int, kubeconfig: Path, *args: str, **popen: Any) -> subprocess.Popen[Any]:
    """`payflow-bot sandbox` on loopback, writing the kubeconfig that points at it."""
    command = [
        sys.executable,
        "-m",
        "bot.shell.cli",
        "sandbox",
        "--port",
        str(port),
        "--kubeconfig",
        str(kubeconfig),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([*command, *args], cwd=ROOT, env=env, **{"stdout": subprocess.DEVNULL, **popen})


def stop_newest_first(procs: list[subprocess.Popen[Any]], timeout: float = 60) -> None:
    """Newest first, each gone before the next: serve finishes its queued work while the Slack
    stand-in, the cluster and Redis it talks to are still there."""
    for proc in reversed(procs):
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def redis_command(port: int, directory: Path) -> list[str]:
    """A throw-away redis-server that keeps nothing on disk."""
    binary = shutil.which("redis-server") or "redis-server"
    return [binary, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(directory)]


class LocalServer:
    """What every private server started here shares (PostgreSQL, RabbitMQ, Redis, Prometheus):
    `with` starts it, and closes it — also when the start fails half-way, so no process or
    directory is left behind — and its log's tail explains a start that failed."""

    def start(self) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def log_tail(self, lines: int = 15) -> str:
        path = getattr(self, "log_path", None)  # an attribute or a property of the server
        try:
            text = Path(path).read_text(errors="replace") if path else ""
        except OSError:
            text = ""
        return "log tail:\n" + "\n".join(text.splitlines()[-lines:]) if text else "no log"

    def __enter__(self) -> Any:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.close()
