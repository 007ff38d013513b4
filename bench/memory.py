"""Memory of `payflow-bot serve` (web + worker + multiprocessing's resource tracker) after the
heaviest things it does: charts and a 1,000-line log excerpt. The Deployment's memory request and
limit are sized from this table (deploy/kubernetes/payflow-bot.yaml states the figure).

Starts a private redis-server, the sandbox cluster, Prometheus scraping it, the Slack Web API
stand-in and `serve` with its worker, as a pod runs it. Sends signed commands, waits until the
bot has answered each, then reads RSS and PSS (/proc/<pid>/smaps_rollup: shared pages counted
once across the processes, what the cgroup charges) of every process of the bot.

    python bench/memory.py [--charts 20] [--statuses 200]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

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
from sandbox.prometheus import PrometheusServer  # noqa: E402
from sandbox.slack_api import SlackApiStub  # noqa: E402
from sandbox.slack_requests import SlackRequests  # noqa: E402

SERVICES = ("api-gateway", "auth-service", "wallet-service", "transaction-service")
SECRET = "bench-signing-secret"
TOKEN = "xoxb-bench"


def smaps(pid: int) -> tuple[float, float]:
    """(RSS, PSS) in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        values[key] = int(rest.split()[0]) / 1024
    return values["Rss"], values["Pss"]


def name(pid: int) -> str:
    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    if "resource_tracker" in cmd:
        return "resource tracker"
    if "bot.gateways.charts" in cmd:
        return "chart renderer"
    return "worker" if "spawn_main" in cmd else "web"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--charts", type=int, default=20, help="`metrics` commands (one PNG chart each)")
    parser.add_argument("--statuses", type=int, default=200, help="`status` commands")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="payflow-bench-memory-"))
    procs: list[subprocess.Popen[bytes]] = []
    prometheus = None
    slack = SlackApiStub(bot_token=TOKEN, usergroups=demo.USERGROUPS).start()
    try:
        redis_port = free_port()
        procs.append(subprocess.Popen(redis_command(redis_port, tmp), stdout=subprocess.DEVNULL))
        kubeconfig = tmp / "kubeconfig"
        sandbox_port = free_port()
        procs.append(sandbox_process(sandbox_port, kubeconfig))
        wait_until(kubeconfig.exists, 20, "the sandbox's kubeconfig")
        prometheus = PrometheusServer(
            [f"https://127.0.0.1:{sandbox_port}"],
            scrape_interval="1s",
            ca_file=ca_from_kubeconfig(kubeconfig, tmp / "sandbox-ca.crt"),
        ).start()
        prometheus.wait_for('http_requests_total{service="api-gateway"}')
        catalog = tmp / "payflow.yaml"
        demo.demo_catalog_file(catalog)
        port = free_port()
        serve = serve_process(
            port,
            {
                "SLACK_BOT_TOKEN": TOKEN,
                "SLACK_SIGNING_SECRET": SECRET,
                "SLACK_API_URL": slack.api_url,
                "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
                "KUBECONFIG": str(kubeconfig),
                "PAYFLOW_CONFIG": str(catalog),
                "PROMETHEUS_URL": prometheus.url,
                "MPLCONFIGDIR": str(tmp / "matplotlib"),
            },
        )
        procs.append(serve)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _get(url + "/readyz") == 200, 30, "serve to be ready")
        signer = SlackRequests(SECRET, response_url=slack.response_url("bench"))
        http = httpx.Client(timeout=10)

        def command(text: str) -> None:
            signed = signer.slash(
                text,
                user_id="U0ALICE",
                user_name="alice",
                channel_id=demo.OPS_CHANNEL_ID,
                channel_name=demo.OPS_CHANNEL_NAME,
            )
            assert http.post(url + "/slack/events", content=signed.body.encode(), headers=signed.headers)

        time.sleep(3)  # a few scrapes, so the charts have points
        rows = []

        def measure(after: str) -> None:
            pids = [serve.pid, *child_pids(serve.pid)]
            per = {name(p): smaps(p) for p in pids}
            rss = sum(r for r, _ in per.values())
            pss = sum(p for _, p in per.values())
            detail = ", ".join(f"{n} {p:.0f}" for n, (_, p) in per.items())
            rows.append((after, rss, pss, detail))

        measure("ready, idle")
        for _ in range(args.statuses):
            command("status")
        wait_until(lambda: _answers(slack) >= args.statuses, 600, "status answers")
        measure(f"{args.statuses} status")
        uploads = len(slack.calls_to("files.completeUploadExternal"))
        command("logs api-gateway --lines 1000")
        wait_until(
            lambda: len(slack.calls_to("files.completeUploadExternal")) > uploads, 60, "the log excerpt"
        )
        measure("+ 1,000-line log")
        uploads = len(slack.calls_to("files.completeUploadExternal"))
        for i in range(args.charts):
            command(f"metrics {SERVICES[i % len(SERVICES)]} 1h")
        wait_until(
            lambda: len(slack.calls_to("files.completeUploadExternal")) >= uploads + args.charts,
            180,
            "the charts",
        )
        measure(f"+ {args.charts} charts")

        print(f"\nmemory of `payflow-bot serve` (MiB; {os.cpu_count()} cores)\n")
        print(f"| {'after':<22} | {'RSS':>6} | {'PSS':>6} | PSS per process")
        print(f"|{'-' * 24}|{'-' * 8}|{'-' * 8}|{'-' * 40}")
        for after, rss, pss, detail in rows:
            print(f"| {after:<22} | {rss:6.0f} | {pss:6.0f} | {detail}")
        peak = max(pss for _, _, pss, _ in rows)
        print(f"\npeak PSS {peak:.0f} MiB: the Deployment's request/limit are sized from this")
    finally:
        stop_newest_first(procs)
        if prometheus is not None:
            prometheus.stop()
        slack.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _answers(slack: SlackApiStub) -> int:
    """Answers the bot gave, whichever way (response_url, a channel post, an ephemeral)."""
    return (
        len(slack.responses)
        + len(slack.calls_to("chat.postMessage"))
        + len(slack.calls_to("chat.postEphemeral"))
    )


def _get(url: str) -> int:
    try:
        return httpx.get(url, timeout=1).status_code
    except httpx.HTTPError:
        return 0


if __name__ == "__main__":
    main()
