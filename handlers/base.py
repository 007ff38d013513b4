"""What every handler gets: the gateways, who asked and where. Nothing from Slack or HTTP."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from bot.base.messages import MessageRef
from bot.base.refused import Refused as Refused  # re-exported: handlers import it from here
from bot.base.roles import Role
from bot.config.catalog import Catalog, Color
from bot.domain import topology
from bot.domain.ports import Notifier
from bot.gateways.alertmanager import Alertmanager
from bot.gateways.kube import Kube
from bot.gateways.kube_objects import Snapshot
from bot.gateways.payflow_redis import PayflowRedis
from bot.gateways.postgres import Postgres
from bot.gateways.prom import Prom
from bot.gateways.rabbitmq import RabbitMQ
from bot.gateways.store import AuditEntry, Store, StoreUnavailable

log = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, None]], None]


@dataclass(frozen=True)
class Deps:
    """The gateways and helpers shared by every handler and background service."""

    catalog: Catalog
    kube: Kube
    store: Store
    notifier: Notifier
    spawn: Spawn  # start a long-running task (a rollout watch, a bake) that outlives the job
    prom: Prom | None = None  # None: PROMETHEUS_URL is not set
    alertmanager: Alertmanager | None = None  # None: ALERTMANAGER_URL is not set
    rabbitmq: RabbitMQ | None = None  # when the setting named by catalog data.rabbitmq is set
    payflow_redis: PayflowRedis | None = None  # PayFlow's Redis (data.redis), not the bot's store
    postgres: Postgres | None = None  # when the setting catalog.data.postgres.url_setting is set

    async def audit(self, entry: AuditEntry) -> bool:
        """Append to the audit trail; False (and a loud log) if the store is unreachable."""
        try:
            await self.store.append_audit(entry)
            return True
        except StoreUnavailable as exc:
            log.error("audit entry lost (%s): %s", exc, entry)
            return False


@dataclass(frozen=True)
class Context:
    deps: Deps
    actor: str
    channel: str = ""
    message: MessageRef | None = None  # the message a clicked button sits on
    role: Role | None = None  # the caller's role, as the policy found it

    @property
    def catalog(self) -> Catalog:
        return self.deps.catalog

    @property
    def kube(self) -> Kube:
        return self.deps.kube

    @property
    def store(self) -> Store:
        return self.deps.store

    @property
    def notifier(self) -> Notifier:
        return self.deps.notifier


def lock_key(service: str) -> str:
    return f"lock:{service}"


async def live_color(
    ctx: Context, service: str, *, otherwise: str, snapshot: Snapshot | None = None
) -> Color:
    """The service's live color from its traffic object; refused, saying `otherwise` ("nothing was
    scaled"), when the object points at neither color: never guess which one takes traffic."""
    if snapshot is None:
        ingresses, services = await asyncio.gather(ctx.kube.ingresses(), ctx.kube.services())
    else:
        ingresses, services = snapshot.ingresses, snapshot.services
    color = topology.live_color(ctx.catalog, service, ingresses, services)
    if color is None:
        label = topology.traffic_label(ctx.catalog, service)
        raise Refused(
            f"Cannot tell which color of {service} is live ({label} points at neither), so {otherwise}."
        )
    return color
