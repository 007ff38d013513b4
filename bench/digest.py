"""The health digest, and the weekly and monthly reviews, for many services against a real
Prometheus with backfilled series.

Target (issue 4, issue 14): under 1 s for 200 services, and at most 7 Prometheus queries for
the daily digest (the 4 of issue 4 and one per business figure), 6 weekly, 1 monthly. Queries are
counted twice: by the gateway, and by Prometheus itself (its own `/api/v1/query` counter), so
the figure does not depend on the code under test being honest. The digest is built exactly as
a scheduled one is (`handlers.digest.health_digest`): Kubernetes from the sandbox cluster seeded
with the same services, everything else from Prometheus.

    .venv/bin/python bench/digest.py [--services 200] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.chat.notifier import SlackNotifier
from bot.config.catalog import Catalog, ServiceSpec, load_catalog
from bot.domain.views import DigestReport, PeriodDigest
from bot.gateways.kube import Kube
from bot.gateways.prom import Prom
from bot.gateways.slack import SlackGateway, make_client
from bot.gateways.store import MemoryStore
from handlers.base import Deps
from handlers.digest import health_digest
from handlers.digests_periodic import monthly_digest, weekly_digest
from sandbox.cluster import Cluster
from sandbox.k8s_api import SandboxServer
from sandbox.prometheus import INSTALL_HINT, PrometheusServer, available
from sandbox.seed import seed, wait_until_ready
from sandbox.traffic import BAD, GOOD, Stretch, history

QUERY_COUNTER = 'prometheus_http_requests_total{code="200",handler="/api/v1/query"}'
RANGE_COUNTER = 'prometheus_http_requests_total{code="200",handler="/api/v1/query_range"}'


def many_services(n: int) -> Catalog:
    base = load_catalog()
    services = {
        f"svc-{i:03d}": ServiceSpec(port=3000 + i, replicas=1, min_replicas=1, max_replicas=10)
        for i in range(n)
    }
    return base.model_copy(update={"services": services})


KINDS = ("daily", "weekly", "monthly")
# daily: overview (2), dependencies, alerts, business (one per figure: 3); weekly: 4 figures
# (this week and last in one query each), peaks, restarts; monthly: availability
QUERY_BUDGET = {"daily": 7, "weekly": 6, "monthly": 1}


async def measure(
    prom: Prom, deps: Deps, server: PrometheusServer, runs: int, kind: str = "daily"
) -> list[tuple[float, int, float]]:
    out = []
    for _ in range(runs):
        before_gw, before_prom = prom.queries, server.counter(QUERY_COUNTER) + server.counter(RANGE_COUNTER)
        started = time.perf_counter()
        report: DigestReport | PeriodDigest
        if kind == "weekly":
            report = await weekly_digest(deps, "1h", "bench")
        elif kind == "monthly":
            report = await monthly_digest(deps, "bench")
        else:
            report = await health_digest(deps, "1h", "bench")
        took = time.perf_counter() - started
        assert len(report.services) == len(deps.catalog.services), "a service is missing from the digest"
        seen = server.counter(QUERY_COUNTER) + server.counter(RANGE_COUNTER) - before_prom
        out.append((took, prom.queries - before_gw, seen))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not available():
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    catalog = many_services(args.services)
    names = list(catalog.services)
    stretches = [Stretch(name, "blue", BAD if i % 50 == 7 else GOOD, pods=1) for i, name in enumerate(names)]
    end = time.time() - 5
    text = history(stretches, end - 65 * 60, end, 30.0)
    samples = text.count("\n") - text.count("# ")

    server = PrometheusServer()
    started = time.perf_counter()
    server.backfill(text)
    backfill_s = time.perf_counter() - started
    server.start()

    cluster = seed(Cluster(), catalog)
    cluster.ready_delay = 0.0
    with SandboxServer(cluster) as sandbox, tempfile.TemporaryDirectory() as tmp:
        wait_until_ready(cluster, catalog, timeout=60)
        kubeconfig = sandbox.write_kubeconfig(Path(tmp) / "kubeconfig")

        async def run() -> dict[str, list[tuple[float, int, float]]]:
            prom = Prom(server.url, catalog=catalog, timeout=5)
            kube = Kube.connect(catalog.namespace, kubeconfig=str(kubeconfig))
            slack = SlackGateway(make_client("xoxb-bench", "http://127.0.0.1:9/"))
            deps = Deps(catalog, kube, MemoryStore(), SlackNotifier(slack), lambda c: None, prom)
            try:
                return {kind: await measure(prom, deps, server, args.runs, kind) for kind in KINDS}
            finally:
                kube.close()
                prom.close()

        results = asyncio.run(run())
    server.close()

    print(f"digests, {args.services} services, one Prometheus 2.42 (backfilled with promtool)")
    print(f"{'history':<34} {samples:,} samples in {backfill_s:.2f} s of promtool")
    print(f"{'digest':<9} {'queries (gateway · Prometheus)':<32} {'first':>8} {'median':>8} {'worst':>8}")
    ok = True
    for kind, rows in results.items():
        times = [t for t, _, _ in rows]
        gw = sorted({q for _, q, _ in rows})
        seen = sorted({int(p) for _, _, p in rows})
        median = statistics.median(times[1:] or times)
        queries = f"{gw} · {seen}"
        first, worst = times[0] * 1000, max(times) * 1000
        print(f"{kind:<9} {queries:<32} {first:>6.0f} ms {median * 1000:>5.0f} ms {worst:>5.0f} ms")
        ok = ok and max(gw) <= QUERY_BUDGET[kind] and max(seen) <= QUERY_BUDGET[kind] and max(times) < 1.0
    budgets = ", ".join(f"{k} ≤ {n}" for k, n in QUERY_BUDGET.items())
    print(f"target queries ({budgets}) and < 1 s each: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
