"""The weekly and monthly reviews and the business figures, on a real Prometheus holding 31 days
of backfilled history: the live color moved from blue to green exactly a week before the review,
with other rates and (for auth-service) a broken version, so this week and last week differ.
Every figure is checked against what the sandbox's exact functions say it must be."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.chat.blocks import render
from bot.config.catalog import Catalog, load_catalog
from bot.config.settings import Settings
from bot.domain.gate.record import Change
from bot.domain.views import Figure, PeriodDigest, PeriodService
from bot.shell.runtime import build_runtime
from handlers.business_figures import business_figures
from handlers.digest import _parse
from handlers.digests_periodic import monthly_digest, weekly_digest
from handlers.metrics import availability_text, percent
from handlers.registry import Usage
from sandbox import business
from sandbox.prometheus import PrometheusServer, available
from sandbox.traffic import BAD, CPU_LIMIT_CORES, GOOD, MEMORY_LIMIT_BYTES, Stretch, history
from tests.support.bot_server import BotServer
from tests.support.prom import with_prometheus, without_digests
from tests.test_scale import _accounted, _texts, _within_slack_limits

DAY = 86_400
STEP = 1800.0
AT = (int(time.time()) // 3600 - 1) * 3600  # the review's instant: on the history's grid
LAST_WEEK = (  # blue, until the switch a week before AT
    Stretch("api-gateway", "blue", GOOD, rps=20.0),
    Stretch("wallet-service", "blue", BAD, rps=10.0),
    Stretch("auth-service", "blue", GOOD, rps=30.0),
)
THIS_WEEK = (  # green, from the switch on; transaction-service has no series at all
    Stretch("api-gateway", "green", GOOD, rps=25.0),
    Stretch("wallet-service", "green", BAD, rps=10.0),
    Stretch("auth-service", "green", BAD, rps=30.0, pods=2),
)
WALLET_RESTARTS = 4  # wallet-service's pod restarted this many times three days before AT


def _restarts_history() -> str:
    lines = ["# TYPE kube_pod_container_status_restarts counter\n"]
    labels = '{namespace="payflow",pod="wallet-service-green-0",container="wallet-service"}'
    t = AT - 7 * DAY
    while t <= AT:
        value = WALLET_RESTARTS if t >= AT - 3 * DAY else 0
        lines.append(f"kube_pod_container_status_restarts_total{labels} {value} {t:.3f}\n")
        t += STEP
    return "".join(lines) + "# EOF\n"


@pytest.fixture(scope="module")
def review_prometheus() -> Iterator[PrometheusServer]:
    if not available():
        pytest.skip("no prometheus binary")
    server = PrometheusServer(retention="60d")
    switch = AT - 7 * DAY
    server.backfill(history(LAST_WEEK, AT - 31 * DAY, switch, STEP))
    server.backfill(history(THIS_WEEK, switch, AT + 3600, STEP, with_business=True))
    server.backfill(_restarts_history())
    server.start()
    yield server
    server.close()


@pytest.fixture
def catalog(catalog: Catalog) -> Catalog:
    return without_digests(catalog)


@pytest.fixture
def settings(settings: Settings, review_prometheus: PrometheusServer) -> Settings:
    return with_prometheus(settings, review_prometheus.url)


def _at() -> datetime:
    return datetime.fromtimestamp(AT, UTC)


def _figures(view: PeriodDigest, service: str) -> dict[str, str]:
    [row] = [s for s in view.services if s.name == service]
    return {f.label: f.value for f in row.figures}


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def test_the_weekly_review_compares_this_week_with_last_week(bot: BotServer):
    deps = bot.runtime.dispatcher.deps
    view = bot.call(weekly_digest(deps, "1h", "PayFlow weekly review · production", at=_at()), timeout=30)

    api = _figures(view, "api-gateway")
    assert api["requests"] == "25.0/s (last week 20.0/s, +25 %)"
    assert api["error rate"] == f"{percent(GOOD.error_ratio)} (last week {percent(GOOD.error_ratio)})"
    assert api["p95"] == f"{_ms(GOOD.quantile(0.95))} (last week {_ms(GOOD.quantile(0.95))})"
    good = availability_text(1 - GOOD.error_ratio)
    assert api["availability"] == f"{good} (last week {good})"
    assert api["CPU peak"] == f"{GOOD.cpu_cores / CPU_LIMIT_CORES * 100:.0f} %"
    assert api["mem peak"] == f"{GOOD.memory_bytes / MEMORY_LIMIT_BYTES * 100:.0f} %"
    assert api["restarts"] == "0"  # Prometheus has the series for others: none here
    assert api["replicas"] == "3/3 (max 20)"

    auth = _figures(view, "auth-service")  # healthy last week, broken this week
    assert auth["error rate"] == f"{percent(BAD.error_ratio)} (last week {percent(GOOD.error_ratio)})"
    assert auth["p95"] == f"{_ms(BAD.quantile(0.95))} (last week {_ms(GOOD.quantile(0.95))})"
    assert auth["requests"] == "30.0/s (last week 30.0/s, +0 %)"
    assert auth["CPU peak"] == f"{BAD.cpu_cores / CPU_LIMIT_CORES * 100:.0f} %"

    assert _figures(view, "wallet-service")["restarts"] == str(WALLET_RESTARTS)
    tx = _figures(view, "transaction-service")
    assert tx["requests"] == "no data" and tx["availability"] == "no data" and tx["CPU peak"] == "no data"
    assert [s.name for s in view.services][:2] == ["auth-service", "wallet-service"]  # worst first
    assert view.verdict == "bad" and not view.unavailable
    assert "restarts: kube_pod_container_status_restarts_total over the week" in view.notes

    message = render(view)
    body = "\n".join(_texts(message))
    assert body.startswith("PayFlow weekly review · production\n🔴 *Needs attention* — ")
    assert "*Changes* 0 deployed, 0 rolled back this week" in body


def test_the_monthly_review_spends_the_error_budget(bot: BotServer):
    deps = bot.runtime.dispatcher.deps
    now = datetime.now(UTC)

    async def records() -> None:
        for i, (service, kind) in enumerate((("api-gateway", "deploy"), ("api-gateway", "rollback"))):
            change = Change(
                f"chg-0000000{i}", kind, service, "blue", "green", None, f"img:v{i}", 3, "U1", "r", "#c",
                state="done", switched_at=(now - timedelta(days=3)).isoformat(),
            )  # fmt: skip
            await deps.store.create(change.key, change.to_record())
        old = Change(
            "chg-00000009", "deploy", "auth-service", "blue", "green", None, "img:v9", 3, "U", "r", "#c",
            state="done", switched_at=(now - timedelta(days=40)).isoformat(),
        )  # fmt: skip
        await deps.store.create(old.key, old.to_record())
        started = (now - timedelta(days=2)).isoformat()
        await deps.store.put(
            "alertgroup:abc",
            {"service": "wallet-service", "states": {"fp1": ["firing", started, "HighErrorRate"]}},
        )

    bot.call(records())
    view = bot.call(monthly_digest(deps, "PayFlow monthly review · production", at=now), timeout=30)

    api = _figures(view, "api-gateway")
    assert api["availability"] == availability_text(1 - GOOD.error_ratio)  # same version all month
    assert api["error budget"] == f"{GOOD.error_ratio / 0.001 * 100:.0f} % spent"
    assert api["changes"] == "1 deployed, 1 rolled back"
    wallet = _figures(view, "wallet-service")
    assert wallet["availability"] == availability_text(1 - BAD.error_ratio)
    assert wallet["incidents"] == "1"
    assert _figures(view, "auth-service")["changes"] == "0 deployed, 0 rolled back"  # 40 days ago

    # auth-service: 23 days healthy, then 7 broken, at the same 30 rps
    auth = _figures(view, "auth-service")["availability"]
    errors = (23 * GOOD.error_ratio + 7 * BAD.error_ratio) / 30
    assert float(auth.rstrip(" %")) == pytest.approx((1 - errors) * 100, rel=2e-3)
    summary = {f.label: f.value for f in view.summary}
    assert summary["Changes"] == "1 deployed, 1 rolled back in 30 days across 1 service(s)"
    assert summary["Incidents"] == "1 alert group(s) started in the last 30 days"
    assert _figures(view, "transaction-service")["error budget"] == "no data"


def test_business_figures_day_over_day(bot: BotServer):
    prom = bot.runtime.dispatcher.deps.prom
    figures = {f.label: f.value for f in bot.call(business_figures(prom, "1d", at=_at()))}

    def completed(end: float) -> float:
        return business.transactions_between(end - DAY, end) * (1 - business.FAILED_SHARE)

    today, yesterday = completed(AT), completed(AT - DAY)
    change = (today - yesterday) / yesterday * 100
    assert figures["transactions"] == f"{today:,.0f} ({change:+.1f} % on the day before)"
    value = today * business.AVERAGE_TICKET_EUR
    assert figures["value"] == f"{value:,.0f} EUR ({change:+.1f} % on the day before)"
    grid = [AT - DAY + i * STEP for i in range(int(DAY / STEP) + 1)]
    users = max(business.active_users(t) for t in grid)
    before = max(business.active_users(t - DAY) for t in grid)
    assert (
        figures["active users"]
        == f"{users:,.0f} ({(users - before) / before * 100:+.1f} % on the day before)"
    )


def test_business_without_data_or_templates_says_so_plainly(bot: BotServer):
    prom = bot.runtime.dispatcher.deps.prom
    catalog = prom.catalog
    try:
        prom.catalog = catalog.model_copy(
            update={
                "business": catalog.business.model_copy(
                    update={"transactions": "sum(increase(nope_total[{window}]))", "active_users": ""}
                )
            }
        )
        figures = bot.call(business_figures(prom, "1d", at=_at()))
        prom.catalog = catalog.model_copy(
            update={
                "business": catalog.business.model_copy(
                    update={"transactions": "", "transaction_value": "", "active_users": ""}
                )
            }
        )
        none = bot.call(business_figures(prom, "1d", at=_at()))
    finally:
        prom.catalog = catalog
    assert [f.label for f in figures] == ["transactions", "value"]  # active users: empty, not shown
    assert figures[0] == Figure("transactions", "no data", "", "info")
    assert none == ()


def test_with_prometheus_down_the_reviews_say_what_is_unavailable(settings, catalog, k8s_view):
    server = PrometheusServer()
    url = server.url  # nothing listens there
    runtime_bot = BotServer(build_runtime(replace(settings, prometheus_url=url), catalog)).start()
    try:
        deps = runtime_bot.runtime.dispatcher.deps
        weekly = runtime_bot.call(weekly_digest(deps, "1h", "weekly"), timeout=30)
        monthly = runtime_bot.call(monthly_digest(deps, "monthly"), timeout=30)
    finally:
        runtime_bot.stop()
        server.close()
    assert any(u.startswith("requests: Prometheus unreachable") for u in weekly.unavailable)
    assert _figures(weekly, "api-gateway")["requests"] == "—"
    assert _figures(weekly, "api-gateway")["replicas"] == "3/3 (max 20)"  # Kubernetes still answers
    assert weekly.verdict != "ok" and monthly.verdict != "ok"
    assert any(u.startswith("availability: Prometheus unreachable") for u in monthly.unavailable)
    body = "\n".join(_texts(render(weekly)))
    assert "❔ unavailable — requests: Prometheus unreachable" in body


def test_digest_now_takes_a_kind():
    catalog = without_digests(load_catalog())
    assert _parse([], catalog).now is False
    assert _parse(["now"], catalog).kind == "daily"
    assert _parse(["now", "Weekly"], catalog).kind == "weekly"
    assert _parse(["now", "monthly"], catalog).kind == "monthly"
    with pytest.raises(Usage, match="not a digest: say daily, weekly or monthly"):
        _parse(["now", "yearly"], catalog)
    with pytest.raises(Usage, match="is not understood here"):
        _parse(["weekly"], catalog)


def test_a_weekly_review_of_a_thousand_services_fits_and_keeps_its_verdict():
    names = [f"svc-{i:04d}" for i in range(1000)]
    rows = tuple(
        PeriodService(
            n,
            "bad" if i % 4 == 0 else "ok",
            (
                Figure("requests", "25.0/s (last week 20.0/s, +25 %)", "", "info"),
                Figure("error rate", "60.0 % (last week 0.05 %)" if i % 4 == 0 else "0.05 %", "", "ok"),
                Figure("p95", "120 ms (last week 118 ms)"),
                Figure("CPU peak", "24 %"),
                Figure("changes", "1 deployed, 0 rolled back", "", "info"),
            ),
        )
        for i, n in enumerate(names)
    )
    view = PeriodDigest(
        "PayFlow weekly review · production",
        "weekly",
        "7d",
        rows,
        (Figure("Changes", "250 deployed, 3 rolled back this week", "", "warn"),),
        ("CPU and memory: the highest 1h average of the week against the limits",),
        ("p95: Prometheus answered 503",),
    )
    message = render(view)
    _within_slack_limits(message)
    _, counted, _ = _accounted(message, names)
    body = "\n".join(_texts(message))
    assert body.startswith(
        "PayFlow weekly review · production\n🔴 *Needs attention* — 250 of 1000 service(s)"
    )
    assert "⚠️ *Changes* 250 deployed, 3 rolled back this week" in body
    assert "❔ unavailable — p95: Prometheus answered 503" in body
    assert counted["all good"] == 750
    assert re.search(r"the full table of all 1000 is in the file `payflow-weekly.tsv`", body)
