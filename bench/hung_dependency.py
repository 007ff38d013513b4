"""What a hung dependency costs: one call of each gateway against a black hole (a TCP server that
accepts and never answers), with the production deadlines, and how many connections it opened.
(aiohttp rounds a total timeout of 5 s or more up to the next whole second: Slack's 10 s is 10–11 s.)

Target (issue 8 §4): one deadline and one connection per call. The first row is the kubernetes
client as it comes (urllib3's default retries), for comparison: the 20 s the issue observed.

    .venv/bin/python bench/hung_dependency.py
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from bot.chat.blocks import Message
from bot.config.catalog import load_catalog
from bot.gateways.alertmanager import Alertmanager
from bot.gateways.kube import Kube
from bot.gateways.prom import Prom
from bot.gateways.slack import SlackGateway, make_client
from bot.gateways.store import AuditEntry, RedisStore
from tests.support.blackhole import BlackHole


def kubeconfig(directory: Path, url: str) -> str:
    path = directory / "kubeconfig"
    cluster = {"name": "hung", "cluster": {"server": url}}
    context = {"name": "hung", "context": {"cluster": "hung", "user": "bot"}}
    config = {"apiVersion": "v1", "kind": "Config", "clusters": [cluster], "contexts": [context]}
    config |= {"users": [{"name": "bot", "user": {"token": "t"}}], "current-context": "hung"}
    path.write_text(yaml.safe_dump(config))
    return str(path)


def stock_client_call(url: str, directory: Path) -> Callable[[], Awaitable[Any]]:
    """The kubernetes client with its defaults and a 5 s `_request_timeout`: the 'before'."""
    api = k8s_config.new_client_from_config(config_file=kubeconfig(directory, url))

    async def call() -> Any:
        apps = k8s.AppsV1Api(api)
        return await asyncio.to_thread(apps.list_namespaced_deployment, "payflow", _request_timeout=5)

    return call


def rows(directory: Path) -> list[tuple[str, Callable[[str], Callable[[], Awaitable[Any]]]]]:
    catalog = load_catalog()
    now = datetime.now(UTC)

    def kube(url: str) -> Callable[[], Awaitable[Any]]:
        return Kube.connect("payflow", kubeconfig=kubeconfig(directory, url)).deployments

    def redis(url: str) -> Callable[[], Awaitable[Any]]:
        store = RedisStore(url.replace("http://", "redis://") + "/0")
        return lambda: store.append_audit(AuditEntry("U1", "status", "ok"))

    def prom(url: str) -> Callable[[], Awaitable[Any]]:
        gateway = Prom(url, timeout=catalog.promql.timeout_seconds, catalog=catalog)
        return lambda: gateway.vector("up")

    def alertmanager(url: str) -> Callable[[], Awaitable[Any]]:
        am = Alertmanager(url)
        end = now + timedelta(hours=1)
        return lambda: am.create_silence({"a": "b"}, starts=now, ends=end, created_by="U1", comment="bench")

    def slack(url: str) -> Callable[[], Awaitable[Any]]:
        gateway = SlackGateway(make_client("xoxb-bench", url + "/api/"))
        return lambda: gateway.post("C1", Message("bench"))

    return [
        ("kubernetes client, stock (before)", lambda url: stock_client_call(url, directory)),
        ("Kubernetes API (bot.gateways.kube)", kube),
        ("Redis (bot.gateways.store)", redis),
        ("Prometheus (bot.gateways.prom)", prom),
        ("Alertmanager (bot.gateways.alertmanager)", alertmanager),
        ("Slack Web API (bot.gateways.slack)", slack),
    ]


async def measure(make: Callable[[str], Callable[[], Awaitable[Any]]]) -> tuple[float, int, str]:
    with BlackHole() as hole:
        call = make(hole.url)
        started = time.perf_counter()
        try:
            await call()
            outcome = "answered?!"
        except Exception as exc:
            outcome = (getattr(exc, "brief", "") or str(exc) or type(exc).__name__).splitlines()[0][:70]
        return time.perf_counter() - started, hole.connections, outcome


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'dependency (black hole)':36} {'seconds':>8} {'conns':>6}  error")
        for name, make in rows(Path(tmp)):
            seconds, connections, outcome = asyncio.run(measure(make))
            print(f"{name:36} {seconds:8.1f} {connections:6d}  {outcome}")


if __name__ == "__main__":
    main()
