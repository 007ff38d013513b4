"""Approval click → ingress patched, over N blue-green changes against the real `serve` process.

The sandbox cluster and the Slack stand-in run in this process (so the ingress write can be
timed from the sandbox's own write log), `payflow-bot serve` and a private redis-server in
their own. Each change: deploy (rollout and smoke test, not timed), wait for the approval
request, click Approve as a second person, time until the sandbox records the ingress patch.

    python bench/switch_latency.py [-n 50]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.config.catalog import Smoke, load_catalog  # noqa: E402
from sandbox import demo  # noqa: E402
from sandbox.cluster import Cluster  # noqa: E402
from sandbox.k8s_api import SandboxServer  # noqa: E402
from sandbox.local import free_port, redis_command, serve_process, wait_until  # noqa: E402
from sandbox.seed import seed, wait_until_ready  # noqa: E402
from sandbox.slack_api import SlackApiStub  # noqa: E402
from sandbox.slack_requests import SlackRequests  # noqa: E402

SECRET = "bench-signing-secret"
TOKEN = "xoxb-bench"
APPROVALS = "#payflow-approvals"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50, help="changes")
    args = parser.parse_args()

    base = demo.demo_catalog(load_catalog())
    env = base.env.model_copy(
        update={"smoke": Smoke(via="apiserver", interval_seconds=0.05), "bake_seconds": 0}
    )
    catalog = base.model_copy(update={"environments": {base.environment: env}})
    tmp = Path(tempfile.mkdtemp(prefix="payflow-switch-bench-"))
    (tmp / "payflow.yaml").write_text(yaml.safe_dump(catalog.model_dump(mode="json"), sort_keys=False))

    cluster = seed(Cluster(ready_delay=0.05), catalog)
    procs: list[subprocess.Popen[bytes]] = []
    with (
        SandboxServer(cluster) as sandbox,
        SlackApiStub(bot_token=TOKEN, usergroups=demo.USERGROUPS) as slack,
    ):
        wait_until_ready(cluster, catalog)
        kubeconfig = sandbox.write_kubeconfig(tmp / "kubeconfig")
        redis_port, port = free_port(), free_port()
        try:
            procs.append(subprocess.Popen(redis_command(redis_port, tmp), stdout=subprocess.DEVNULL))
            settings = {
                "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
                "SLACK_BOT_TOKEN": TOKEN,
                "SLACK_SIGNING_SECRET": SECRET,
                "SLACK_API_URL": slack.api_url,
                "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
                "KUBECONFIG": str(kubeconfig),
                "PAYFLOW_CONFIG": str(tmp / "payflow.yaml"),
            }
            procs.append(serve_process(port, settings))
            url = f"http://127.0.0.1:{port}"
            wait_until(lambda: _ok(url + "/readyz"), 20, "serve to be ready")
            latencies = run_changes(args.n, url, slack, cluster)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=30)
            shutil.rmtree(tmp, ignore_errors=True)

    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(f"\napproval click → ingress patched, {len(ms)} changes through `payflow-bot serve` (sandbox)\n")
    print(f"| {'p50 ms':>7} | {'p99 ms':>7} | {'min ms':>7} | {'max ms':>7} |")
    print(f"|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 9}|")
    print(f"| {statistics.median(ms):7.1f} | {p99:7.1f} | {ms[0]:7.1f} | {ms[-1]:7.1f} |")
    print("\ntarget: p50 under 100 ms (rollout and smoke-test waits excluded)")


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def run_changes(n: int, url: str, slack: SlackApiStub, cluster: Cluster) -> list[float]:
    signer = SlackRequests(SECRET, response_url=slack.response_url("bench"))
    http = httpx.Client(timeout=10)
    latencies = []
    for i in range(n):
        version = f"v2.0.{i}"
        cmd = signer.slash(
            f"deploy api-gateway {version}",
            user_id="U0ALICE",
            user_name="alice",
            channel_id=demo.OPS_CHANNEL_ID,
            channel_name=demo.OPS_CHANNEL_NAME,
        )
        assert (
            http.post(url + "/slack/events", content=cmd.body.encode(), headers=cmd.headers).status_code
            == 200
        )

        def approval(version=version):
            for m in slack.messages(APPROVALS):
                if version in m.text and any(b.get("type") == "actions" for b in m.blocks or []):
                    return m
            return None

        message = wait_until(approval, 60, f"the approval request for {version}")
        actions = next(b for b in message.blocks if b.get("type") == "actions")
        button = next(e for e in actions["elements"] if e["text"]["text"] == "Approve")
        click = signer.button(
            user_id="U0BOB",
            user_name="bob",
            channel_id=message.channel,
            channel_name="payflow-approvals",
            message={"ts": message.ts, "text": message.text, "blocks": message.blocks},
            action=button,
            block_id=actions.get("block_id", ""),
        )
        writes = len(ingress_writes(cluster))
        sent = time.monotonic()
        assert (
            http.post(url + "/slack/events", content=click.body.encode(), headers=click.headers).status_code
            == 200
        )
        wait_until(lambda writes=writes: len(ingress_writes(cluster)) > writes, 30, "the ingress patch")
        latencies.append(ingress_writes(cluster)[-1].time - sent)
        wait_until(
            lambda version=version: f"`{version}` to" in _last_progress(slack, version),
            30,
            "the change to finish",
        )
    return latencies


def ingress_writes(cluster: Cluster) -> list:
    return [
        w
        for w in cluster.write_log
        if w.kind == "Ingress" and w.name == "payflow-ingress" and w.verb != "create"
    ]


def _last_progress(slack: SlackApiStub, version: str) -> str:
    for m in reversed(slack.messages(demo.OPS_CHANNEL_ID)):
        if version in m.text and "— done" in m.text:
            return m.text
    return ""


if __name__ == "__main__":
    main()
