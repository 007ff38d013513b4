"""`make run`'s data stores: the real console process starts PayFlow's PostgreSQL, Redis and
RabbitMQ in the background, its data commands answer with their figures, and however it is left
(/quit, Ctrl-D, Ctrl-C) nothing it started is left running or on disk."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.shell.console import Console
from sandbox.demo_data import BACKLOG, BLACKLISTED, DemoData
from sandbox.local import child_pids, wait_until
from tests.test_console import ROOT, Step, run_session

READY = ("PostgreSQL ready", "PayFlow's Redis ready", "RabbitMQ ready")
START_SECONDS = 120  # three servers on a shared machine; RabbitMQ alone takes 3–8 s


class RunningConsole:
    """`payflow-bot console --sandbox` with its own TMPDIR, read line by line as it prints
    (stdout and stderr each drained by a thread: a chatty console never blocks on a full pipe)."""

    started: list[RunningConsole] = []  # killed with all they started when the test ends

    def __init__(self, tmpdir: Path) -> None:
        self.tmpdir = tmpdir
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SLACK_", "REDIS_", "KUBECONFIG", "PAYFLOW_", "DATABASE_", "RABBITMQ_"))
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot.shell.cli", "console", "--sandbox"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**env, "TMPDIR": str(tmpdir)},
        )
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._reader = self._drain(self.proc.stdout, self.lines)
        self._err_reader = self._drain(self.proc.stderr, self.errors)
        RunningConsole.started.append(self)

    @staticmethod
    def _drain(stream: Any, into: list[str]) -> threading.Thread:
        def read() -> None:
            for line in stream:
                into.append(line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        return reader

    @property
    def stderr(self) -> str:
        self._err_reader.join(10)
        return "".join(self.errors)

    def kill(self) -> None:
        """What a failed test leaves: the console and everything it started, killed."""
        if self.proc.poll() is None:
            for pid in [*child_pids(self.proc.pid), self.proc.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    @property
    def out(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, after: int = 0) -> None:
        printed = lambda: text in "".join(self.lines[after:])  # noqa: E731
        try:
            wait_until(printed, START_SECONDS, f"the console to print {text!r}", poll=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; it printed:\n{self.out}") from None

    def type(self, line: str) -> int:
        """Type a line; the index of the output it answers from."""
        assert self.proc.stdin is not None
        mark = len(self.lines)
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return mark

    def finish(self) -> int:
        code = self.proc.wait(timeout=START_SECONDS)
        self._reader.join(10)
        return code


def _started_by(tmpdir: Path) -> list[str]:
    """Live processes whose command line or environment names `tmpdir`: every one the console
    started carries it (TMPDIR is inherited; the servers' data directories are under it). The
    shared `epmd` a RabbitMQ node starts when none runs is the machine's, and stays."""
    found = []
    marker = str(tmpdir).encode()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (proc / "comm").read_text().strip() == "epmd" or "Z" in (proc / "stat").read_text().split()[2]:
                continue
            if marker in (proc / "cmdline").read_bytes() or marker in (proc / "environ").read_bytes():
                found.append(f"{proc.name} {(proc / 'cmdline').read_bytes()[:120]!r}")
        except OSError:  # gone meanwhile
            continue
    return found


@pytest.fixture
def tmpdir_for_console() -> Iterator[Path]:
    """Readable by the `postgres` OS user (PostgreSQL runs as it when we are root), unlike
    pytest's tmp_path; removed afterwards whatever was left in it."""
    path = Path(tempfile.mkdtemp(prefix="payflow-console-test-"))
    path.chmod(0o755)
    yield path
    for console in RunningConsole.started:
        console.kill()
    RunningConsole.started.clear()
    for leftover in _started_by(path):  # a server a killed console could not stop itself
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(leftover.split()[0]), signal.SIGKILL)
    shutil.rmtree(path, ignore_errors=True)


def _assert_nothing_left(console: RunningConsole, pids: list[int]) -> None:
    assert _started_by(console.tmpdir) == []
    alive = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    assert alive == [], f"children of the console still running: {alive}"
    kept = sorted(p.name for p in console.tmpdir.iterdir())
    assert kept and all(name.startswith("payflow-console-") for name in kept), kept  # its log and files


def test_data_commands_answer_with_the_demo_figures_and_quit_leaves_nothing(tmpdir_for_console):
    console = RunningConsole(tmpdir_for_console)
    console.wait_for("PayFlow console —")
    head = console.out
    assert "PostgreSQL: starting in the background" in head
    assert "PayFlow's Redis: starting in the background" in head
    assert "RabbitMQ: starting in the background" in head
    for text in READY:
        console.wait_for(text)
    started = _started_by(tmpdir_for_console)
    children = child_pids(console.proc.pid)
    assert any("postgres" in p for p in started) and any("beam" in p for p in started), started
    assert any(Path(f"/proc/{pid}/comm").read_text().strip() == "redis-server" for pid in children)

    at = console.type("/payflow db")
    console.wait_for("Database size:", at)
    at = console.type("/payflow tokens")
    console.wait_for(f"{BLACKLISTED:,} blacklisted tokens", at)
    at = console.type("/payflow mq")
    console.wait_for("RabbitMQ: 2 of 3 queues need attention", at)
    console.type("/quit")
    assert console.finish() == 0, console.stderr
    out = console.out
    assert "Connections:" in out  # the seeded server, read as the bot's role
    assert "Round trip:" in out
    assert "TTL min / median / max" in out
    email = next(line for line in out.splitlines() if line.startswith("notifications.email"))
    assert email.split()[1] == f"{BACKLOG:,}" and "no consumer" in email
    settle = next(line for line in out.splitlines() if line.startswith("payments.settle"))
    assert settle.split()[3] == "1" and settle.rstrip().endswith("ok")
    assert "not configured" not in out
    _assert_nothing_left(console, children)


@pytest.mark.parametrize("how", ["ctrl-d once ready", "ctrl-c while starting"])
def test_leaving_stops_every_store_even_half_started(tmpdir_for_console, how):
    console = RunningConsole(tmpdir_for_console)
    console.wait_for("PayFlow console —")
    if how == "ctrl-d once ready":
        for text in READY:
            console.wait_for(text)
        children = child_pids(console.proc.pid)
        assert children and _started_by(tmpdir_for_console)
        assert console.proc.stdin is not None
        console.proc.stdin.close()
        expected = 0
    else:
        wait_until(lambda: child_pids(console.proc.pid), 30, "the console to start a server")
        children = child_pids(console.proc.pid)
        console.proc.send_signal(signal.SIGINT)
        expected = 130
    assert console.finish() == expected
    stderr = console.stderr
    assert "Traceback" not in stderr and "Fatal" not in stderr, stderr
    _assert_nothing_left(console, children)


def test_a_command_whose_store_is_still_starting_says_so_and_sends_nothing(tmp_path):
    """Stores probed but not started stay "starting": what the console says meanwhile."""
    stores: list[DemoData] = []

    def starting(console: Console) -> None:
        data = DemoData(console.runtime.catalog)
        stores.append(data)
        console.demo_data = data

    try:
        steps: list[Step] = [
            starting,
            "/payflow mq",
            "/payflow db slow 3",
            "/payflow tokens",
            "/payflow status api-gateway",
        ]
        out = run_session(steps, tmp_path)[0]
    finally:
        for data in stores:
            data.close()
    assert "RabbitMQ is still starting" in out
    assert "PostgreSQL is still starting" in out
    assert "PayFlow's Redis is still starting" in out
    assert out.count("Nothing was sent to the bot.") == 3
    assert "not configured" not in out
    assert "live: blue" in out  # a command that needs no data store was answered
