"""PayFlow at scale (issue 9): every answer complete at 1,000 services, within Slack's limits,
and probes that tell the truth when there are more of them than can run at once.

No timings here (those are bench/scale.py's): these tests prove that no service is silently
left out — each is shown, counted in a summary, or in the attached file — and that a probe
that never ran says "not checked", never "no answer"."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

from bot.chat.blocks import MAX_BLOCKS, TEXT_LIMIT, Message, render
from bot.config.catalog import Catalog, Smoke
from bot.domain.topology import live_color
from bot.domain.views import (
    ColorStatus,
    DigestReport,
    DigestService,
    ErrorDigest,
    Figure,
    HealthItem,
    HealthReport,
    ServiceStatus,
    StatusReport,
)
from bot.gateways.healthcheck import probe_many
from bot.gateways.kube import Kube
from handlers.status import service_status
from sandbox.apiserver.http import RequestRecord
from sandbox.cluster import Cluster
from sandbox.k8s_api import SandboxServer
from tests.support.blackhole import BlackHole

N = 1000


def _texts(message: Message) -> list[str]:
    out = []
    for b in message.blocks:
        if isinstance(b.get("text"), dict):
            out.append(b["text"]["text"])
        out += [e["text"] for e in b.get("elements", ()) if isinstance(e, dict) and "text" in e]
    return out


def _within_slack_limits(message: Message) -> None:
    assert len(message.blocks) <= MAX_BLOCKS
    assert len(message.text) <= TEXT_LIMIT
    assert sum(map(len, _texts(message))) <= TEXT_LIMIT
    for b in message.blocks:
        if b["type"] == "section":
            assert len(b["text"]["text"]) <= 3000
        if b["type"] == "header":
            assert len(b["text"]["text"]) <= 150
        if b["type"] == "context":
            assert len(b["elements"]) <= 10


def _accounted(message: Message, names: list[str]) -> tuple[set[str], dict[str, int], set[str]]:
    """(shown, counted per state, in the file): asserts every name is in one of them."""
    body = "\n".join(_texts(message))
    shown = {n for n in names if f"*{n}*" in body}
    counted = {state: int(n) for n, state in re.findall(r"\*(\d+)\* ([A-Za-z ]+?)(?= ·|$)", body, re.M)}
    if not message.files:  # everything fits: everything is shown
        assert shown == set(names) and not counted
        return shown, counted, set()
    [table] = message.files
    rows = table.content.splitlines()[1:]
    in_file = {row.split("\t", 1)[0] for row in rows}
    assert len(rows) == len(names) and in_file == set(names), "the file holds every row, once"
    assert len(shown) + sum(counted.values()) == len(names), (len(shown), counted)
    assert f"all {len(names)} is in the file `{table.filename}`" in body
    return shown, counted, in_file


def _color(color: str, live: bool, problems: tuple[str, ...] = ()) -> ColorStatus:
    desired = 3 if live else 0
    return ColorStatus(
        color,  # type: ignore[arg-type]
        f"x-{color}",
        live,
        "v1.0.0",
        desired,
        desired,
        0,
        "complete" if live else "scaled to zero",
        problems,
    )


def _status(name: str, bad: bool) -> ServiceStatus:
    problems = ("2 pods in CrashLoopBackOff", "only 1/3 pods ready") if bad else ()
    return ServiceStatus(name, "blue", (_color("blue", True, problems), _color("green", False)))


NAMES = [f"svc-{i:04d}" for i in range(N)]


def test_status_of_a_thousand_services_is_complete_within_slack_limits():
    report = StatusReport("production", "payflow", tuple(_status(n, i % 3 == 0) for i, n in enumerate(NAMES)))
    message = render(report)

    _within_slack_limits(message)
    shown, counted, _ = _accounted(message, NAMES)
    troubled = {n for i, n in enumerate(NAMES) if i % 3 == 0}
    assert shown <= troubled, "problems come first: no healthy service is shown before them"
    assert counted["healthy"] == N - len(troubled)
    assert counted.get("more needing attention", 0) == len(troubled) - len(shown)
    assert "334 of 1000 service(s) need attention" in message.text
    [table] = message.files
    assert "svc-0003\tblue\tblue=v1.0.0 3/3 ready 0 restarts complete" in table.content
    assert "2 pods in CrashLoopBackOff" in table.content.splitlines()[1]


def test_a_few_problems_are_all_shown_and_the_healthy_ones_counted():
    report = StatusReport("production", "payflow", tuple(_status(n, n in NAMES[:4]) for n in NAMES))
    message = render(report)

    _within_slack_limits(message)
    shown, counted, _ = _accounted(message, NAMES)
    assert shown == set(NAMES[:4]) and counted == {"healthy": 996}


def test_a_small_catalog_is_shown_whole_without_a_file():
    report = StatusReport("production", "payflow", tuple(_status(n, False) for n in NAMES[:4]))
    message = render(report)
    body = "\n".join(_texts(message))
    assert message.files == () and all(f"*{n}*" in body for n in NAMES[:4])


def test_health_of_a_thousand_services_is_complete_and_keeps_its_notes():
    items = [
        HealthItem(n, "service", "bad" if i % 4 == 0 else "ok", ("blue (live) v1.0.0: 3/3 ready", "blue: x"))
        for i, n in enumerate(NAMES)
    ]
    deps = [HealthItem(d, "dependency", "ok", ("check: up (1)",)) for d in ("postgres", "redis", "rabbitmq")]
    report = HealthReport("production", tuple(items + deps), ("dependency checks need Prometheus",))
    message = render(report)

    _within_slack_limits(message)
    _, counted, _ = _accounted(message, [*NAMES, "postgres", "redis", "rabbitmq"])
    assert counted["healthy"] == 750 and counted["dependencies up"] == 3
    assert "❔ dependency checks need Prometheus" in _texts(message)


def _figures(bad: bool) -> tuple[Figure, ...]:
    return (
        Figure("requests", "12.0/s"),
        Figure("error rate", "9.0 %" if bad else "0.01 %", "< 0.1 %", "bad" if bad else "ok"),
        Figure("p95", "120 ms", "< 300 ms"),
    )


def test_the_digest_of_a_thousand_services_keeps_verdict_dependencies_and_alerts():
    services = tuple(
        DigestService(n, "bad" if i % 5 == 0 else "ok", "blue", "v1.0.0", 3, 3, _figures(i % 5 == 0))
        for i, n in enumerate(NAMES)
    )
    deps = (
        HealthItem("postgres", "dependency", "bad", ("check: DOWN (0)",)),
        HealthItem("redis", "dependency", "ok", ("check: up (1)",)),
    )
    report = DigestReport(
        "PayFlow digest · production",
        services,
        deps,
        Figure("alerts", "3", "0", "bad"),
        "1h",
        ("availability: Prometheus answered 503",),
    )
    message = render(report)

    _within_slack_limits(message)
    _, counted, _ = _accounted(message, NAMES)
    body = "\n".join(_texts(message))
    assert body.startswith("PayFlow digest · production\n🔴 *Needs attention* — 200 of 1000 service(s): ")
    assert "and 195 more; dependencies: postgres; 3 firing alert(s)" in body
    assert "*Dependencies* 🔴 postgres check: DOWN (0) · ✅ redis check: up (1)" in body
    assert "*Alerts* 🔴 3 firing" in body
    assert "❔ unavailable — availability: Prometheus answered 503" in body
    assert counted["all good"] == 800


def test_the_error_digest_of_a_thousand_services_is_complete():
    rows = tuple(
        (n, Figure("error rate", "5 %" if i % 2 else "0.01 %", "< 0.1 %", "bad" if i % 2 else "ok"))
        for i, n in enumerate(NAMES)
    )
    message = render(ErrorDigest("PayFlow errors · production", "1h", rows))
    _within_slack_limits(message)
    shown, _, _ = _accounted(message, NAMES)
    assert len(shown) == N, "one short line each: all 1,000 fit in one message"

    rows = tuple(
        (f"{n}-with-a-much-longer-name-{'x' * 30}", f) for n, (_, f) in zip(NAMES, rows, strict=True)
    )
    message = render(ErrorDigest("PayFlow errors · production", "1h", rows))
    _within_slack_limits(message)
    shown, counted, _ = _accounted(message, [n for n, _ in rows])
    assert counted["within the SLO"] == 500 and len(shown) + counted["more needing attention"] == 500


def test_every_service_with_a_problem_and_long_lines_still_fits():
    long = tuple(f"pod {i} in CrashLoopBackOff: " + "x" * 200 for i in range(5))
    report = StatusReport(
        "production",
        "payflow",
        tuple(
            ServiceStatus(n, None, (_color("blue", False, long), _color("green", False, long))) for n in NAMES
        ),
    )
    message = render(report)
    _within_slack_limits(message)
    shown, counted, _ = _accounted(message, NAMES)
    assert shown and counted == {"more needing attention": N - len(shown)}


# --- probes ------------------------------------------------------------------------------------


def _direct(catalog: Catalog, url: str, timeout: float) -> Catalog:
    """The catalog with every service's health URL at `url` and a per-probe deadline."""
    env = catalog.env.model_copy(update={"smoke": Smoke(via="direct", timeout_seconds=timeout)})
    services = {
        name: spec.model_copy(update={"health_url": url + "/health"})
        for name, spec in catalog.services.items()
    }
    return catalog.model_copy(
        update={"environments": {**catalog.environments, catalog.environment: env}, "services": services}
    )


def test_a_probe_that_never_ran_is_not_checked_and_a_deadline_starts_with_its_probe(
    catalog: Catalog, kubeconfig: Path
):
    """Four services hung, two probes at a time, 1 s each, 2.5 s for all: the first two pairs are
    asked and answer nothing within their own second (not two: their wait for a turn does not
    count); the third pair's turn would end past the overall deadline, so it never starts."""
    kube = Kube.connect(catalog.namespace, kubeconfig=str(kubeconfig))
    with BlackHole() as hole:
        hung = _direct(catalog, hole.url, 1.0)
        targets: list[Any] = [(name, "blue") for name in hung.services] + [
            (name, "green") for name in hung.services
        ]
        targets = targets[:6]
        started = time.monotonic()
        results = asyncio.run(probe_many(hung, kube, targets, concurrency=2, deadline=2.5))
        took = time.monotonic() - started
        asked = hole.connections
    kube.close()

    summaries = [r.summary for r in results]
    for r in results[:4]:
        assert r.ran and not r.ok
        ms = float(re.search(r"after (\d+) ms", r.summary)[1])  # type: ignore[index]
        assert r.summary.startswith("/health no answer: no answer within 1 s") and 990 <= ms < 1500, summaries
    for r in results[4:]:
        assert not r.ran and r.summary == (
            "/health not checked: the 2.5 s for all 6 probes ran out before its turn"
        ), summaries
    assert asked == 4, "the services never asked were never contacted"
    assert took < 3.5


def test_probes_waiting_for_a_connection_are_not_blamed(catalog: Catalog, cluster: Cluster, tmp_path: Path):
    """Through the API server's proxy (the sandbox's way): with the gateway's only proxy
    connection held by a slow request (a watch that answers nothing for a while), a probe's clock
    starts when its request does; one that cannot start in time is never sent, and says so."""
    record: list[RequestRecord] = []
    server = SandboxServer(cluster, record=record).start()
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig", namespace=catalog.namespace)
    kube = Kube.connect(catalog.namespace, kubeconfig=str(kubeconfig), proxy_limit=1)
    fast = catalog.model_copy(
        update={
            "environments": {
                **catalog.environments,
                catalog.environment: catalog.env.model_copy(
                    update={"smoke": Smoke(via="apiserver", timeout_seconds=1.0)}
                ),
            }
        }
    )
    targets: list[Any] = [(name, "blue") for name in catalog.services]

    def proxied() -> int:
        return sum(r.subresource == "proxy" for r in record)

    async def busy_then_probe(busy: int, deadline: float) -> list[Any]:
        assert kube._http is not None
        watch = f"/api/v1/namespaces/{catalog.namespace}/services?watch=true&timeoutSeconds={busy}"
        nothing = "&fieldSelector=metadata.name%3Dno-such-service"  # no event ever: it just waits
        blocker = asyncio.ensure_future(kube._http.get(watch + nothing, timeout=busy + 2))
        await asyncio.sleep(0.1)  # the watch holds the only connection
        try:
            return await probe_many(fast, kube, targets, concurrency=4, deadline=deadline)
        finally:
            assert (await blocker)[0] == 200
            await kube.aclose()

    waited = asyncio.run(busy_then_probe(1, 5.0))
    for r in waited:
        assert r.ok and r.summary.startswith("/health 200 v1.0.0"), r.summary
        assert float(re.search(r"\((\d+) ms\)", r.summary)[1]) < 500, r.summary  # type: ignore[index]

    assert proxied() == len(targets)
    starved = asyncio.run(busy_then_probe(3, 1.5))
    server.stop()
    assert [r.summary for r in starved] == [
        f"/health not checked: the 1.5 s for all {len(targets)} probes ran out before its turn"
    ] * len(targets)
    assert not any(r.ran for r in starved)
    assert proxied() == len(targets), "a probe that was not checked was never sent"


def test_health_probes_started_before_the_pods_are_read_give_the_same_answer(
    catalog: Catalog, kubeconfig: Path, k8s_view
):
    """`health` starts the probes once the ingresses are read, before Services, deployments and pods:
    the read of the namespace is one (shared with a concurrent `snapshot`), and every service's
    item is what the snapshot and a probe of its live color, made one after the other, say."""
    kube = Kube.connect(catalog.namespace, kubeconfig=str(kubeconfig))

    async def both() -> tuple[Any, Any, Any]:
        read = kube.read_namespace()
        assert kube.read_namespace() is read, "a second caller joins the read in flight"
        ingresses = await read.ingresses
        early = not read.services.done() and not read.snapshot.done()  # the probes start here
        traffic = (ingresses, await read.services)
        snap = await kube.snapshot()
        results = await probe_many(
            catalog, kube, [(n, service_status(catalog, n, snap).live) for n in catalog.services]
        )
        await kube.aclose()
        return traffic, early, (snap, results)

    first = next(iter(catalog.services))
    live = service_status(catalog, first, asyncio.run(kube.snapshot())).live
    k8s_view.apps.patch_namespaced_deployment_scale(
        catalog.deployment_name(first, live), catalog.namespace, {"spec": {"replicas": 0}}, _request_timeout=5
    )
    k8s_view.wait_settled()
    (ingresses, services), early, (snap, results) = asyncio.run(both())
    assert early, "the ingresses come alone, before the Services and the big lists"
    assert (ingresses, services) == (snap.ingresses, snap.services)
    for name, r in zip(catalog.services, results, strict=True):
        assert live_color(catalog, name, ingresses, services) == service_status(catalog, name, snap).live
        if name == first:  # no pod behind it: the proxy's 503 and its reason reach the user
            assert not r.ok and r.ran, r.summary
            assert r.summary.startswith(f"/health 503: no pods match selector app={first},color={live}"), (
                r.summary
            )
        else:
            assert r.ok and r.summary.startswith("/health 200 v1.0.0"), (name, r.summary)
    kube.close()
