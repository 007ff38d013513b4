"""What ``kubectl logs`` shows: a deterministic synthetic log per container -- boot lines, then
one request line a second -- a crash script for crash-looping containers, and the lines tests add.

Deterministic (a hash of pod, container and line number) so that the same call answers the same
lines, and bounded (``MAX_LOG_LINES``) like the kubelet's rotated log files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sandbox.apiserver.kinds import JSON, ApiError

MAX_LOG_LINES = 2000
LOG_INTERVAL = 1.0
LEAKY_LINES = (  # what `leaky_logs` mixes in: the kinds of secrets real payment logs leak
    "ERROR {prefix} charge declined card=4111 1111 1111 1111 order={n} amount=42.00 EUR",
    "ERROR {prefix} provider rejected pan 5500-0000-0000-0004 (do_not_honor) txn {n}",
    "WARN  {prefix} retrying upstream with Authorization: Bearer "
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyLTQyIn0.c2lnbmF0dXJlLWJ5dGVz",
    "ERROR {prefix} db reconnect failed: postgres://payflow:Sup3rS3cret@postgres-0:5432/payflow",
    "INFO  {prefix} loaded settings redis_password=hunter2 api_key=sk_live_51Habc123 order={n}",
    "WARN  {prefix} 3ds callback PAN4001630741852961 body=%22cvv%22%3A%22123%22 txn {n}",
    "DEBUG {prefix} pos swipe %B4001630741852961^DOE/JOHN^2512101000000000000000? txn {n}",
    "DEBUG {prefix} psp call Authorization: Token 9f8e7d6c5b4a39281706 key AKIAIOSFODNN7EXAMPLE",
)


def image_tag(image: str) -> str:
    """``payflow/api-gateway:v1.0.0`` -> ``v1.0.0`` (``latest`` when untagged)."""
    image = image.split("@", 1)[0]
    last = image.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else "latest"


@dataclass
class ContainerSim:
    """One container as the kubelet runs it; the log is derived from these times."""

    started: float
    mode: str | None = None  # bad-image mode the kubelet last saw
    mode_since: float = 0.0
    restarts: int = 0
    last_exit: tuple[float, float] | None = None  # (started, finished) of the last crashed instance
    ready_since: float | None = None
    extra_log: list[tuple[float, str]] = field(default_factory=list)  # lines added by `add_log_lines`
    batch: bool = False  # runs to completion: its log is its script's lines (``extra_log``), verbatim


class LogWriter:
    """Renders a container's log lines (monotonic time, text) for the kubelet's log endpoint."""

    def __init__(self, wall_offset: float) -> None:
        self._wall_offset = wall_offset
        # Now and then a line with a card number, a JWT or a password, as real services leak them.
        self.leaky_logs = False

    def lines(
        self, pod: str, spec: JSON, csim: ContainerSim, now: float, previous: bool, boot_delay: float
    ) -> list[tuple[float, str]]:
        name = spec["name"]
        image = str(spec.get("image") or "")
        version = image_tag(image)
        prefix = f"[{name} {version}]"
        if previous:
            if csim.last_exit is None:
                raise ApiError.bad_request(f'previous terminated container "{name}" in pod "{pod}" not found')
            return self._crash_lines(prefix, name, image, *csim.last_exit)
        if csim.batch:
            if now < csim.started:
                raise ApiError.bad_request(
                    f'container "{name}" in pod "{pod}" is waiting to start: ContainerCreating'
                )
            return [e for e in csim.extra_log if e[0] <= now][-MAX_LOG_LINES:]
        if csim.mode == "ImagePullBackOff":
            raise ApiError.bad_request(
                f'container "{name}" in pod "{pod}" is waiting to start: trying and failing to pull image'
            )
        if csim.mode == "CrashLoopBackOff":
            # While backing off there is no live instance; the kubelet serves the last one.
            if csim.last_exit is not None:
                return self._crash_lines(prefix, name, image, *csim.last_exit)
            lines = self._crash_lines(prefix, name, image, csim.started, csim.started + max(boot_delay, 0.05))
            return [(t, text) for t, text in lines if t <= now]
        port = next((p.get("containerPort") for p in spec.get("ports") or [] if isinstance(p, dict)), 8080)
        start = csim.started
        boot = [
            f"INFO  {prefix} starting {name} version={version} image={image}",
            f"INFO  {prefix} loading config from /etc/payflow/config.yaml",
            f"INFO  {prefix} connected to postgres (pool=10)",
            f"INFO  {prefix} connected to redis",
            f"INFO  {prefix} http server listening on :{port}",
            f"INFO  {prefix} ready to serve traffic",
        ]
        lines = [(start + i * 0.001, text) for i, text in enumerate(boot)]
        count = int(max(now - start, 0) / LOG_INTERVAL)
        routes = (
            "GET /health 200",
            "POST /api/v1/payments 201",
            "GET /api/v1/payments/{id} 200",
            "GET /metrics 200",
        )
        for i in range(max(1, count - MAX_LOG_LINES + 1), count + 1):
            h = int.from_bytes(hashlib.blake2b(f"{pod}/{name}/{i}".encode(), digest_size=8).digest(), "big")
            if self.leaky_logs and h % 23 == 0:
                text = LEAKY_LINES[h // 23 % len(LEAKY_LINES)].format(prefix=prefix, n=h % 100_000)
            elif h % 17 == 0:
                text = f"WARN  {prefix} slow request POST /api/v1/payments took {200 + h % 800}ms"
            else:
                text = f"INFO  {prefix} {routes[h % len(routes)]} {1 + h % 40}ms"
            lines.append((start + i * LOG_INTERVAL, text))
        if csim.extra_log:
            lines = sorted(lines + [e for e in csim.extra_log if e[0] <= now], key=lambda e: e[0])
        return [(t, f"{self.app_ts(t)} {text}") for t, text in lines[-MAX_LOG_LINES:]]

    def _crash_lines(
        self, prefix: str, name: str, image: str, start: float, end: float
    ) -> list[tuple[float, str]]:
        version = image_tag(image)
        script = [
            (0.0, f"INFO  {prefix} starting {name} version={version} image={image}"),
            (0.1, f"INFO  {prefix} loading config from /etc/payflow/config.yaml"),
            (0.5, f"ERROR {prefix} failed to initialise payment provider client (version {version})"),
            (0.8, f"ERROR {prefix} panic: runtime error: invalid memory address or nil pointer dereference"),
            (0.95, f"ERROR {prefix} exiting with status 1"),
        ]
        return [
            (start + frac * (end - start), f"{self.app_ts(start + frac * (end - start))} {text}")
            for frac, text in script
        ]

    def app_ts(self, t: float) -> str:
        dt = datetime.fromtimestamp(t + self._wall_offset, tz=UTC)
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
