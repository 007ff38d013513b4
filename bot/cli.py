"""`payflow-bot`: serve, sandbox, console, check-config. Refuses to start on anything it cannot
run safely, and says exactly what to fix."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
from pathlib import Path
from typing import Any

from bot import logs
from bot.config import Catalog, CatalogError, load_catalog

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
    from bot.kube import Kube
    from bot.runtime import build_runtime
    from bot.server import uvicorn_server
    from bot.settings import Settings

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
    if args.worker:
        from bot.worker import WorkerJobs, WorkerProcess

        jobs = WorkerJobs(WorkerProcess(settings, catalog).start())
    runtime = build_runtime(settings, catalog, kube=kube, jobs=jobs)
    server = uvicorn_server(runtime, args.host, args.port, socket_mode=args.socket_mode)
    gc.collect()
    gc.freeze()  # start-up objects are permanent: fewer, shorter GC pauses while acking

    async def run() -> None:
        if args.socket_mode:
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

            # health and metrics come up while the socket connects (the SDK retries until it does)
            handler = AsyncSocketModeHandler(runtime.bolt, settings.slack_app_token)
            connecting = asyncio.ensure_future(handler.connect_async())
            connecting.add_done_callback(_report_socket)
            log.info("serving on %s:%d (Socket Mode: no Slack route over HTTP)", args.host, args.port)
        else:
            log.info("serving on %s:%d (Slack events at /slack/events)", args.host, args.port)
        await server.serve()

    run_event_loop(run())
    return 0


def _report_socket(connecting: asyncio.Future[Any]) -> None:
    if connecting.cancelled():
        return
    if connecting.exception() is not None:
        log.error("Socket Mode did not connect: %s", connecting.exception())
    else:
        log.info("connected to Slack in Socket Mode")


def run_event_loop(main: Any) -> None:
    """uvloop when installed (it is with uvicorn[standard]): a cheaper loop means faster acks."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def cmd_sandbox(args: argparse.Namespace) -> int:
    import threading

    from sandbox.cluster import Cluster
    from sandbox.k8s_api import SandboxServer
    from sandbox.seed import seed

    catalog = _catalog(os.environ.get("PAYFLOW_CONFIG") or None)
    server = SandboxServer(seed(Cluster(), catalog), port=args.port).start()
    path = server.write_kubeconfig(Path(args.kubeconfig))
    print(f"sandbox Kubernetes API on {server.url} (namespace {catalog.namespace})")
    print(f"kubeconfig written to {path}:  export KUBECONFIG={path}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def cmd_console(args: argparse.Namespace) -> int:
    from bot.console import run_console

    return run_console(sandbox=args.sandbox, as_user=args.as_user)


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
        help="run jobs on the web process's event loop instead of a worker process (debugging)",
    )
    s.set_defaults(fn=cmd_serve)

    s = sub.add_parser("sandbox", help="run the simulated PayFlow cluster until stopped")
    s.add_argument("--port", type=int, default=0, help="0 picks a free port")
    s.add_argument("--kubeconfig", default="sandbox.kubeconfig", help="where to write the kubeconfig")
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
