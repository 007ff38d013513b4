"""`payflow-bot`: serve, sandbox, console, check-config, audit. Refuses to start on anything it cannot
run safely, and says exactly what to fix."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.base import logs
from bot.config.catalog import Catalog, CatalogError, load_catalog

if TYPE_CHECKING:
    from bot.gateways.store import Store

log = logging.getLogger("payflow")


def _catalog(path: str | None) -> Catalog:
    try:
        return load_catalog(path)
    except CatalogError as exc:
        print(exc.report(), file=sys.stderr)
        raise SystemExit(2) from None


def cmd_check_config(args: argparse.Namespace) -> int:
    path = args.path or os.environ.get("PAYFLOW_CONFIG") or None
    try:
        catalog = load_catalog(path)
    except CatalogError as exc:
        print(exc.report())
        return 1
    print(
        f"{path or 'built-in catalog'}: ok — environment {catalog.environment} "
        f"(namespace {catalog.namespace}), {len(catalog.services)} services: {', '.join(catalog.services)}"
    )
    roles = catalog.roles
    if not (roles.operator.users or roles.operator.groups or roles.admin.users or roles.admin.groups):
        print("note: nobody holds the operator or admin role yet; only read-only commands will work")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """No garbage collection while starting: everything made now lives as long as the process, so
    the collector's full passes over it (≈0.2 s in all) would only delay readiness; the objects are
    frozen out of its way before serving (a few thousand start-up cycles are kept with them)."""
    gc.disable()
    try:
        return _serve(args)
    finally:
        gc.enable()


def _serve(args: argparse.Namespace) -> int:
    from bot.config.settings import Settings
    from bot.gateways.kube import Kube
    from bot.shell.runtime import build_runtime
    from bot.shell.server import uvicorn_server

    settings = Settings.from_env()
    catalog = _catalog(settings.config_path)
    problems = settings.problems_for_serve(args.socket_mode)
    if problems:
        print("payflow-bot serve cannot start:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 2
    try:
        kube = Kube.connect(
            catalog.namespace, kubeconfig=settings.kubeconfig, context=catalog.env.kube_context
        )
    except Exception as exc:
        print(
            f"payflow-bot serve cannot reach Kubernetes configuration: {exc}\n"
            "  set KUBECONFIG to a kubeconfig file, or run inside the cluster with a service account",
            file=sys.stderr,
        )
        return 2
    if not settings.redis_url:
        log.warning(
            "REDIS_URL is not set: using the embedded in-process store. Run exactly ONE replica: "
            "approvals, locks and the audit trail live in this process and die with it."
        )
    jobs = None
    telemetry = None
    if args.worker and settings.redis_url:
        from bot.base.telemetry import Telemetry
        from bot.gateways.jobs import StreamQueue
        from bot.shell.worker import WorkerJobs, WorkerProcess

        telemetry = Telemetry()
        queue = StreamQueue(settings.redis_url, max_len=settings.job_queue_max)
        jobs = WorkerJobs(queue, WorkerProcess(settings, catalog, telemetry).start())
    elif args.worker:
        log.info(
            "embedded store: jobs run in this process (the store, the queue and the work share its life)"
        )
    runtime = build_runtime(settings, catalog, kube=kube, jobs=jobs, telemetry=telemetry)
    socket = None
    if args.socket_mode:
        from bot.chat.socket_mode import SocketMode

        assert settings.slack_app_token is not None  # problems_for_serve checked it
        socket = SocketMode(runtime.bolt, settings.slack_app_token)
    server = uvicorn_server(runtime, args.host, args.port, socket=socket)
    gc.freeze()  # start-up objects are permanent: fewer, shorter GC pauses while acking
    gc.enable()
    failed: list[str] = []

    async def run() -> None:
        if socket is not None:
            from bot.chat.socket_mode import SocketModeRefused

            # health and metrics come up while the socket connects; a token Slack rejects (or
            # a socket that does not open within its bound) stops serve with a non-zero exit
            log.info("serving on %s:%d (Socket Mode: no Slack route over HTTP)", args.host, args.port)
            serving = asyncio.ensure_future(server.serve())
            opening = asyncio.ensure_future(socket.open())
            await asyncio.wait({serving, opening}, return_when=asyncio.FIRST_COMPLETED)
            if not opening.done():  # SIGTERM while connecting: stop trying
                opening.cancel()
            elif isinstance(opening.exception(), SocketModeRefused):
                failed.append(str(opening.exception()))
                server.should_exit = True  # the lifespan's shutdown closes the worker
            await serving  # SIGTERM: the socket closes, then work in flight drains (bot/shell/server.py)
        else:
            log.info("serving on %s:%d (Slack events at /slack/events)", args.host, args.port)
            await server.serve()

    run_event_loop(run())
    if failed:
        print(f"payflow-bot serve cannot start: {failed[0]}", file=sys.stderr)
        return 3
    return 0


def run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """uvloop when installed (it is with uvicorn[standard]): a cheaper loop means faster acks."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def _needs_sandbox() -> None:
    """The sandbox (and the console, which plays Slack with it) ship with a source checkout, not
    with the production image: say so instead of an ImportError."""
    import importlib.util

    if importlib.util.find_spec("sandbox") is None:
        print(
            "the sandbox and the console come with a source checkout (`make run`), not with the "
            "production image; in the cluster run `payflow-bot serve`",
            file=sys.stderr,
        )
        raise SystemExit(2)


def cmd_sandbox(args: argparse.Namespace) -> int:
    import threading

    _needs_sandbox()

    from sandbox.cluster import Cluster
    from sandbox.k8s_api import SandboxServer
    from sandbox.seed import seed

    catalog = _catalog(os.environ.get("PAYFLOW_CONFIG") or None)
    grown = None
    if args.services is not None:
        import yaml

        from sandbox.seed import with_services

        try:
            catalog = with_services(catalog, args.services)
        except ValueError as exc:
            print(f"--services: {exc}", file=sys.stderr)
            return 2
        grown = Path(args.kubeconfig).resolve().with_name(f"payflow-{args.services}-services.yaml")
        grown.write_text(yaml.safe_dump(catalog.model_dump(mode="json", exclude_defaults=True)))
    server = SandboxServer(seed(Cluster(), catalog), port=args.port).start()
    path = server.write_kubeconfig(Path(args.kubeconfig), namespace=catalog.namespace).resolve()
    print(f"sandbox Kubernetes API on {server.url} (namespace {catalog.namespace})")
    if grown is not None:
        print(
            f"catalog of {len(catalog.services)} services written to {grown}:  export PAYFLOW_CONFIG={grown}"
        )
    print(f"kubeconfig written to {path}:  export KUBECONFIG={path}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def cmd_console(args: argparse.Namespace) -> int:
    _needs_sandbox()
    from bot.shell.console_start import run_console

    return run_console(sandbox=args.sandbox, as_user=args.as_user)


def _when(text: str) -> datetime:
    """`--since`: an ISO 8601 date or time (UTC unless it says otherwise) or a duration ago (`24h`)."""
    from bot.base.durations import BadDuration, seconds

    now = datetime.now(UTC)
    try:
        return now - timedelta(seconds=seconds(text))
    except BadDuration:
        pass
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a time like 2026-11-30T09:00Z nor a duration like 24h or 7d"
        ) from None
    return when if when.utcoffset() is not None else when.replace(tzinfo=UTC)


def _window(text: str) -> timedelta:
    from bot.base.durations import BadDuration, seconds

    try:
        return timedelta(seconds=seconds(text))
    except BadDuration as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("`", "'")) from None


def cmd_audit(args: argparse.Namespace) -> int:
    """`audit verify | export | trim` against the store at REDIS_URL: the compliance side of the
    trail, run by people and CronJobs, never through Slack."""
    from bot.config.settings import Settings
    from bot.gateways.store import StoreUnavailable, open_store

    settings = Settings.from_env()
    if not settings.redis_url:
        print(
            "REDIS_URL is not set: the embedded store lives inside the serving process, so there is no "
            "audit trail to reach from here. Set REDIS_URL to the bot's Redis.",
            file=sys.stderr,
        )
        return 2

    async def run() -> int:
        async with open_store(settings.redis_url) as store:
            if args.audit == "verify":
                verdict = await store.verify_audit()
                print(verdict.report())
                return 0 if verdict.ok else 1
            if args.audit == "export":
                return await _export(store, args)
            from bot.base.durations import label

            dropped = await store.trim_audit(datetime.now(UTC) - args.keep)
            print(f"trimmed {dropped} exported entries older than {label(int(args.keep.total_seconds()))}")
            return 0

    try:
        return asyncio.run(run())
    except StoreUnavailable as exc:
        print(f"{exc.brief}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # --out not writable
        print(f"cannot write the export: {exc.strerror or exc} ({args.out})", file=sys.stderr)
        return 2


async def _export(store: Store, args: argparse.Namespace) -> int:
    """Write entries as JSON lines, then move the export watermark (only once they are on disk)."""
    from bot.gateways.store import audit_line

    out = open(args.out, "a", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
    first = last = None
    count = 0
    try:
        async for entry_id, fields in store.export_audit(since=args.since):
            out.write(audit_line(entry_id, fields) + "\n")
            first = first or entry_id
            last, count = entry_id, count + 1
        out.flush()
        if args.out:
            os.fsync(out.fileno())
    finally:
        if args.out:
            out.close()
    marked = ""
    if first and last and args.mark:
        moved = await store.mark_audit_exported(first, last)
        marked = (
            f"; exported up to {last}"
            if moved
            else "; the export watermark did not move (earlier entries are not exported yet)"
        )
    print(f"exported {count} entries{marked}", file=sys.stderr)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="payflow-bot", description="PayFlow ChatOps bot")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the bot for Slack (HTTP events, or Socket Mode)")
    s.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))
    s.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    s.add_argument("--socket-mode", action="store_true", help="connect out to Slack with SLACK_APP_TOKEN")
    s.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        default=os.environ.get(logs.FORMAT_ENV, "json").strip().lower() or "json",
        help="json: one object per line, for a log pipeline (default; $LOG_FORMAT); text: for a terminal",
    )
    s.add_argument(
        "--no-worker",
        dest="worker",
        action="store_false",
        help="run jobs on the web process's event loop instead of a worker process (debugging; "
        "always so with the embedded store)",
    )
    s.set_defaults(fn=cmd_serve)

    s = sub.add_parser("sandbox", help="run the simulated PayFlow cluster until stopped")
    s.add_argument("--port", type=int, default=0, help="0 picks a free port")
    s.add_argument("--kubeconfig", default="sandbox.kubeconfig", help="where to write the kubeconfig")
    s.add_argument(
        "--services",
        type=int,
        help="grow the catalog to N services (writes that catalog beside the kubeconfig)",
    )
    s.set_defaults(fn=cmd_sandbox)

    s = sub.add_parser("console", help="talk to the bot from a terminal instead of Slack")
    s.add_argument("--sandbox", action="store_true", help="start the sandbox cluster in-process")
    s.add_argument(
        "--as",
        dest="as_user",
        help="who you are: with --sandbox a demo user (default alice); without, the Slack user ID "
        "of a person the catalog's roles list (required)",
    )
    s.set_defaults(fn=cmd_console)

    s = sub.add_parser("check-config", help="validate a catalog file")
    s.add_argument("path", nargs="?", help="catalog file (default: $PAYFLOW_CONFIG, else the built-in)")
    s.set_defaults(fn=cmd_check_config)

    s = sub.add_parser("audit", help="verify, export and trim the audit trail (needs REDIS_URL)")
    audit = s.add_subparsers(dest="audit", required=True)
    audit.add_parser("verify", help="check the hash chain; names the first broken entry, exit 1")
    a = audit.add_parser("export", help="write entries as JSON lines (default: those not exported yet)")
    a.add_argument("--since", type=_when, help="from this time (ISO 8601) or this long ago (24h, 7d)")
    a.add_argument("--out", help="append to this file (default: stdout)")
    a.add_argument(
        "--no-mark", dest="mark", action="store_false", help="do not move the export watermark (a dry run)"
    )
    a = audit.add_parser("trim", help="drop exported entries older than the window kept in the store")
    a.add_argument("--keep", type=_window, default=timedelta(days=90), help="window kept (default 90d)")
    s.set_defaults(fn=cmd_audit)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    try:
        logs.configure(getattr(args, "log_format", "text"))
    except ValueError as exc:  # a bad $LOG_FORMAT or $LOG_LEVEL
        p.error(f"{exc} (check $LOG_FORMAT and $LOG_LEVEL)")
    return int(args.fn(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
