"""The bot's own Prometheus metrics, in a registry per runtime so tests can build many."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.commands = Counter(
            "payflow_commands",
            "Slash commands by command and outcome",
            ["command", "outcome"],
            registry=self.registry,
        )
        self.ack_seconds = Histogram(
            "payflow_ack_seconds",
            "Time from request arrival to the ack leaving the bot",
            buckets=ACK_BUCKETS,
            registry=self.registry,
        )
        self.dependency_up = Gauge(
            "payflow_dependency_up",
            "1 if the dependency answered the last readiness or metrics probe (not part of readiness)",
            ["dependency"],
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
