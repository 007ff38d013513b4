"""A private RabbitMQ node with the management plugin, for tests, benchmarks and `make run`.

The machine's own broker (rabbit@localhost on 5672) is never touched: this node has its own
name (`payflow-<port>@localhost`), AMQP, distribution and HTTP ports, config, enabled-plugins
file, Mnesia and log directories and Erlang cookie (HOME), all in a temporary directory, and
ignores /etc/rabbitmq/rabbitmq-env.conf. The management HTTP API is what the bot reads, with a
user tagged `monitoring` that has no AMQP rights at all (empty permission patterns on the vhost:
enough to see its queues, nothing to publish, consume or configure).

It runs as root when we are root (RabbitMQ allows it), in its own process group, so teardown
can end every Erlang process it started. The machine's `epmd` (port 4369) is shared and stays.

    with RabbitNode() as node:
        node.amqp_url                # the admin, full rights on vhost `payflow`
        node.management_url          # http://127.0.0.1:<port>
        node.monitor_user, node.monitor_password
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

import httpx

from sandbox.local import LocalServer, free_port, wait_until

__all__ = ["INSTALL_HINT", "RabbitNode", "RabbitServerMissing", "find_rabbit_bindir"]

INSTALL_HINT = (
    "RabbitMQ was not found (/usr/lib/rabbitmq/bin/rabbitmq-server): install it with "
    "`sudo apt-get install rabbitmq-server` (Debian/Ubuntu) or `make system-deps`, or set RABBITMQ_BINDIR"
)
VHOST = "payflow"
ADMIN_USER = "payflow-admin"
MONITOR_USER = "payflow-monitor"


class RabbitServerMissing(RuntimeError):
    """No RabbitMQ scripts; the message says how to install them."""


def find_rabbit_bindir() -> Path:
    """The real scripts, not /usr/sbin's wrappers: those `su` to the rabbitmq user and `cd` to
    /var/lib/rabbitmq, which would share the system broker's cookie and home."""
    for candidate in (os.environ.get("RABBITMQ_BINDIR"), "/usr/lib/rabbitmq/bin"):
        if candidate and os.access(Path(candidate, "rabbitmq-server"), os.X_OK):
            return Path(candidate)
    raise RabbitServerMissing(INSTALL_HINT)


class RabbitNode(LocalServer):
    """One throw-away RabbitMQ node. The admin (`payflow-admin`, random password) is created by
    the node itself on first boot (`default_user`), with full rights on the `payflow` vhost; the
    monitoring user is added through the management API once the node answers."""

    host = "127.0.0.1"

    def __init__(self, *, startup_timeout: float = 90.0) -> None:
        self.bindir = find_rabbit_bindir()
        self.startup_timeout = startup_timeout
        self.dir = Path(tempfile.mkdtemp(prefix="payflow-rabbit-"))
        self.admin_user, self.admin_password = ADMIN_USER, secrets.token_urlsafe(18)
        self.monitor_user, self.monitor_password = MONITOR_USER, secrets.token_urlsafe(18)
        self.vhost = VHOST
        self._pick_ports()
        self.started_in: float | None = None
        self._handle = _Handle()
        # Never leave a node behind: runs on close(), garbage collection or interpreter exit.
        self._finalizer = weakref.finalize(self, _cleanup, self._handle, self.dir)

    def _pick_ports(self) -> None:
        ports: set[int] = set()
        while len(ports) < 3:  # three distinct ones: the kernel may hand the same port back
            ports.add(free_port(self.host))
        self.amqp_port, self.dist_port, self.management_port = sorted(ports)
        self.nodename = f"payflow-{self.amqp_port}@localhost"

    @property
    def amqp_url(self) -> str:
        """The admin's AMQP URL (publishing and consuming in tests and the demo)."""
        auth = f"{quote(self.admin_user, safe='')}:{quote(self.admin_password, safe='')}"
        return f"amqp://{auth}@{self.host}:{self.amqp_port}/{quote(self.vhost, safe='')}"

    @property
    def management_url(self) -> str:
        return f"http://{self.host}:{self.management_port}"

    @property
    def running(self) -> bool:
        proc = self._handle.proc
        return proc is not None and proc.poll() is None

    @property
    def log_path(self) -> Path:
        return self.dir / "server.out"

    def admin_api(self, timeout: float = 10.0) -> httpx.Client:
        return httpx.Client(
            base_url=self.management_url, auth=(self.admin_user, self.admin_password), timeout=timeout
        )

    def monitor_api(self, timeout: float = 10.0) -> httpx.Client:
        """The management API as the bot sees it: the monitoring user."""
        return httpx.Client(
            base_url=self.management_url, auth=(self.monitor_user, self.monitor_password), timeout=timeout
        )

    def start(self) -> Self:
        """Boot the node, wait (with a deadline) until its management API answers the admin,
        then create the monitoring user. `started_in` records how long the boot took."""
        if self.running:
            return self
        began = time.monotonic()
        self._write_files()
        with self.log_path.open("ab") as log:
            self._handle.proc = subprocess.Popen(
                [str(self.bindir / "rabbitmq-server")],
                env=self._env(),
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: teardown ends every Erlang child
            )
        self._handle.ctl = [str(self.bindir / "rabbitmqctl"), "-n", self.nodename]
        self._handle.env = self._env()
        try:
            wait_until(self._ready, self.startup_timeout, f"RabbitMQ node {self.nodename}", poll=0.1)
            self._add_monitor_user()
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - began
        return self

    def _ready(self) -> bool:
        proc = self._handle.proc
        if proc is None or proc.poll() is not None:
            raise RuntimeError(f"rabbitmq-server exited during startup; {self.log_tail()}")
        try:
            with self.admin_api(timeout=2) as api:
                return api.get("/api/overview").status_code == 200
        except httpx.HTTPError:
            return False

    def _add_monitor_user(self) -> None:
        with self.admin_api() as api:
            user = f"/api/users/{quote(self.monitor_user, safe='')}"
            api.put(user, json={"password": self.monitor_password, "tags": "monitoring"}).raise_for_status()
            # Empty patterns: the vhost's queues become visible to the user, and nothing else.
            api.put(
                f"/api/permissions/{quote(self.vhost, safe='')}/{quote(self.monitor_user, safe='')}",
                json={"configure": "^$", "write": "^$", "read": "^$"},
            ).raise_for_status()

    def _write_files(self) -> None:
        (self.dir / "enabled_plugins").write_text("[rabbitmq_management].\n")
        (self.dir / "rabbitmq-env.conf").write_text("# private node: nothing from /etc/rabbitmq\n")
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = {self.host}:{self.amqp_port}\n"
            f"management.tcp.ip = {self.host}\n"
            f"management.tcp.port = {self.management_port}\n"
            "loopback_users = none\n"
            f"default_vhost = {self.vhost}\n"
            f"default_user = {self.admin_user}\n"
            f"default_pass = {self.admin_password}\n"
            "default_user_tags.administrator = true\n"
            "default_permissions.configure = .*\n"
            "default_permissions.read = .*\n"
            "default_permissions.write = .*\n"
            # Statistics every second, so `mq` in a test or the demo shows fresh counts.
            "collect_statistics_interval = 1000\n"
            "log.console = true\n"
            "log.console.level = warning\n"
            "log.file = false\n"
        )
        # The agent keeps 5-second samples by default: queue depths would lag up to 5 s.
        (self.dir / "advanced.config").write_text(
            "[{rabbitmq_management_agent, [{sample_retention_policies,\n"
            "  [{global, [{605, 1}]}, {basic, [{605, 1}]}, {detailed, [{10, 1}]}]}]}].\n"
        )

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            {
                "HOME": str(self.dir),  # the Erlang cookie: private to this node and its rabbitmqctl
                "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
                "RABBITMQ_NODENAME": self.nodename,
                "RABBITMQ_NODE_IP_ADDRESS": self.host,
                "RABBITMQ_NODE_PORT": str(self.amqp_port),
                "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
                "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.dir / "advanced.config"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
                "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
                "RABBITMQ_LOG_BASE": str(self.dir / "log"),
                "RABBITMQ_PID_FILE": str(self.dir / "node.pid"),
                "ERL_EPMD_ADDRESS": "127.0.0.1",
            }
        )
        return env

    def stop(self) -> None:
        """`rabbitmqctl -n <node> stop`, then end whatever is left of the process group. Idempotent."""
        self._handle.stop()

    def kill(self) -> None:
        """End the node's whole process group at once, without `rabbitmqctl stop`'s seconds: the
        console's demo node holds nothing worth a clean shutdown. Idempotent; close() still
        removes the directory."""
        proc = self._handle.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def close(self) -> None:
        """Stop the node and remove its directory."""
        self._finalizer()

    def __repr__(self) -> str:
        return f"<RabbitNode {self.nodename} amqp={self.amqp_port} http={self.management_port}>"


class _Handle:
    """The live node, held apart from `RabbitNode` so the finalizer can reach it."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[Any] | None = None
        self.ctl: list[str] = []
        self.env: dict[str, str] = {}

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                subprocess.run(
                    [*self.ctl, "stop"],
                    env=self.env,
                    capture_output=True,
                    timeout=30,
                    stdin=subprocess.DEVNULL,
                )
        # The group outlives the script when a child lingers (erl_child_setup, inet_gethost).
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # nothing of the group may survive the script
        proc.wait()


def _cleanup(handle: _Handle, directory: Path) -> None:
    handle.stop()
    shutil.rmtree(directory, ignore_errors=True)
