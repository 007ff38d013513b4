"""Starting the console: the sandbox world behind `--sandbox` (cluster, Prometheus, embedded store)
or a real cluster as one catalog user, the local Slack stand-in and the log file; apart from the
REPL so that what the console talks to is chosen in one place."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import faulthandler
import logging
import os
import re
import secrets
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

from bot.base.logs import OneLineFormatter, escape
from bot.base.redact import redact
from bot.base.roles import Role
from bot.config.catalog import Catalog
from bot.config.settings import Settings
from bot.shell.console import Console, _repl
from bot.shell.runtime import build_runtime
from sandbox import demo
from sandbox.slack_requests import SlackRequests

_SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")


class ConsoleRefused(Exception):
    """The console cannot start as asked; the message says what to do instead."""


def catalog_user(catalog: Catalog, user_id: str) -> demo.DemoUser:
    """The person the catalog names by this Slack user ID, with the highest role it lists them
    under. Outside the sandbox there is no Slack to read user groups from, and anyone not named
    (`*` names nobody) is refused: an identity the console cannot vouch for must not act."""
    listed = {role: getattr(catalog.roles, role.label).users for role in sorted(Role, reverse=True)}
    for role, users in listed.items():
        if _SLACK_USER_ID.match(user_id) and user_id in users:  # never "*": that names no one
            return demo.DemoUser(user_id, user_id, role.label)
    named = sorted({u for users in listed.values() for u in users if u != "*"})
    hint = f" It names: {', '.join(named)}." if named else " It names nobody yet (roles.*.users)."
    raise ConsoleRefused(
        f"{user_id!r} is not a Slack user ID listed in the catalog's roles, so the console cannot act "
        f"as them.{hint} Without --sandbox the console acts as exactly one catalog user: "
        "--as <Slack user ID>. (Members of user groups must be listed by ID: the console has no "
        "Slack to read groups from.)"
    )


class _NoticeHandler(logging.Handler):
    """Warnings the user must see, as console notices instead of log lines in the chat."""

    def __init__(self, notice: Callable[[str], None]):
        super().__init__(logging.WARNING)
        self._notice = notice

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._notice(escape(redact(f"{record.levelname.lower()}: {record.getMessage()}")))
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def console_logging(path: Path, notice: Callable[[str], None]) -> Iterator[None]:
    """While the console runs, every log line goes to `path` and only warnings reach the terminal,
    as notices; the handlers in place before are restored afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    file = logging.FileHandler(path, encoding="utf-8")
    file.setFormatter(OneLineFormatter("text"))  # the project's one format: redacted, one line each
    root.handlers[:] = [file, _NoticeHandler(notice)]
    level = logging.getLevelName(os.environ.get("LOG_LEVEL", "INFO").upper())
    root.setLevel(level if isinstance(level, int) else logging.INFO)
    try:
        yield
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        file.close()


@contextlib.contextmanager
def open_console(
    *,
    sandbox: bool,
    user: str | None = None,
    out: TextIO = sys.stdout,
    workdir: Path | None = None,
    ansi: bool | None = None,
    demo_data: bool = True,
) -> Iterator[Console]:
    """The console with everything behind it started; stopped again on exit. In the sandbox the
    demo people and roles stand in for the catalog's and `user` is one of them (default alice);
    outside it the catalog's roles rule and `user` must be a Slack user ID the catalog lists.
    Raises ConsoleRefused (before anything starts) when it cannot run as asked.

    `workdir` (default: a new folder under the temp dir, kept after exit) holds the console's log
    and every file the bot shares; both are named at start. `demo_data`: in the sandbox, also
    start PayFlow's data stores (sandbox/demo_data.py) in the background."""
    from bot.config.catalog import load_catalog
    from bot.gateways.kube import Kube
    from bot.gateways.store import MemoryStore
    from sandbox.slack_api import SlackApiStub

    env = Settings.from_env()
    base = load_catalog(env.config_path)
    if sandbox:
        catalog = demo.demo_catalog(base)
        person = demo.user(user or "alice")
        if person is None:
            raise ConsoleRefused(
                f"Unknown user {user!r}; try one of: {', '.join(u.name for u in demo.USERS)}"
            )
    else:
        catalog = base
        if not user:
            raise ConsoleRefused(
                "console without --sandbox acts on a real cluster and store as exactly one catalog "
                "user: pass --as <Slack user ID> (one listed in the catalog's roles)."
            )
        person = catalog_user(catalog, user)
        if not catalog.channels.commands:
            raise ConsoleRefused("the catalog accepts /payflow in no channel (channels.commands is empty)")
        if not env.kubeconfig:
            raise ConsoleRefused("console without --sandbox needs KUBECONFIG pointing at a cluster")
    signing_secret = secrets.token_hex(16)
    workdir = workdir or Path(tempfile.mkdtemp(prefix="payflow-console-"))
    files_dir, log_path = workdir / "files", workdir / "console.log"
    files_dir.mkdir(parents=True, exist_ok=True)
    print(f"files the bot shares are saved in {files_dir}; the console's log is {log_path}", file=out)
    notices: list[Console] = []

    def notice(text: str) -> None:
        if notices:
            notices[0].notice(text)
        else:
            print(f"(console notice) {text}", file=out, flush=True)

    with contextlib.ExitStack() as stack:
        stack.enter_context(console_logging(log_path, notice))
        groups = demo.USERGROUPS if sandbox else {}
        stub = stack.enter_context(SlackApiStub(bot_token="xoxb-console", usergroups=groups))
        kubeconfig, store, context = env.kubeconfig, None, catalog.env.kube_context
        sandbox_prometheus: str | None = None
        cluster, stores = None, None
        if sandbox:
            from sandbox.cluster import Cluster
            from sandbox.k8s_api import SandboxServer
            from sandbox.seed import seed, wait_until_ready

            cluster = seed(Cluster(), catalog)
            cluster.leaky_logs = True  # so `/payflow logs` shows redaction at work
            server = stack.enter_context(SandboxServer(cluster))
            wait_until_ready(cluster, catalog)
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="payflow-console-")))
            kubeconfig = str(server.write_kubeconfig(tmp / "kubeconfig", namespace=catalog.namespace))
            store, context = MemoryStore(), None
            print(f"sandbox cluster on {server.url}; embedded store; Slack played locally", file=out)
            print(f"watch and poke it from another terminal:  export KUBECONFIG={kubeconfig}", file=out)
            from sandbox.prometheus import for_console

            sandbox_prometheus = for_console(stack, server, catalog.slos.error_rate, out)
            if demo_data:
                from sandbox.demo_data import DemoData

                stores = DemoData(catalog)  # only looks for the servers; started below
                stack.callback(stores.close)
        else:
            print(
                f"cluster from {kubeconfig}; store {'Redis' if env.redis_url else 'embedded'}; "
                f"acting as {person.id} ({person.role}); Slack played locally",
                file=out,
            )
        settings = Settings(
            slack_bot_token="xoxb-console",
            slack_signing_secret=signing_secret,
            slack_api_url=stub.api_url,
            redis_url=None if sandbox else env.redis_url,
            prometheus_url=sandbox_prometheus or env.prometheus_url,
            kubeconfig=kubeconfig,
        )
        kube = Kube.connect(catalog.namespace, kubeconfig=kubeconfig, context=context)
        runtime = build_runtime(settings, catalog, store=store, kube=kube)
        console = Console(
            runtime,
            stub,
            SlackRequests(signing_secret),
            person,
            out,
            sandbox=sandbox,
            files_dir=files_dir,
            ansi=ansi,
        )
        console.cluster = cluster
        console.demo_data = stores
        if stores is not None:  # last, in the background: they do not compete with the set-up above
            for line in stores.start():
                print(line, file=out)
        notices.append(console)
        yield console


STOP_SECONDS = 45  # after Ctrl-C, for stopping everything the console started; then it just leaves


def _leave_when_stuck() -> None:
    """Ctrl-C must end the console: stopping what it started gets STOP_SECONDS, then the process
    says where it was stuck (every thread's stack, on stderr) and exits anyway."""

    def stuck() -> None:
        print(f"payflow-bot console: still stopping after {STOP_SECONDS} s; leaving", file=sys.stderr)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        os._exit(130)

    timer = threading.Timer(STOP_SECONDS, stuck)
    timer.daemon = True
    timer.start()


def _interrupted_while_starting(signum: int, frame: object) -> None:
    _leave_when_stuck()
    raise KeyboardInterrupt


def run_console(*, sandbox: bool, as_user: str | None = None) -> int:
    # Ctrl-C while starting: unwind as usual, bounded; once running, asyncio's own handler takes over
    signal.signal(signal.SIGINT, _interrupted_while_starting)
    try:
        with open_console(sandbox=sandbox, user=as_user) as console:

            async def main() -> None:
                await console.runtime.start()
                try:
                    await _repl(console, input)
                finally:
                    await console.runtime.close()

            signal.signal(signal.SIGINT, signal.default_int_handler)  # so asyncio.run installs its own
            try:
                asyncio.run(main())
            except KeyboardInterrupt:
                _leave_when_stuck()
                raise
    except ConsoleRefused as exc:  # raised before anything starts
        print(f"payflow-bot console: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C. Everything the console started is stopped by now, but the prompt's reader thread
        # is still in input(), holding stdin's lock, and the interpreter aborts if it finalizes
        # stdin with that lock held: run the exit handlers (libraries' temp files), then leave.
        print("", file=sys.stderr, flush=True)
        sys.stdout.flush()
        atexit._run_exitfuncs()
        os._exit(130)
    return 0
