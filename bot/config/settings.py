"""Process settings from the environment (the contract other tools rely on). Secrets never
appear in repr, logs or error messages."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

N = TypeVar("N", int, float)


@dataclass(frozen=True)
class Settings:
    slack_bot_token: str | None = field(default=None, repr=False)
    slack_signing_secret: str | None = field(default=None, repr=False)
    slack_app_token: str | None = field(default=None, repr=False)
    slack_api_url: str | None = None
    redis_url: str | None = field(default=None, repr=False)  # may carry a password
    prometheus_url: str | None = None
    kubeconfig: str | None = None
    config_path: str | None = None
    command: str = "/payflow"
    # How many replicas of `serve` may run at once (PAYFLOW_REPLICAS; the manifest sets it). More
    # than one needs REDIS_URL: the embedded store is per process, so replicas would split-brain.
    # 0 means the variable was not a whole number ≥ 1 (reported by `problems_for_serve`).
    replicas: int = 1
    # Alertmanager: its webhook authenticates to us with a bearer token or basic auth; we create
    # silences through its API at ALERTMANAGER_URL (which may carry credentials).
    alertmanager_url: str | None = field(default=None, repr=False)
    alertmanager_webhook_token: str | None = field(default=None, repr=False)
    alertmanager_webhook_user: str | None = None
    alertmanager_webhook_password: str | None = field(default=None, repr=False)
    # AUDIT_STDOUT=1: also write each audit entry to stdout as a JSON line when it is stored.
    audit_stdout: bool = False
    # Bounded work (see bot/gateways/jobs.py): jobs run at once per worker, how long one may take, how big
    # the queue may grow, when a dead worker's jobs are taken over, how often a job may be tried.
    worker_concurrency: int = 8
    job_timeout_seconds: float = 300.0
    job_queue_max: int = 10_000
    job_claim_seconds: float = 30.0
    job_max_deliveries: int = 3
    slack_delivery_seconds: float = 60.0  # one delivery to Slack, retries included
    invalid: tuple[str, ...] = ()  # numeric settings that did not parse (reported by serve)
    # The whole environment, for settings the catalog names (DATABASE_URL, PAYFLOW_REDIS_URL, …):
    # the catalog says which variable holds a connection string, never the string itself.
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    def named(self, name: str) -> str | None:
        """The value of a setting the catalog names, or None when it is unset or blank."""
        value = self.env.get(name, "").strip()
        return value or None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        invalid: list[str] = []

        def number(name: str, default: N, low: float, kind: Callable[[str], N]) -> N:
            raw = get(name)
            if raw is None:
                return default
            value: N | None
            try:
                value = kind(raw)
            except ValueError:
                value = None
            if value is None or not value >= low:
                invalid.append(f"{name} must be a{'n integer' if kind is int else ' number'} ≥ {low:g}")
                return default
            return value

        return cls(
            worker_concurrency=number("PAYFLOW_WORKER_CONCURRENCY", cls.worker_concurrency, 1, int),
            job_timeout_seconds=number("PAYFLOW_JOB_TIMEOUT_SECONDS", cls.job_timeout_seconds, 1, float),
            job_queue_max=number("PAYFLOW_JOB_QUEUE_MAX", cls.job_queue_max, 1, int),
            job_claim_seconds=number("PAYFLOW_JOB_CLAIM_SECONDS", cls.job_claim_seconds, 1, float),
            job_max_deliveries=number("PAYFLOW_JOB_MAX_DELIVERIES", cls.job_max_deliveries, 1, int),
            slack_delivery_seconds=number(
                "PAYFLOW_SLACK_DELIVERY_SECONDS", cls.slack_delivery_seconds, 1, float
            ),
            invalid=tuple(invalid),
            env=dict(env),
            slack_bot_token=get("SLACK_BOT_TOKEN"),
            slack_signing_secret=get("SLACK_SIGNING_SECRET"),
            slack_app_token=get("SLACK_APP_TOKEN"),
            slack_api_url=get("SLACK_API_URL"),
            redis_url=get("REDIS_URL"),
            prometheus_url=get("PROMETHEUS_URL"),
            kubeconfig=get("KUBECONFIG"),
            config_path=get("PAYFLOW_CONFIG"),
            alertmanager_url=get("ALERTMANAGER_URL"),
            alertmanager_webhook_token=get("ALERTMANAGER_WEBHOOK_TOKEN"),
            alertmanager_webhook_user=get("ALERTMANAGER_WEBHOOK_USER"),
            alertmanager_webhook_password=get("ALERTMANAGER_WEBHOOK_PASSWORD"),
            audit_stdout=(get("AUDIT_STDOUT") or "").lower() in {"1", "true", "yes", "on"},
            replicas=_replicas(get("PAYFLOW_REPLICAS")),
        )

    def problems_for_serve(self, socket_mode: bool) -> list[str]:
        problems = list(self.invalid)
        if self.replicas < 1:
            problems.append(
                "PAYFLOW_REPLICAS must be a whole number of at least 1 (the replicas that may run)"
            )
        elif self.replicas > 1 and not self.redis_url:
            problems.append(
                f"PAYFLOW_REPLICAS is {self.replicas} but REDIS_URL is not set: each replica would keep its "
                "own approvals, locks and audit trail (split brain). Add REDIS_URL to the bot's Secret, "
                "or run one replica with PAYFLOW_REPLICAS=1"
            )
        if bool(self.alertmanager_webhook_user) != bool(self.alertmanager_webhook_password):
            problems.append(
                "ALERTMANAGER_WEBHOOK_USER and ALERTMANAGER_WEBHOOK_PASSWORD go together: set both or neither"
            )
        if not self.slack_bot_token:
            problems.append(
                "SLACK_BOT_TOKEN is not set: the bot token (xoxb-…) from the app's OAuth & Permissions page"
            )
        elif not self.slack_bot_token.startswith("xoxb-"):
            problems.append("SLACK_BOT_TOKEN does not look like a bot token (it should start with xoxb-)")
        if socket_mode:
            if not self.slack_app_token:
                problems.append(
                    "--socket-mode needs SLACK_APP_TOKEN: an app-level token (xapp-…) with connections:write"
                )
            elif not self.slack_app_token.startswith("xapp-"):
                problems.append(
                    "SLACK_APP_TOKEN does not look like an app-level token (it should start with xapp-)"
                )
        elif not self.slack_signing_secret:
            problems.append(
                "SLACK_SIGNING_SECRET is not set: the signing secret from the app's Basic Information page"
            )
        return problems


def _replicas(value: str | None) -> int:
    if value is None:
        return 1
    try:
        return max(int(value), 0)
    except ValueError:
        return 0
