"""Catalog sections for metrics: PromQL templates, dependency checks and digest schedules.

Templates are catalog data, not code, because every Prometheus names its labels differently.
Placeholders are replaced textually (PromQL is full of braces, so no `str.format`):

* `{service}` — a regex for the `service` label: one service's name, or `.+` for all;
* `{color}` — `blue`, `green`, or `.*` for both;
* `{by}` — the grouping labels (`service`, or `service, color`): all services are asked in one
  query aggregated `by (service)`, never one query per service;
* `{window}` — the range, e.g. `5m`; `{quantile}` — only in `latency`, e.g. `0.95`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bot.base import durations
from bot.base.cron import Cron, CronError

PLACEHOLDERS = frozenset({"service", "color", "by", "window", "quantile"})
_PLACEHOLDER = re.compile(r"\{([A-Za-z_]+)\}")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$")
_CHANNEL = re.compile(r"^(#[a-z0-9][a-z0-9._-]{0,79}|[CGD][A-Z0-9]{2,})$")  # as bot.config.catalog's channels


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _errors_with(placeholder: str) -> str:
    return (
        f'(sum by ({{by}}) (rate(http_requests_total{{service=~"{{service}}",color=~"{{color}}",'
        f'status=~"5.."}}[{{window}}])) or {placeholder})'
    )


_REQUESTS = 'sum by ({by}) (rate(http_requests_total{service=~"{service}",color=~"{color}"}[{window}]))'
# "or … * 0": a service that never answered 5xx has no 5xx series; it has an error rate of 0, not none.
_ERRORS = _errors_with(f"{_REQUESTS} * 0")


class Templates(_Strict):
    rps: str = _REQUESTS
    error_rate: str = f"{_ERRORS} / {_REQUESTS}"
    latency: str = (
        "histogram_quantile({quantile}, sum by ({by}, le) (rate(http_request_duration_seconds_bucket"
        '{service=~"{service}",color=~"{color}"}[{window}])))'
    )
    availability: str = f"1 - ({_ERRORS} / {_REQUESTS})"
    cpu: str = (
        'sum by ({by}) (rate(container_cpu_usage_seconds_total{service=~"{service}",color=~"{color}"}'
        '[{window}])) / sum by ({by}) (kube_pod_container_resource_limits{service=~"{service}",'
        'color=~"{color}",resource="cpu"})'
    )
    memory: str = (
        'sum by ({by}) (container_memory_working_set_bytes{service=~"{service}",color=~"{color}"}) '
        '/ sum by ({by}) (kube_pod_container_resource_limits{service=~"{service}",color=~"{color}",'
        'resource="memory"})'
    )

    @model_validator(mode="after")
    def _placeholders(self) -> Templates:
        for name, text in self.model_dump().items():
            found = set(_PLACEHOLDER.findall(text))
            unknown = found - PLACEHOLDERS
            if unknown:
                raise ValueError(
                    f"{name}: unknown placeholder(s) {', '.join(sorted('{' + u + '}' for u in unknown))}; "
                    f"known: {', '.join(sorted('{' + p + '}' for p in PLACEHOLDERS))}"
                )
            for needed in ("service", "by"):
                if needed not in found:
                    raise ValueError(
                        f"{name}: needs {{{needed}}} so one query can answer for one service or all"
                    )
            if name == "latency" and "quantile" not in found:
                raise ValueError("latency: needs {quantile}")
        return self


def _duration(text: str) -> str:
    try:
        durations.seconds(text)
    except durations.BadDuration as exc:
        raise ValueError(str(exc).replace("`", "'")) from None
    return text


Window = Annotated[str, Field(min_length=2, max_length=8)]


class PromQL(_Strict):
    templates: Templates = Templates()
    window: Window = "5m"  # the "now" figures of health, digests and the bake watch
    availability_window: Window = "24h"
    timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0
    alerts: str = 'count(ALERTS{alertstate="firing"}) or vector(0)'

    @field_validator("window", "availability_window")
    @classmethod
    def _window(cls, v: str) -> str:
        return _duration(v)


class Probe(_Strict):
    """An optional direct check beside the Prometheus one: a TCP connect or an HTTP GET (2xx)."""

    tcp: str | None = None  # host:port
    http: str | None = None  # URL
    timeout_seconds: Annotated[float, Field(gt=0, le=30)] = 2.0

    @model_validator(mode="after")
    def _one(self) -> Probe:
        if (self.tcp is None) == (self.http is None):
            raise ValueError("give exactly one of tcp (host:port) or http (URL)")
        if self.tcp is not None:
            host, _, port = self.tcp.rpartition(":")
            if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError(f"tcp must be host:port, got {self.tcp!r}")
        if self.http is not None and not self.http.startswith(("http://", "https://")):
            raise ValueError(f"http must be an http:// or https:// URL, got {self.http!r}")
        return self


class Dependency(_Strict):
    """PostgreSQL, Redis, RabbitMQ…: `check` is PromQL whose every value is 1 when up (`pg_up`,
    `redis_up`, `up{job=…}`); no result at all means unknown, never up."""

    check: str = Field(min_length=1)
    probe: Probe | None = None
    description: str = ""


# health: the daily checklist; errors: error rates; weekly: this week against last week (and
# capacity); monthly: availability against the SLO, the error budget, changes and incidents.
DigestKind = Literal["health", "errors", "weekly", "monthly"]


class DigestSchedule(_Strict):
    name: str
    kind: DigestKind = "health"
    cron: str
    timezone: str = "UTC"
    channel: str | None = None  # default: channels.digests
    window: Window = "1h"  # weekly: the span a CPU/memory peak is averaged over (1h: the busiest hour)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("must be lowercase letters, digits and '-' (it is part of a store key)")
        return v

    @field_validator("window")
    @classmethod
    def _window(cls, v: str) -> str:
        return _duration(v)

    @field_validator("channel")
    @classmethod
    def _channel(cls, v: str | None) -> str | None:
        if v is not None and not _CHANNEL.match(v):
            raise ValueError(f"{v!r} is neither a channel ID (C…, G…) nor a #channel-name")
        return v

    @model_validator(mode="after")
    def _cron(self) -> DigestSchedule:
        try:
            Cron.parse(self.cron, self.timezone)
        except CronError as exc:
            raise ValueError(f"cron {self.cron!r}: {exc}") from None
        return self

    @property
    def schedule(self) -> Cron:
        return Cron.parse(self.cron, self.timezone)


def default_dependencies() -> dict[str, Dependency]:
    return {
        "postgres": Dependency(check="min(pg_up)", description="PostgreSQL"),
        "redis": Dependency(check="min(redis_up)", description="Redis"),
        "rabbitmq": Dependency(check="min(rabbitmq_up)", description="RabbitMQ"),
    }


def default_digests() -> list[DigestSchedule]:
    return [
        DigestSchedule(name="daily-checklist", kind="health", cron="0 9 * * *"),
        DigestSchedule(name="hourly-errors", kind="errors", cron="0 * * * *"),
        DigestSchedule(name="weekly-review", kind="weekly", cron="0 9 * * 1"),
        DigestSchedule(name="monthly-review", kind="monthly", cron="0 9 1 * *"),
    ]


def unique_names(schedules: list[DigestSchedule]) -> list[DigestSchedule]:
    names = [s.name for s in schedules]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"schedule names must be unique: {', '.join(dupes)}")
    return schedules
