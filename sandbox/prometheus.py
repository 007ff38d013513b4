"""A private Prometheus (the OS package's binary) on a free loopback port, for `make run`, the
tests and the benchmark: one helper so all three run Prometheus the same way.

It scrapes the given targets every `scrape_interval`, and can be given history before it starts
with `backfill()` (`promtool tsdb create-blocks-from openmetrics` into its data directory).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Self, TextIO
from urllib.parse import urlsplit

import httpx
import yaml

from sandbox.local import LocalServer, free_port

if TYPE_CHECKING:
    from sandbox.apiserver.server import SandboxServer

INSTALL_HINT = (
    "no `prometheus` binary on this machine: metrics, health figures and digests need one. "
    "Install it with `sudo apt-get install prometheus` (Debian/Ubuntu) or `make system-deps`."
)


def available() -> bool:
    return shutil.which("prometheus") is not None and shutil.which("promtool") is not None


class PrometheusServer(LocalServer):
    def __init__(
        self,
        targets: list[str] | tuple[str, ...] = (),
        *,
        scrape_interval: str = "1s",
        rules: dict | None = None,
        data_dir: str | Path | None = None,
        job: str = "payflow-sandbox",
        ca_file: str | Path | None = None,
        retention: str = "15d",
    ):
        """`targets`: URLs whose `/metrics` is scraped (`https://127.0.0.1:6443`); `ca_file`: the CA
        that signed an https target's certificate (the sandbox's `ca_file`), verified on every
        scrape; `rules`: a Prometheus rule file as a dict (alerting rules feed `ALERTS`)."""
        self.targets = list(targets)
        self.ca_file = ca_file
        self.scrape_interval = scrape_interval
        self.rules = rules
        self.job = job
        self.retention = retention  # a backfilled history older than this is dropped at start
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="payflow-prometheus-")
            data_dir = self._tmp.name
        self.dir = Path(data_dir)
        self.data = self.dir / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _config(self) -> dict:
        scrape = []
        if self.targets:
            scrape.append(
                {
                    "job_name": self.job,
                    "scrape_interval": self.scrape_interval,
                    "scrape_timeout": self.scrape_interval,
                    "metrics_path": "/metrics",
                    "scheme": urlsplit(self.targets[0]).scheme or "http",
                    "static_configs": [{"targets": [urlsplit(t).netloc for t in self.targets]}],
                    **({"tls_config": {"ca_file": str(self.ca_file)}} if self.ca_file else {}),
                }
            )
        config: dict = {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
            "scrape_configs": scrape,
        }
        if self.rules:
            path = self.dir / "rules.yml"
            path.write_text(yaml.safe_dump(self.rules, sort_keys=False))
            config["rule_files"] = [str(path)]
        return config

    def backfill(self, openmetrics: str) -> None:
        """Write history into the data directory; call before `start()`."""
        if self._proc is not None:
            raise RuntimeError("backfill before start(): Prometheus reads blocks when it opens its data")
        source = self.dir / "history.om"
        source.write_text(openmetrics)
        result = subprocess.run(
            ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(source), str(self.data)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        source.unlink()
        if result.returncode != 0:
            raise RuntimeError(f"promtool failed: {(result.stderr or result.stdout).strip()[-2000:]}")

    def start(self, timeout: float = 20.0) -> Self:
        config = self.dir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self._config(), sort_keys=False))
        self._proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={self.data}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                f"--storage.tsdb.retention.time={self.retention}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.dir / "prometheus.log").open("wb"),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                log = (self.dir / "prometheus.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"prometheus exited with {self._proc.returncode}: {log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"prometheus did not become ready on {self.url} within {timeout:g}s")

    def wait_for(self, promql: str, timeout: float = 30.0) -> list:
        """Poll until `promql` returns a non-empty vector (scrapes have landed); returns it."""
        deadline = time.monotonic() + timeout
        while True:
            resp = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5)
            result = resp.json().get("data", {}).get("result", [])
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"no result for {promql!r} within {timeout:g}s")
            time.sleep(0.1)

    def counter(self, name: str) -> float:
        """Sum of one of Prometheus's own metrics, e.g. how many queries it has answered."""
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
            self._proc = None

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def alert_rules(error_ratio: float) -> dict:
    """Alerting rules for the sandbox's Prometheus, so digests count firing alerts for real."""
    errors = 'sum by (service) (rate(http_requests_total{status=~"5.."}[1m]))'
    total = "sum by (service) (rate(http_requests_total[1m]))"
    return {
        "groups": [
            {
                "name": "payflow-sandbox",
                "rules": [
                    {
                        "alert": "PayflowHighErrorRate",
                        "expr": f"{errors} / {total} > {error_ratio}",
                        "for": "30s",
                        "labels": {"severity": "critical"},
                        "annotations": {"summary": "{{ $labels.service }} error rate above the SLO"},
                    },
                    {
                        "alert": "PayflowDependencyDown",
                        "expr": "min(pg_up) < 1 or min(redis_up) < 1 or min(rabbitmq_up) < 1",
                        "for": "15s",
                        "labels": {"severity": "critical"},
                    },
                ],
            }
        ]
    }


def for_console(
    stack: contextlib.ExitStack, sandbox: SandboxServer, error_ratio: float, out: TextIO
) -> str | None:
    """Start a private Prometheus scraping the sandbox for `make run`; None (and a hint) without one."""
    if not available():
        print(f"⚠️  {INSTALL_HINT}", file=out)
        return None
    server = PrometheusServer(
        [sandbox.url], scrape_interval="1s", rules=alert_rules(error_ratio), ca_file=sandbox.ca_file
    )
    stack.callback(server.close)
    try:
        server.start()
    except RuntimeError as exc:
        print(f"⚠️  could not start Prometheus ({exc}); metric commands will say so", file=out)
        return None
    print(f"private Prometheus on {server.url}, scraping the sandbox every second", file=out)
    return server.url
