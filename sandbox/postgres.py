"""A private PostgreSQL server (the OS package's binaries) for tests, benchmarks and `make run`.

`initdb` into a fresh temporary directory, then `pg_ctl start` on a free loopback port with its
unix socket inside that directory, so nothing touches the machine's own cluster on 5432. The
server preloads `pg_stat_statements` (tracking nested statements too) because the bot's
slow-statement view reads it. Durability is switched off (fsync, full-page writes): the data is
thrown away, and a start in about a second matters more.

`initdb` and `postgres` refuse to run as root (CI runs as root): then every server command runs
as the `postgres` OS user through `runuser`, with the directory handed to that user.

    with PostgresServer() as pg:
        with pg.connect() as conn:            # the superuser, on the `payflow` database
            conn.execute("SELECT 1")
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import weakref
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

import psycopg
from psycopg import sql

from sandbox.local import LocalServer, free_port

__all__ = ["INSTALL_HINT", "PostgresServer", "PostgresServerMissing", "find_bindir"]

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found: install them with "
    "`sudo apt-get install postgresql` (Debian/Ubuntu) or `make system-deps`, or set PG_BINDIR"
)
SERVER_USER = "postgres"
_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "shared_preload_libraries": "'pg_stat_statements'",
    "pg_stat_statements.track": "all",
    "pg_stat_statements.max": "5000",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "40",
    "max_wal_size": "1GB",
    "logging_collector": "off",
    "log_min_messages": "warning",
}


class PostgresServerMissing(RuntimeError):
    """No PostgreSQL server binaries; the message says how to install them."""


def find_bindir() -> Path:
    """Where initdb/pg_ctl live: $PG_BINDIR, `pg_config --bindir`, then /usr/lib/postgresql/*/bin
    (newest first). `pg_config` alone is not enough: Debian ships it with the client package, and
    its --bindir then names a directory without the server binaries."""
    candidates: list[str] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(os.environ["PG_BINDIR"])
    if shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=10)
            candidates.append(out.stdout.strip())
    versioned = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(versioned, key=lambda p: int(Path(p).parent.name or 0), reverse=True)
    for candidate in candidates:
        if candidate and all(
            os.access(Path(candidate, b), os.X_OK) for b in ("initdb", "pg_ctl", "postgres")
        ):
            return Path(candidate)
    raise PostgresServerMissing(INSTALL_HINT)


class PostgresServer(LocalServer):
    """One throw-away cluster. `superuser` owns the cluster and the `database` created at start;
    its password is random and only in `dsn()`. TCP logins need the password (scram), as in
    production; the unix socket (in the private directory) trusts the OS user that owns it."""

    host = "127.0.0.1"

    def __init__(
        self, *, superuser: str = "payflow", database: str = "payflow", startup_timeout: float = 60.0
    ) -> None:
        self.bindir = find_bindir()
        self.superuser = superuser
        self.database = database
        self.password = secrets.token_urlsafe(18)
        self.startup_timeout = startup_timeout
        self.port = free_port(self.host)
        self.dir = Path(tempfile.mkdtemp(prefix="payflow-pg-"))
        self.data = self.dir / "data"
        self.log_path = self.dir / "server.log"
        self._as_user = _server_user()
        self._state = _State(self.bindir, self.data, self._as_user)
        # Never leave a postmaster behind: runs on close(), garbage collection or interpreter exit.
        self._finalizer = weakref.finalize(self, _cleanup, self._state, self.dir)

    def dsn(self, user: str | None = None, password: str | None = None, database: str | None = None) -> str:
        """A libpq URL over TCP; without arguments, the superuser's."""
        user = user or self.superuser
        secret = self.password if password is None and user == self.superuser else password
        auth = quote(user, safe="") + (f":{quote(secret, safe='')}" if secret else "")
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(database or self.database, safe='')}"

    @property
    def running(self) -> bool:
        return self._state.started

    def connect(self, dsn: str | None = None, **kwargs: Any) -> psycopg.Connection[Any]:
        """A connection with a 5 s connect deadline (autocommit unless told otherwise)."""
        kwargs.setdefault("autocommit", True)
        return psycopg.connect(dsn or self.dsn(), connect_timeout=5, **kwargs)

    def start(self) -> Self:
        """initdb once, then start the server and create `database`; returns when it accepts logins."""
        if self._state.started:
            return self
        if not self.data.exists():
            self._initdb()
        for attempt in range(5):
            self._write_port_settings()
            result = self._run(
                "pg_ctl", "start", "-w", "-t", str(int(self.startup_timeout)),
                "-D", str(self.data), "-l", str(self.log_path),
                timeout=self.startup_timeout + 10,
            )  # fmt: skip
            if result.returncode == 0:
                self._state.started = True
                break
            if "already in use" not in self.log_tail() or attempt == 4:
                raise RuntimeError(f"pg_ctl start failed ({result.stdout.strip()}); {self.log_tail()}")
            self.port = free_port(self.host)  # lost a race for the free port; pick another
        self._create_database()
        return self

    @property
    def _conf(self) -> Path:
        return self.data / "postgresql.conf"

    def _initdb(self) -> None:
        if self._as_user is not None:
            os.chown(self.dir, self._as_user.pw_uid, self._as_user.pw_gid)
        pwfile = self.dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._as_user is not None:
            os.chown(pwfile, self._as_user.pw_uid, self._as_user.pw_gid)
        pwfile.chmod(0o600)
        try:
            result = self._run(
                "initdb", "-D", str(self.data), "-U", self.superuser, "--pwfile", str(pwfile),
                "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C",
                "--no-sync", "--no-instructions",
                timeout=120,
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed: {result.stdout.strip()[-2000:]}")
        settings = {**_SETTINGS, "unix_socket_directories": f"'{self.dir}'"}
        with self._conf.open("a") as conf:
            conf.write("\n# payflow sandbox\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))

    def _write_port_settings(self) -> None:
        """The port lives in its own include file so a retry on another port rewrites one line."""
        port_file = self.data / "port.conf"
        port_file.write_text(f"port = {self.port}\n")
        text = self._conf.read_text()
        if "include_if_exists = 'port.conf'" not in text:
            self._conf.write_text(text + "include_if_exists = 'port.conf'\n")

    def _create_database(self) -> None:
        with self.connect(self.dsn(database="postgres")) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))

    def _run(self, binary: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return _run(self.bindir, self._as_user, binary, *args, timeout=timeout)

    def stop(self) -> None:
        """`pg_ctl stop -m immediate`: nothing is worth keeping, and it takes milliseconds. Idempotent."""
        self._state.stop()

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self._finalizer()

    def __repr__(self) -> str:
        return f"<PostgresServer {self.host}:{self.port} {'running' if self.running else 'stopped'}>"


def _server_user() -> pwd.struct_passwd | None:
    """The OS user to run the server as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise PostgresServerMissing(
            f"running as root, and PostgreSQL refuses root: no `{SERVER_USER}` OS user to run it as "
            "(the postgresql package creates it)"
        ) from None


def _run(
    bindir: Path, as_user: pwd.struct_passwd | None, binary: str, *args: str, timeout: float
) -> subprocess.CompletedProcess[str]:
    command = [str(bindir / binary), *args]
    if as_user is not None:
        command = ["runuser", "-u", as_user.pw_name, "--", *command]
    # The caller's PG* variables (PGDATA, PGPORT, ...) must not steer a private server.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update({"LC_ALL": "C", "LANG": "C"})
    return subprocess.run(
        command,
        env=env,
        cwd="/",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


class _State:
    """What the finalizer needs to stop the server, held apart from `PostgresServer`."""

    def __init__(self, bindir: Path, data: Path, as_user: pwd.struct_passwd | None) -> None:
        self.bindir, self.data, self.as_user = bindir, data, as_user
        self.started = False

    def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        _run(
            self.bindir,
            self.as_user,
            "pg_ctl",
            "stop",
            "-m",
            "immediate",
            "-w",
            "-D",
            str(self.data),
            timeout=60,
        )


def _cleanup(state: _State, directory: Path) -> None:
    state.stop()
    shutil.rmtree(directory, ignore_errors=True)
