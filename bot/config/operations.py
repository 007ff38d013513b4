"""Catalog sections for the operations guide's data-tier, security and backup procedures.

Connection strings and passwords never live in the catalog: it names the setting (environment
variable) that holds them, so the file can be reviewed and committed like the rest.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

_SETTING = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_SQL_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}(\.[a-z_][a-z0-9_]{0,62})?$")


def _setting(v: str) -> str:
    if not _SETTING.match(v):
        raise ValueError(f"{v!r} is not an environment variable name (A-Z, 0-9, _)")
    return v


def _dns(v: str) -> str:
    if not _DNS_NAME.match(v):
        raise ValueError(f"{v!r} is not a Kubernetes object name")
    return v


def _sql_name(v: str) -> str:
    if not _SQL_NAME.match(v):
        raise ValueError(f"{v!r} is not a plain SQL name like schema.function")
    return v


Setting = Annotated[str, AfterValidator(_setting)]
ObjectName = Annotated[str, AfterValidator(_dns)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Postgres(_Strict):
    url_setting: Setting = "DATABASE_URL"  # a monitoring role (pg_monitor), see README
    unlock_function: Annotated[str, AfterValidator(_sql_name)] = "payflow_bot.unlock_user"
    users_table: Annotated[str, AfterValidator(_sql_name)] = "users"


class PayflowRedis(_Strict):
    """PayFlow's own Redis (the auth service's token blacklist), not the bot's store."""

    url_setting: Setting = "PAYFLOW_REDIS_URL"
    blacklist_pattern: Annotated[str, Field(min_length=1, max_length=200)] = "token:blacklist:*"
    # Keys asked per SCAN call: 1,000 blocks Redis ~0.5 ms a step (other clients' p99 ~2 ms), 250 keeps
    # their p99 near 0.2 ms for ~0.3 s more per 100,000 keys (bench/data.py).
    scan_count: Annotated[int, Field(ge=10, le=10_000)] = 250
    scan_budget_seconds: Annotated[float, Field(gt=0, le=30)] = 2.0  # then the count is partial, said so


def _rabbit_source(v: object) -> object:
    """Said at load time rather than half-working at the first `/payflow mq`."""
    if v == "prometheus":
        raise ValueError(
            "'prometheus' (the rabbitmq_prometheus plugin's metrics) is not supported yet; use 'api': "
            "the management API read by a monitoring-tag user (README: RabbitMQ)"
        )
    return v


class RabbitMQ(_Strict):
    source: Annotated[Literal["api"], BeforeValidator(_rabbit_source)] = "api"  # the management API
    url_setting: Setting = "RABBITMQ_API_URL"  # http://user:password@rabbitmq.payflow.svc:15672
    vhost: Annotated[str, Field(min_length=1, max_length=255)] = "/"
    # Empty: every queue of the vhost. At most 100 names: they go into one filtered API request.
    queues: Annotated[list[Annotated[str, Field(min_length=1, max_length=255)]], Field(max_length=100)] = []
    backlog_warning: Annotated[int, Field(ge=0)] = 1000  # ready messages that make a queue a problem


class DataTier(_Strict):
    timeout_seconds: Annotated[float, Field(gt=0, le=30)] = 5.0  # each read, end to end
    postgres: Postgres = Postgres()
    redis: PayflowRedis = PayflowRedis()
    rabbitmq: RabbitMQ = RabbitMQ()


class Backups(_Strict):
    max_age_hours: Annotated[float, Field(gt=0, le=24 * 31)] = 26
    postgres_cronjob: ObjectName = "postgres-backup"
    drill_cronjob: ObjectName = "restore-drill"
    size_annotation: str = "backup.payflow.io/size-bytes"  # written on its Job by the backup script
    job_timeout_seconds: Annotated[int, Field(ge=10, le=6 * 3600)] = 3600


class Business(_Strict):
    """PromQL for the business figures; each optional (empty: not shown). `{window}` is the
    period (1d for the daily digest)."""

    transactions: str = 'sum(increase(payflow_transactions_total{status="completed"}[{window}]))'
    transaction_value: str = "sum(increase(payflow_transaction_value_total[{window}]))"
    active_users: str = "max(max_over_time(payflow_active_users[{window}]))"
    currency: Annotated[str, Field(max_length=8)] = "EUR"
