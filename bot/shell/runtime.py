"""Wires settings and catalog into one running bot: the same assembly serves `serve`, the
console and the tests, so what is tested is what runs."""

from __future__ import annotations

import dataclasses
import logging
import sys
from dataclasses import dataclass

from slack_bolt.async_app import AsyncApp

from bot.base.telemetry import Telemetry
from bot.chat.app import build_bolt
from bot.chat.blocks import render
from bot.chat.dispatch import ActionJob, CommandJob, Dispatcher
from bot.chat.notifier import SlackNotifier
from bot.config.catalog import Catalog
from bot.config.settings import Settings
from bot.domain.policy import Policy
from bot.domain.views import Notice, Tone
from bot.gateways import healthcheck
from bot.gateways.alertmanager import Alertmanager
from bot.gateways.jobs import Jobs, QueuedJobs
from bot.gateways.kube import Kube
from bot.gateways.outbox import Outbox
from bot.gateways.payflow_redis import PayflowRedis
from bot.gateways.postgres import Postgres
from bot.gateways.prom import Prom
from bot.gateways.rabbitmq import RabbitMQ
from bot.gateways.slack import DeliveryFailed, DeliveryPolicy, SlackError, SlackGateway, make_client
from bot.gateways.store import Store, open_store
from handlers import SERVICES
from handlers.base import Deps

log = logging.getLogger(__name__)


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
        return not isinstance(self.jobs, QueuedJobs)

    async def start(self) -> None:
        """Start the long-running services; only in the process that runs the jobs."""
        self.kube.warm()  # the API classes' imports, off the loop: the first command does not pay them
        for service in SERVICES:
            self.jobs.spawn(service(self.dispatcher.deps))

    async def use_settings(self, settings: Settings) -> None:
        """Swap in gateways for the data stores whose setting changed: the console's demo starts
        its stores after the prompt and hands their URLs over when each is ready. A job already
        running keeps the gateway it started with."""
        deps, data, catalog = self.dispatcher.deps, self.catalog.data, self.catalog

        def changed(name: str) -> bool:
            return settings.named(name) != self.settings.named(name)

        self.dispatcher.deps = dataclasses.replace(
            deps,
            postgres=_postgres(settings, catalog) if changed(data.postgres.url_setting) else deps.postgres,
            rabbitmq=_rabbitmq(settings, catalog) if changed(data.rabbitmq.url_setting) else deps.rabbitmq,
            payflow_redis=(
                _payflow_redis(settings, catalog) if changed(data.redis.url_setting) else deps.payflow_redis
            ),
        )
        self.settings = settings
        replaced = deps.payflow_redis
        if replaced is not None and replaced is not self.dispatcher.deps.payflow_redis:
            await replaced.close()

    async def close(self) -> None:
        await self.jobs.close()
        await self.store.close()
        if self.dispatcher.deps.payflow_redis is not None:
            await self.dispatcher.deps.payflow_redis.close()
        await self.kube.aclose()
        await healthcheck.close()
        await self.slack.close()


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
    prom: Prom | None = None,
    telemetry: Telemetry | None = None,
) -> Runtime:
    """`jobs`: where work after the ack runs; by default on this process's event loop. Pools are
    sized to the jobs that may run at once, so a burst waits in the queue, not for a connection."""
    concurrency = settings.worker_concurrency
    store = store or open_store(settings.redis_url, max_connections=2 * concurrency + 4)
    if settings.audit_stdout:
        store.audit_sink = _print_line
    kube = kube or Kube.connect(
        catalog.namespace,
        kubeconfig=settings.kubeconfig,
        context=catalog.env.kube_context,
        workers=concurrency,
    )
    telemetry = telemetry or Telemetry()
    slack = SlackGateway(
        make_client(settings.slack_bot_token, settings.slack_api_url),
        policy=DeliveryPolicy(total_seconds=settings.slack_delivery_seconds),
        outbox=Outbox(store),
        on_event=telemetry.slack_event,
    )
    jobs = jobs or Jobs(concurrency, settings.job_queue_max)
    jobs.on_outcome = lambda outcome: telemetry.jobs.labels(outcome).inc()
    jobs.timeout = settings.job_timeout_seconds
    if isinstance(jobs, QueuedJobs):

        async def refused(job: object, reason: str) -> None:
            """Slack does not retry a slash command: say at once that this one will not run."""
            invocation = job.invocation if isinstance(job, CommandJob | ActionJob) else None
            if invocation is not None and invocation.response_url:
                if "full" in reason:
                    text = "The bot is overloaded (its job queue is full), so nothing was done. Try again."
                else:
                    text = "The bot's store is unreachable, so nothing was done. Try again shortly."
                try:
                    await slack.respond(invocation.response_url, render(Notice(text, Tone.ERROR)))
                except SlackError as exc:  # DeliveryFailed was logged by the gateway already
                    if not isinstance(exc, DeliveryFailed):
                        log.error("could not tell the user their command was not queued: %s", exc)

        jobs.on_refused = refused
    policy = Policy(catalog, slack.group_members)
    alertmanager = Alertmanager(settings.alertmanager_url) if settings.alertmanager_url else None
    if prom is None and settings.prometheus_url:
        prom = Prom(
            settings.prometheus_url,
            timeout=catalog.promql.timeout_seconds,
            catalog=catalog,
            workers=concurrency,
        )
    deps = Deps(
        catalog,
        kube,
        store,
        SlackNotifier(slack),
        jobs.spawn,
        prom,
        alertmanager=alertmanager,
        rabbitmq=_rabbitmq(settings, catalog),
        payflow_redis=_payflow_redis(settings, catalog),
        postgres=_postgres(settings, catalog),
    )
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


def _rabbitmq(settings: Settings, catalog: Catalog) -> RabbitMQ | None:
    """None when the setting is unset, or not a URL (then `/payflow mq` says what to set)."""
    conf = catalog.data.rabbitmq
    url = settings.named(conf.url_setting)
    if url is None:
        return None
    try:
        return RabbitMQ(url, vhost=conf.vhost, timeout=catalog.data.timeout_seconds)
    except ValueError as exc:  # says what is wrong with the URL, never the URL
        log.error("%s: %s; /payflow mq is off", conf.url_setting, exc)
        return None


def _postgres(settings: Settings, catalog: Catalog) -> Postgres | None:
    """None when the setting is unset (then the `db` commands say what to set); a string that is
    not a connection string is said by each `db` command, naming the setting, never its value."""
    setting = catalog.data.postgres.url_setting
    dsn = settings.named(setting)
    return Postgres(dsn, timeout=catalog.data.timeout_seconds, setting=setting) if dsn else None


def _payflow_redis(settings: Settings, catalog: Catalog) -> PayflowRedis | None:
    conf = catalog.data.redis
    url = settings.named(conf.url_setting)
    if url is None:
        return None
    try:
        return PayflowRedis(url, timeout=catalog.data.timeout_seconds)
    except ValueError as exc:
        log.error("%s: %s; /payflow tokens is off", conf.url_setting, exc)
        return None
