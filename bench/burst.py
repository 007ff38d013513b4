"""A burst of mixed commands through a real `payflow-bot serve` with Redis, as Slack sends them.

Starts a private redis-server, the sandbox cluster, Prometheus scraping it, the Slack Web API
stand-in and `serve` with its worker. Sends N signed commands — status, health, metrics, audit,
changes, help, digest now, in turn — at concurrency C, then waits for every answer. Measured:
answered, errors (an answer saying something failed), lost audit entries (commands minus the
entries in Redis's audit stream, and the worker's "audit entry lost" lines), peak RSS of the web
and worker processes (VmHWM), p50/p99 command → answer posted (answers of one kind matched to
that kind's commands in order).

Goal (issue 9): all answered, 0 errors, 0 lost audit entries, worker peak RSS < 200 MB.

    .venv/bin/python bench/burst.py [-n 1000] [-c 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ack_latency import SECRET, TOKEN, pct  # noqa: E402
from bench.memory import name  # noqa: E402
from sandbox import demo  # noqa: E402
from sandbox.apiserver.server import ca_from_kubeconfig  # noqa: E402
from sandbox.local import (  # noqa: E402
    child_pids,
    free_port,
    redis_command,
    sandbox_process,
    serve_process,
    stop_newest_first,
    wait_until,
)
from sandbox.prometheus import PrometheusServer, available  # noqa: E402
from sandbox.slack_api import Call, SlackApiStub  # noqa: E402
from sandbox.slack_requests import SlackRequests  # noqa: E402

# (command, how its answer starts): public answers are channel posts, the others response_url
MIX = (
    ("status", "PayFlow status"),
    ("health", "PayFlow health"),
    ("metrics api-gateway 1h", "api-gateway metrics"),
    ("audit", "Audit"),
    ("changes", "No changes"),
    ("help", "PayFlow bot help"),
    ("digest now", "PayFlow digest"),
)
FAILED = ("went wrong", "unreachable", "not recorded", "⛔", "could not")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class PeakSampler(threading.Thread):
    """Peak RSS per kind of process under `root`, sampled every 0.2 s: the chart renderers live
    for one chart each and are gone before the end of the burst."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peaks: dict[str, float] = defaultdict(float)
        self.seen: dict[str, set[int]] = defaultdict(set)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            self.sample()

    def sample(self) -> None:
        todo, pids = [self.root], []
        while todo:
            pid = todo.pop()
            pids.append(pid)
            todo += child_pids(pid)
        for pid in pids:
            with contextlib.suppress(OSError, ValueError):
                kind = name(pid)
                self.peaks[kind] = max(self.peaks[kind], peak_rss_mb(pid))
                self.seen[kind].add(pid)


def answers(stub: SlackApiStub) -> list[Call]:
    """Every answer, whichever way it went (a channel post, response_url, an ephemeral), not
    the files and notes in threads."""
    calls = [
        c
        for c in stub.calls
        if c.method in ("chat.postMessage", "chat.postEphemeral") and not c.params.get("thread_ts")
    ]
    return sorted(calls + stub.responses, key=lambda c: c.at)


def text_of(call: Call) -> str:
    blocks = call.params.get("blocks") or []
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    return str(call.params.get("text", "")) + json.dumps(blocks, ensure_ascii=False)


async def burst(url: str, signer: SlackRequests, n: int, concurrency: int) -> dict[str, list[float]]:
    """Send n commands at `concurrency`; returns each kind's send times, in order."""
    sent: dict[str, list[float]] = defaultdict(list)
    queue = list(range(n))[::-1]
    async with httpx.AsyncClient(timeout=30) as http:

        async def sender() -> None:
            while queue:
                i = queue.pop()
                command, prefix = MIX[i % len(MIX)]
                req = signer.slash(
                    command,
                    user_id="U0ALICE",
                    user_name="alice",
                    channel_id=demo.OPS_CHANNEL_ID,
                    channel_name=demo.OPS_CHANNEL_NAME,
                )
                sent[prefix].append(time.time())
                resp = await http.post(url, content=req.body, headers=req.headers)
                if resp.status_code != 200:
                    raise RuntimeError(f"{command!r} answered HTTP {resp.status_code}")

        await asyncio.gather(*(sender() for _ in range(concurrency)))
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="commands")
    parser.add_argument("-c", type=int, default=20, help="concurrency")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="payflow-bench-burst-"))
    serve_log = tmp / "serve.log"  # a file, not a pipe: a full pipe would stall the bot
    procs: list[subprocess.Popen[Any]] = []
    prometheus = None
    stub = SlackApiStub(bot_token=TOKEN, usergroups=demo.USERGROUPS).start()
    try:
        redis_port = free_port()
        procs.append(subprocess.Popen(redis_command(redis_port, tmp), stdout=subprocess.DEVNULL))
        kubeconfig = tmp / "kubeconfig"
        sandbox_port = free_port()
        procs.append(sandbox_process(sandbox_port, kubeconfig))
        wait_until(kubeconfig.exists, 20, "the sandbox's kubeconfig")
        catalog = tmp / "payflow.yaml"
        demo.demo_catalog_file(catalog)
        settings = {
            "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": stub.api_url,
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "KUBECONFIG": str(kubeconfig),
            "PAYFLOW_CONFIG": str(catalog),
            "MPLCONFIGDIR": str(tmp / "matplotlib"),
        }
        if available():
            prometheus = PrometheusServer(
                [f"https://127.0.0.1:{sandbox_port}"],
                scrape_interval="1s",
                ca_file=ca_from_kubeconfig(kubeconfig, tmp / "sandbox-ca.crt"),
            ).start()
            prometheus.wait_for('http_requests_total{service="api-gateway"}')
            settings["PROMETHEUS_URL"] = prometheus.url
        port = free_port()
        serve = serve_process(port, settings, stderr=serve_log.open("w"))
        procs.append(serve)
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return httpx.get(url + "/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 60, "serve to be ready")
        signer = SlackRequests(SECRET, response_url=stub.response_url("burst"))
        store = redis.Redis(port=redis_port)
        audit_before = store.xlen("payflow:audit")
        sampler = PeakSampler(serve.pid)
        sampler.start()
        started = time.time()
        sent = asyncio.run(burst(url + "/slack/events", signer, args.n, args.c))
        sent_s = time.time() - started
        try:
            wait_until(lambda: len(answers(stub)) >= args.n, 900, f"{args.n} answers", poll=0.2)
        except AssertionError as exc:
            print(f"⚠️  {exc}")
        wall = time.time() - started
        # each command's entry is written before its answer; give stragglers a moment
        with contextlib.suppress(AssertionError):
            wait_until(lambda: store.xlen("payflow:audit") - audit_before >= args.n, 10, "audit entries")
        got = answers(stub)
        audit = store.xlen("payflow:audit") - audit_before
        sampler.done.set()
        sampler.join()
        sampler.sample()
        peaks = sampler.peaks
        renderers = len(sampler.seen.get("chart renderer", ()))

        by_kind: dict[str, list[float]] = defaultdict(list)
        errors = 0
        for call in got:
            text = text_of(call)
            errors += any(f in text for f in FAILED)
            kind = next((p for _, p in MIX if text.startswith(p) or f'"text": "{p}' in text), None)
            if kind is None and "changes" in text.lower():
                kind = "No changes"
            if kind is not None:
                by_kind[kind].append(call.at)
        latencies = []
        per_kind = {}
        for kind, times in sent.items():
            matched = [a - s for s, a in zip(times, sorted(by_kind.get(kind, [])), strict=False)]
            per_kind[kind] = (len(matched), statistics.median(matched) if matched else float("nan"))
            latencies += matched
    finally:
        stop_newest_first(procs)
        if prometheus is not None:
            prometheus.stop()
        stub.stop()
        log = serve_log.read_text() if serve_log.exists() else ""
        shutil.rmtree(tmp, ignore_errors=True)
    lost_lines = log.count("audit entry lost")

    print(f"\nburst of {args.n} mixed commands at concurrency {args.c} through `serve` with Redis\n")
    rows = [
        ("answered", f"{len(got)} / {args.n}", "all"),
        ("errors", str(errors), "0"),
        ("lost audit entries", f"{args.n - audit} (log lines: {lost_lines})", "0"),
        ("web peak RSS", f"{peaks.get('web', 0):.0f} MB", ""),
        ("worker peak RSS", f"{peaks.get('worker', 0):.0f} MB", "< 200 MB"),
        (
            "chart renderer peak RSS",
            f"{peaks.get('chart renderer', 0):.0f} MB (each; {renderers} seen)" if renderers else "—",
            "",
        ),
        ("p50 command → answer", f"{pct(latencies, 50):.0f} ms" if len(latencies) > 1 else "—", ""),
        ("p99 command → answer", f"{pct(latencies, 99):.0f} ms" if len(latencies) > 1 else "—", ""),
        ("sent in / all answered in", f"{sent_s:.1f} s / {wall:.1f} s", ""),
    ]
    print(f"| {'':<26} | {'measured':<28} | {'goal':<9} |")
    print(f"|{'-' * 28}|{'-' * 30}|{'-' * 11}|")
    for label, value, goal in rows:
        print(f"| {label:<26} | {value:<28} | {goal:<9} |")
    print(
        "\nmedian command → answer per kind: "
        + ", ".join(f"{kind} {p50 * 1000:.0f} ms ({n})" for kind, (n, p50) in per_kind.items())
    )


if __name__ == "__main__":
    main()
