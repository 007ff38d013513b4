"""Wires settings and catalog into one running bot: the same assembly serves `serve`, the
console and the tests, so what is tested is what runs."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.alertmanager import Alertmanager
from bot.app import build_bolt
from bot.config import Catalog
from bot.dispatch import Dispatcher
from bot.jobs import Jobs
from bot.kube import Kube
from bot.notify import Notifier
from bot.policy import Policy
from bot.prom import Prom
from bot.settings import Settings
from bot.slack import SlackGateway, make_client
from bot.store import Store, open_store
from bot.telemetry import Telemetry
from handlers import SERVICES
from handlers.base import Deps


@dataclass
class Runtime:
    settings: Settings
    catalog: Catalog
    store: Store
    kube: Kube
    slack: SlackGateway
    jobs: Jobs
    telemetry: Telemetry
    dispatcher: Dispatcher
    bolt: AsyncApp

    @property
    def runs_jobs_here(self) -> bool:
        return type(self.jobs) is Jobs

    async def start(self) -> None:
        """Start the long-running services; only in the process that runs the jobs."""
        for service in SERVICES:
            self.jobs.spawn(service(self.dispatcher.deps))

    async def close(self) -> None:
        await self.jobs.close()
        await self.store.close()
        self.kube.close()


def _print_line(line: str) -> None:
    """Audit entries on stdout, one JSON line each (logs go to stderr), for a log shipper."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def build_runtime(
    settings: Settings,
    catalog: Catalog,
    *,
    store: Store | None = None,
    kube: Kube | None = None,
    jobs: Jobs | None = None,
    prom: Any = None,
) -> Runtime:
    """`jobs`: where work after the ack runs; by default on this process's event loop."""
    store = store or open_store(settings.redis_url)
    if settings.audit_stdout:
        store.audit_sink = _print_line
    kube = kube or Kube.connect(
        catalog.namespace, kubeconfig=settings.kubeconfig, context=catalog.env.kube_context
    )
    slack = SlackGateway(make_client(settings.slack_bot_token, settings.slack_api_url))
    telemetry = Telemetry()
    jobs = jobs or Jobs()
    policy = Policy(catalog, slack.group_members)
    alertmanager = Alertmanager(settings.alertmanager_url) if settings.alertmanager_url else None
    if prom is None and settings.prometheus_url:
        prom = Prom(settings.prometheus_url, timeout=catalog.promql.timeout_seconds, catalog=catalog)
    deps = Deps(catalog, kube, store, Notifier(slack), jobs.spawn, prom, alertmanager=alertmanager)
    dispatcher = Dispatcher(deps, slack, policy, telemetry)
    jobs.execute = dispatcher.execute
    bolt = build_bolt(
        dispatcher,
        jobs,
        slack,
        signing_secret=settings.slack_signing_secret,
        command=settings.command,
    )
    return Runtime(settings, catalog, store, kube, slack, jobs, telemetry, dispatcher, bolt)
