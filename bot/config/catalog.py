"""The catalog (`payflow.yaml`): what PayFlow is made of and who may touch it.

Everything the bot knows about services, colors, roles and channels comes from here, so a
typo in the file must stop the bot with a message that names the key, never half-start it.
"""

from __future__ import annotations

import re
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import unquote

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from bot.config.metrics import (
    Dependency,
    DigestSchedule,
    PromQL,
    default_dependencies,
    default_digests,
    unique_names,
)
from bot.config.operations import Backups, Business, DataTier

Color = Literal["blue", "green"]
COLORS: tuple[Color, Color] = ("blue", "green")
DEFAULT_CATALOG = "catalog.default.yaml"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_SLACK_USER = re.compile(r"^(\*|[UW][A-Z0-9]{2,})$")
_SLACK_GROUP = re.compile(r"^S[A-Z0-9]{2,}$")
_CHANNEL = re.compile(r"^(#[a-z0-9][a-z0-9._-]{0,79}|[CGD][A-Z0-9]{2,})$")


def other_color(color: Color) -> Color:
    return "green" if color == "blue" else "blue"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FreezeWindow(_Strict):
    """A period in which deploys need break-glass; absolute times with a zone, so DST cannot move it."""

    start: datetime
    end: datetime
    reason: str = "change freeze"

    @model_validator(mode="after")
    def _ordered(self) -> FreezeWindow:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end need a timezone, e.g. 2026-12-24T00:00:00+00:00")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class Smoke(_Strict):
    """The guide's `curl /health` on the idle color, made strict: N successes in a row."""

    successes: Annotated[int, Field(ge=1, le=20)] = 3
    attempts: Annotated[int, Field(ge=1, le=100)] = 10
    interval_seconds: Annotated[float, Field(ge=0, le=60)] = 2.0
    timeout_seconds: Annotated[float, Field(gt=0, le=30)] = 3.0
    via: Literal["direct", "apiserver"] = "direct"  # apiserver: through the API server's service proxy


MAX_BAKE_CHECKS = 500


class Environment(_Strict):
    namespace: str = "payflow"
    kube_context: str | None = None
    four_eyes: bool = True
    approval_ttl_seconds: Annotated[int, Field(gt=0, le=86400)] = 900
    freeze_windows: list[FreezeWindow] = []
    rollout_timeout_seconds: Annotated[int, Field(gt=0, le=7200)] = 900
    change_lock_ttl_seconds: Annotated[int, Field(ge=60, le=86400)] = 1800
    bake_seconds: Annotated[int, Field(ge=0, le=86400)] = 600
    bake_interval_seconds: Annotated[float, Field(ge=1, le=3600)] = 60
    # How long a worker owns a phase of a change without renewing (it renews every third). At
    # least three Kubernetes call timeouts, so a switch started with a third of it left ends in it.
    lease_seconds: Annotated[float, Field(ge=15, le=600)] = 30
    bake_window: str = "2m"
    smoke: Smoke = Smoke()

    @model_validator(mode="after")
    def _bake_checks(self) -> Environment:
        # every check is kept in the change record: bounded so the record stays small
        if self.bake_seconds / self.bake_interval_seconds > MAX_BAKE_CHECKS:
            raise ValueError(
                f"bake_seconds / bake_interval_seconds is more than {MAX_BAKE_CHECKS} checks: "
                "raise the interval"
            )
        return self

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        if not _DNS_LABEL.match(v):
            raise ValueError("must be a Kubernetes namespace name (lowercase letters, digits, '-')")
        return v


class Traffic(_Strict):
    """The object whose backend decides which color is live."""

    kind: Literal["ingress", "service"] = "ingress"
    name: str = "payflow-ingress"
    host: str | None = "payflow.com"
    path: str = "/"
    selector_key: str = "color"


class ServiceSpec(_Strict):
    port: Annotated[int, Field(ge=1, le=65535)]
    replicas: Annotated[int, Field(ge=1)] = 3
    min_replicas: Annotated[int, Field(ge=1)] = 1
    max_replicas: Annotated[int, Field(ge=1, le=200)] = 10
    image: str = "payflow/{service}"
    container: str = "{service}"
    deployment: str = "{service}-{color}"
    k8s_service: str = "{service}-{color}"
    health_path: str = "/health"
    health_url: str = "http://{k8s_service}.{namespace}.svc.cluster.local:{port}{health_path}"
    traffic: Traffic = Traffic()

    @model_validator(mode="after")
    def _bounds(self) -> ServiceSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) is above max_replicas ({self.max_replicas})"
            )
        if not self.min_replicas <= self.replicas <= self.max_replicas:
            raise ValueError(
                f"replicas ({self.replicas}) must lie within min_replicas..max_replicas "
                f"({self.min_replicas}..{self.max_replicas})"
            )
        for name in ("deployment", "k8s_service"):
            if "{color}" not in getattr(self, name):
                raise ValueError(f"{name} must contain {{color}} so the two colors differ")
        return self

    @field_validator("health_path")
    @classmethod
    def _health_path(cls, v: str) -> str:
        """The probe's URL is resolved on its way out ('..' removed with the segment before it):
        through the API server's service proxy, '/../../../configmaps' would be a read of the
        namespace with the bot's credentials, its 200 taken for a healthy service."""
        path = unquote(v.split("?", 1)[0].split("#", 1)[0])
        if any(segment in (".", "..") for segment in path.split("/")):
            raise ValueError("must stay on the service: no '.' or '..' segments")
        return v


class Members(_Strict):
    users: list[str] = []
    groups: list[str] = []

    @field_validator("users")
    @classmethod
    def _users(cls, v: list[str]) -> list[str]:
        bad = [u for u in v if not _SLACK_USER.match(u)]
        if bad:
            raise ValueError(f"not Slack user IDs (U… or W…, or '*' for everyone): {', '.join(bad)}")
        return v

    @field_validator("groups")
    @classmethod
    def _groups(cls, v: list[str]) -> list[str]:
        bad = [g for g in v if not _SLACK_GROUP.match(g)]
        if bad:
            raise ValueError(f"not Slack user-group IDs (S…): {', '.join(bad)}")
        return v


class Roles(_Strict):
    viewer: Members = Members(users=["*"])
    operator: Members = Members()
    approver: Members = Members()
    admin: Members = Members()


def _channel(v: str) -> str:
    if not _CHANNEL.match(v):
        raise ValueError(f"{v!r} is neither a channel ID (C…, G…) nor a #channel-name")
    return v


class Channels(_Strict):
    commands: list[str] = ["#payflow-ops"]
    allow_dms: bool = False
    approvals: str = "#payflow-approvals"
    digests: str = "#payflow-ops"
    alerts: str = "#payflow-alerts"
    audit: str = "#payflow-audit"

    @field_validator("commands")
    @classmethod
    def _commands(cls, v: list[str]) -> list[str]:
        return [_channel(c) for c in v]

    @field_validator("approvals", "digests", "alerts", "audit")
    @classmethod
    def _one(cls, v: str) -> str:
        return _channel(v)


class SLOs(_Strict):
    p95_ms: Annotated[float, Field(gt=0)] = 200
    error_rate: Annotated[float, Field(ge=0, le=1)] = 0.001
    availability: Annotated[float, Field(gt=0, le=1)] = 0.999


_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _label_name(v: str) -> str:
    if not _LABEL_NAME.match(v):
        raise ValueError(f"{v!r} is not a Prometheus label name (letters, digits, '_')")
    return v


class AlertRouting(_Strict):
    """How Alertmanager's groups become Slack messages: the labels that name the service and the
    severity, and a channel per severity (any other severity goes to `channels.alerts`)."""

    service_label: Annotated[str, AfterValidator(_label_name)] = "service"
    severity_label: Annotated[str, AfterValidator(_label_name)] = "severity"
    channels: dict[str, Annotated[str, AfterValidator(_channel)]] = {}


def _service_name(name: str) -> str:
    if not _DNS_LABEL.match(name):
        raise ValueError("service names must be DNS labels (lowercase letters, digits, '-')")
    return name


ServiceName = Annotated[str, AfterValidator(_service_name)]


class Catalog(_Strict):
    environment: str = "production"
    environments: dict[str, Environment]
    services: dict[ServiceName, ServiceSpec]
    roles: Roles = Roles()
    channels: Channels = Channels()
    alerts: AlertRouting = AlertRouting()
    slos: SLOs = SLOs()
    promql: PromQL = PromQL()
    dependencies: dict[ServiceName, Dependency] = Field(default_factory=default_dependencies)
    digests: list[DigestSchedule] = Field(default_factory=default_digests)
    data: DataTier = DataTier()
    backups: Backups = Backups()
    business: Business = Business()

    @field_validator("digests")
    @classmethod
    def _unique_digests(cls, v: list[DigestSchedule]) -> list[DigestSchedule]:
        return unique_names(v)

    @field_validator("services")
    @classmethod
    def _some_services(cls, v: dict[str, ServiceSpec]) -> dict[str, ServiceSpec]:
        if not v:
            raise ValueError("at least one service is needed")
        return v

    @model_validator(mode="after")
    def _active_environment(self) -> Catalog:
        if self.environment not in self.environments:
            known = ", ".join(self.environments) or "none"
            raise ValueError(f"environment {self.environment!r} is not among environments ({known})")
        return self

    @property
    def env(self) -> Environment:
        return self.environments[self.environment]

    @property
    def namespace(self) -> str:
        return self.env.namespace

    def service(self, name: str) -> ServiceSpec:
        return self.services[name]

    def alert_channel(self, severity: str | None) -> str:
        return self.alerts.channels.get(severity or "", self.channels.alerts)

    def deployment_name(self, service: str, color: Color) -> str:
        return self.services[service].deployment.format(service=service, color=color)

    def k8s_service_name(self, service: str, color: Color) -> str:
        return self.services[service].k8s_service.format(service=service, color=color)

    def container_name(self, service: str) -> str:
        return self.services[service].container.format(service=service)

    def image_repository(self, service: str) -> str:
        return self.services[service].image.format(service=service)

    def image(self, service: str, version: str) -> str:
        """`payflow/api-gateway:v1.2.3`, or `payflow/api-gateway@sha256:…` for a digest."""
        sep = "@" if version.startswith("sha256:") else ":"
        return f"{self.image_repository(service)}{sep}{version}"

    def health_url(self, service: str, color: Color) -> str:
        spec = self.services[service]
        return spec.health_url.format(
            service=service,
            color=color,
            k8s_service=self.k8s_service_name(service, color),
            namespace=self.namespace,
            port=spec.port,
            health_path=spec.health_path,
        )

    def freeze_at(self, at: datetime) -> FreezeWindow | None:
        return next((w for w in self.env.freeze_windows if w.start <= at < w.end), None)


class CatalogError(Exception):
    """A catalog that cannot be used; `problems` holds one 'key.path: what is wrong' per error."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))

    def report(self) -> str:
        lines = [f"{self.source}: {len(self.problems)} error(s)"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


def _key_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc if part != "[key]") or "(top level)"


def _unknown_environment(data: dict[object, object]) -> list[str]:
    """Checked apart from the model: pydantic skips cross-field checks when fields have errors."""
    envs, active = data.get("environments"), data.get("environment", "production")
    if isinstance(envs, dict) and isinstance(active, str) and active not in envs:
        known = ", ".join(map(str, envs)) or "none"
        return [f"environment: {active!r} is not among environments ({known})"]
    return []


def _describe(err: ErrorDetails) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key (check the spelling)"
    if kind == "missing":
        return "is required"
    return err["msg"].removeprefix("Value error, ")


def parse_catalog(data: object, source: str = "catalog") -> Catalog:
    if not isinstance(data, dict):
        raise CatalogError(
            source, ["(top level): expected a mapping of keys such as services, roles, channels"]
        )
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        problems = [f"{_key_path(e['loc'])}: {_describe(e)}" for e in exc.errors()]
        problems += [p for p in _unknown_environment(data) if p not in problems]
        raise CatalogError(source, problems) from None


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load `path`, or the built-in PayFlow of the operations guide when no path is given."""
    if path is None:
        text = resources.files("bot.config").joinpath(DEFAULT_CATALOG).read_text()
        source = f"built-in {DEFAULT_CATALOG}"
    else:
        source = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise CatalogError(source, [f"(file): cannot read it: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise CatalogError(source, [f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from None
    return parse_catalog(data, source)
