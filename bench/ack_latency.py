"""Ack latency of `payflow-bot serve` against a bare Bolt app, in one run.

Starts a private redis-server, the sandbox cluster, a Slack Web API stand-in (each its own
process), then `payflow-bot serve` and a bare Bolt AsyncApp with default settings that only
acks (same uvicorn + Starlette stack). Sends N signed `/payflow status` commands at
concurrency C to each and prints p50 / p99 ack latency, their ratio, serve's RSS after the run
and how long serve took to become ready.

    python bench/ack_latency.py [-n 2000] [-c 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sandbox import demo  # noqa: E402
from sandbox.local import (  # noqa: E402
    child_pids,
    free_port,
    redis_command,
    serve_process,
    stop_newest_first,
    wait_until,
)
from sandbox.slack_requests import SignedRequest, SlackRequests  # noqa: E402

SECRET = "bench-signing-secret"
TOKEN = "xoxb-bench"

BARE_APP = """
import sys, uvicorn
from slack_bolt.async_app import AsyncApp
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette
from starlette.routing import Route

app = AsyncApp(signing_secret=sys.argv[2], client=AsyncWebClient(token=sys.argv[3], base_url=sys.argv[4]))

@app.command("/payflow")
async def on_command(ack):
    await ack()

handler = AsyncSlackRequestHandler(app)

async def events(request):
    return await handler.handle(request)

web = Starlette(routes=[Route("/slack/events", events, methods=["POST"])])
uvicorn.run(web, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""

STUB = """
import sys, threading
from sandbox.slack_api import SlackApiStub
from sandbox import demo
stub = SlackApiStub(bot_token=sys.argv[1], port=int(sys.argv[2]), usergroups=demo.USERGROUPS).start()
print(stub.api_url, flush=True)
threading.Event().wait()
"""


def wait_http(url: str, timeout: float = 20.0) -> float:
    """Seconds until `url` answers below 500."""

    def answers() -> bool:
        try:
            return httpx.get(url, timeout=0.5).status_code < 500
        except httpx.HTTPError:
            return False

    start = time.perf_counter()
    wait_until(answers, timeout, f"{url} to answer", poll=0.01)
    return time.perf_counter() - start


def bytecode_state() -> str:
    """Whether serve's imports come with cached bytecode: without it each start compiles its
    ~1,200 modules first (about a second here), which the image, installed by pip, never does."""
    import importlib.util

    import kubernetes
    import slack_bolt

    import bot

    def cached(module: Any) -> bool:
        return Path(importlib.util.cache_from_source(module.__file__)).exists()

    packages = "installed packages " + ("with" if cached(slack_bolt) and cached(kubernetes) else "WITHOUT")
    return f"{packages} cached bytecode, the bot's own {'with' if cached(bot) else 'without'}"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def load(url: str, requests: list[SignedRequest], concurrency: int) -> list[float]:
    """C keep-alive connections sending pre-built HTTP/1.1 requests: a client this thin keeps
    its own event loop out of the measured latency."""
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path
    wire = [
        (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {len(r.body.encode())}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in r.headers.items())
            + "\r\n"
            + r.body
        ).encode()
        for r in requests
    ]
    latencies: list[float] = []
    queue = list(reversed(wire))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while queue:
                request = queue.pop()
                start = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - start)
                if status != 200:
                    raise RuntimeError(f"{url} answered {status}")
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 10) - 1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="commands per target")
    parser.add_argument("-c", type=int, default=20, help="concurrency")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="payflow-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING"}

    def spawn(
        *cmd: str, extra: dict[str, str] | None = None, outside: bool = False, **kw: object
    ) -> subprocess.Popen[bytes]:
        """`outside`: a stand-in for another machine (Redis, cluster, Slack), run niced so it
        does not take CPU from the process being measured as it would not in production."""
        nice = (lambda: os.nice(15)) if outside else None
        p = subprocess.Popen(cmd, env={**env, **(extra or {})}, cwd=ROOT, preexec_fn=nice, **kw)
        procs.append(p)
        return p

    try:
        redis_port = free_port()
        spawn(*redis_command(redis_port, tmp), stdout=subprocess.DEVNULL, outside=True)
        kubeconfig = tmp / "kubeconfig"
        spawn(
            sys.executable,
            "-m",
            "bot.shell.cli",
            "sandbox",
            "--kubeconfig",
            str(kubeconfig),
            stdout=subprocess.DEVNULL,
            outside=True,
        )
        stub = spawn(
            sys.executable, "-c", STUB, TOKEN, str(free_port()), stdout=subprocess.PIPE, outside=True
        )
        api_url = stub.stdout.readline().decode().strip()  # type: ignore[union-attr]
        wait_until(kubeconfig.exists, 20, "the sandbox's kubeconfig")

        ours_port, bare_port = free_port(), free_port()
        started = time.perf_counter()
        serve = serve_process(
            ours_port,
            {
                "SLACK_BOT_TOKEN": TOKEN,
                "SLACK_SIGNING_SECRET": SECRET,
                "SLACK_API_URL": api_url,
                "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
                "KUBECONFIG": str(kubeconfig),
            },
        )
        procs.append(serve)
        wait_http(f"http://127.0.0.1:{ours_port}/readyz")  # 503 until the web and worker are up
        ready_s = time.perf_counter() - started
        spawn(sys.executable, "-c", BARE_APP, str(bare_port), SECRET, TOKEN, api_url)
        wait_http(f"http://127.0.0.1:{bare_port}/slack/events")

        signer = SlackRequests(SECRET, response_url=api_url.replace("/api/", "/response/bench"))

        def batch(n: int) -> list[SignedRequest]:
            return [
                signer.slash(
                    "status",
                    user_id="U0ALICE",
                    user_name="alice",
                    channel_id=demo.OPS_CHANNEL_ID,
                    channel_name=demo.OPS_CHANNEL_NAME,
                )
                for _ in range(n)
            ]

        results = {}
        for name, port in (("payflow-bot serve", ours_port), ("bare Bolt app (defaults)", bare_port)):
            url = f"http://127.0.0.1:{port}/slack/events"
            run(load(url, batch(50), args.c))  # warm-up: auth.test, imports, connections
            start = time.perf_counter()
            latencies = run(load(url, batch(args.n), args.c))
            results[name] = (latencies, time.perf_counter() - start)
            time.sleep(1.0)  # let our after-ack work finish before the next target
        rss = rss_mb(serve.pid)
        worker_rss = sum(rss_mb(kid) for kid in child_pids(serve.pid))

        print(
            f"\nack latency, {args.n} signed `/payflow status` at concurrency {args.c} "
            f"({os.cpu_count()} cores)\n"
        )
        print(f"| {'target':<26} | {'p50 ms':>7} | {'p99 ms':>7} | {'max ms':>7} | {'req/s':>7} |")
        print(f"|{'-' * 28}|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 9}|")
        for name, (lat, wall) in results.items():
            print(
                f"| {name:<26} | {pct(lat, 50):7.2f} | {pct(lat, 99):7.2f} | {max(lat) * 1000:7.2f} "
                f"| {len(lat) / wall:7.0f} |"
            )
        ours, bare = results["payflow-bot serve"][0], results["bare Bolt app (defaults)"][0]
        ratio = pct(ours, 99) / pct(bare, 50)
        print(f"\nour p99 / bare p50 = {ratio:.2f}  (target ≤ 1.00)")
        print(
            f"serve RSS after the run = {rss:.0f} MB  (target < 150 MB); "
            f"its worker process: {worker_rss:.0f} MB"
        )
        print(f"serve ready (spawn → /readyz 200) = {ready_s:.2f} s  (target < 1.5 s; {bytecode_state()})")
    finally:
        stop_newest_first(procs)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
