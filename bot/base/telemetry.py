"""The bot's own Prometheus metrics, in a registry per runtime so tests can build many.

`serve`'s worker process counts what it does (commands, jobs, Slack deliveries) in its own
registry and sends `snapshot()`s to the web process, which `absorb`s them into the counters
/metrics exposes: one scrape target shows both processes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

Snapshot = dict[str, dict[tuple[str, ...], float]]


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
        self.jobs = Counter(
            "payflow_jobs",
            "Jobs after the ack by outcome (done, failed, dead_lettered, refused: queue full or down)",
            ["outcome"],
            registry=self.registry,
        )
        self.slack_retries = Counter(
            "payflow_slack_retries",
            "Slack deliveries retried after a 429, 5xx, timeout or dropped connection",
            ["method"],
            registry=self.registry,
        )
        self.slack_failures = Counter(
            "payflow_slack_delivery_failures",
            "Slack deliveries given up after their deadline (the message is lost; logged)",
            ["method"],
            registry=self.registry,
        )
        self.worker_restarts = Counter(
            "payflow_worker_restarts", "Worker process restarts after it died", registry=self.registry
        )
        self._counters = {
            c._name: c
            for c in (self.commands, self.jobs, self.slack_retries, self.slack_failures, self.worker_restarts)
        }
        self._absorbed: dict[str, Snapshot] = {}

    def slack_event(self, event: str, method: str, reason: str) -> None:
        (self.slack_retries if event == "retry" else self.slack_failures).labels(method).inc()

    def snapshot(self) -> Snapshot:
        """Every labelled counter's value, to send to the process that serves /metrics."""
        snap: Snapshot = {}
        for name, counter in self._counters.items():
            values = snap.setdefault(name, {})
            for metric in counter.collect():
                for sample in metric.samples:
                    if sample.name.endswith("_total"):
                        values[tuple(sample.labels.get(n, "") for n in counter._labelnames)] = sample.value
        return snap

    def absorb(self, source: str, snap: Snapshot) -> None:
        """Add what `source` (one worker process's life) counted since its previous snapshot."""
        before = self._absorbed.get(source, {})
        for name, values in snap.items():
            counter = self._counters.get(name)
            if counter is None:
                continue
            for labels, value in values.items():
                delta = value - before.get(name, {}).get(labels, 0.0)
                if delta > 0:
                    (counter.labels(*labels) if labels else counter).inc(delta)
        self._absorbed[source] = snap

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
