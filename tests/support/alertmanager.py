"""A real `prometheus-alertmanager` on a free port, alone (no cluster), whose webhook receiver
points at the bot, with short group timings so that tests see its actual notifications fast."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

import httpx
import yaml

from sandbox.local import free_port, wait_until

BINARY = "prometheus-alertmanager"


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


class AlertmanagerServer:
    def __init__(
        self,
        workdir: Path,
        *,
        token: str | None = None,
        basic: tuple[str, str] | None = None,
        group_by: tuple[str, ...] = ("alertname", "service"),
        group_wait: str = "100ms",
        group_interval: str = "1s",
        repeat_interval: str = "1h",
    ):
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        http_config: dict[str, Any] = {}
        if token:
            http_config["authorization"] = {"type": "Bearer", "credentials": token}
        if basic:
            http_config["basic_auth"] = {"username": basic[0], "password": basic[1]}
        self.config: dict[str, Any] = {
            "route": {
                "receiver": "payflow-bot",
                "group_by": list(group_by),
                "group_wait": group_wait,
                "group_interval": group_interval,
                "repeat_interval": repeat_interval,
            },
            "receivers": [
                {
                    "name": "payflow-bot",
                    "webhook_configs": [
                        {"url": "", "send_resolved": True, "max_alerts": 50, "http_config": http_config}
                    ],
                }
            ],
        }
        self._process: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(timeout=5)

    @property
    def log_path(self) -> Path:
        return self.workdir / "alertmanager.log"

    def start(self, webhook_url: str, timeout: float = 15) -> Self:
        """Start with the webhook receiver pointing at `webhook_url` (the bot's /alertmanager)."""
        self.config["receivers"][0]["webhook_configs"][0]["url"] = webhook_url
        if shutil.which(BINARY) is None:
            raise RuntimeError(f"{BINARY} is not installed (make test installs it)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "alertmanager.yml"
        config.write_text(yaml.safe_dump(self.config))
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [
                BINARY,
                f"--config.file={config}",
                f"--storage.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
                "--log.level=debug",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        process = self._process

        def ready() -> bool:
            assert process.poll() is None, f"alertmanager exited: {self.log_path.read_text()[-2000:]}"
            try:
                return self.http.get(f"{self.url}/-/ready").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout, "alertmanager to be ready", poll=0.05)
        return self

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        self.http.close()

    # --- what Prometheus would do ---------------------------------------------------------

    def fire(self, labels: dict[str, str], annotations: dict[str, str] | None = None) -> None:
        """Post a firing alert, as Prometheus's rule evaluation does (endsAt well in the future)."""
        now = datetime.now(UTC)
        self._post(labels, annotations, now - timedelta(seconds=30), now + timedelta(hours=1))

    def resolve(self, labels: dict[str, str], annotations: dict[str, str] | None = None) -> None:
        """Post the same alert with endsAt in the past: Alertmanager marks it resolved."""
        now = datetime.now(UTC)
        self._post(labels, annotations, now - timedelta(seconds=30), now - timedelta(seconds=1))

    def _post(
        self, labels: dict[str, str], annotations: dict[str, str] | None, starts: datetime, ends: datetime
    ) -> None:
        alert = {
            "labels": labels,
            "annotations": annotations or {},
            "startsAt": _iso(starts),
            "endsAt": _iso(ends),
            "generatorURL": "http://prometheus.example/graph",
        }
        resp = self.http.post(f"{self.url}/api/v2/alerts", json=[alert])
        resp.raise_for_status()

    def alerts(self) -> list[dict[str, Any]]:
        return self.http.get(f"{self.url}/api/v2/alerts").raise_for_status().json()

    def silences(self) -> list[dict[str, Any]]:
        return self.http.get(f"{self.url}/api/v2/silences").raise_for_status().json()

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""
