"""The digest schedules' cron parser and the catalog's metrics sections."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from bot.base import durations
from bot.base.cron import Cron, CronError
from bot.config.catalog import CatalogError, parse_catalog

DEFAULT = Path(__file__).resolve().parent.parent / "bot" / "config" / "catalog.default.yaml"


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_daily_at_nine_in_a_timezone_follows_dst():
    cron = Cron.parse("0 9 * * *", "Europe/London")
    # 09:00 London is 08:00 UTC in summer and 09:00 UTC in winter
    assert cron.next_after(_utc(2026, 7, 1, 0, 0)) == _utc(2026, 7, 1, 8, 0)
    assert cron.next_after(_utc(2026, 12, 1, 9, 0)) == _utc(2026, 12, 2, 9, 0)


def test_slots_between_two_instants_are_half_open_and_ordered():
    cron = Cron.parse("*/15 * * * *")
    slots = cron.slots(_utc(2026, 1, 1, 10, 0), _utc(2026, 1, 1, 11, 0))
    assert slots == [_utc(2026, 1, 1, 10, m) for m in (15, 30, 45)] + [_utc(2026, 1, 1, 11, 0)]


def test_day_of_month_and_weekday_fire_on_either_like_vixie_cron():
    cron = Cron.parse("0 0 1 * mon")
    days = [s.date().isoformat() for s in cron.slots(_utc(2026, 6, 1, 0, 0), _utc(2026, 7, 1, 0, 0))]
    assert days == ["2026-06-08", "2026-06-15", "2026-06-22", "2026-06-29", "2026-07-01"]


def test_the_hour_skipped_in_spring_still_fires_and_the_repeated_hour_fires_once():
    cron = Cron.parse("30 1 * * *", "Europe/London")
    # 2026-03-29: 01:00 → 02:00 local; 01:30 does not exist and fires at 02:30 BST = 01:30 UTC
    assert cron.slots(_utc(2026, 3, 29, 0, 0), _utc(2026, 3, 30, 0, 0)) == [_utc(2026, 3, 29, 1, 30)]
    # 2026-10-25: 01:30 happens twice; once is enough
    assert len(cron.slots(_utc(2026, 10, 24, 23, 0), _utc(2026, 10, 25, 4, 0))) == 1


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 9 * *", "needs 5 fields"),
        ("60 * * * *", "minute: 60 is outside 0-59"),
        ("0 9 * * funday", "day of week: 'funday' is not a number or a name"),
        ("0 9 31 2 *", "never fires"),
        ("5-1 * * * *", "runs backwards"),
    ],
)
def test_bad_cron_expressions_say_what_is_wrong(expr, message):
    with pytest.raises(CronError, match=message):
        Cron.parse(expr)


def test_durations_round_trip_and_are_bounded():
    assert durations.seconds("15m") == 900
    assert durations.label(86400) == "1d"
    assert durations.label(5400) == "90m"
    with pytest.raises(durations.BadDuration):
        durations.bounded("999d", 60, 7 * 86400)
    with pytest.raises(durations.BadDuration):
        durations.seconds("abc")


def test_catalog_errors_in_the_metrics_sections_name_the_key():
    data = yaml.safe_load(DEFAULT.read_text())
    data["promql"]["templates"]["rps"] = "sum(rate(http_requests_total[{window}]))"
    data["promql"]["window"] = "soon"
    data["dependencies"]["postgres"] = {"check": "min(pg_up)", "probe": {"tcp": "postgres"}}
    data["digests"] = [
        {"name": "daily", "cron": "0 25 * * *"},
        {"name": "x", "cron": "0 9 * * *", "timezone": "Mars/Base"},
    ]
    with pytest.raises(CatalogError) as info:
        parse_catalog(data)
    problems = "\n".join(info.value.problems)
    assert "promql.templates: rps: needs {service}" in problems
    assert "promql.window: 'soon' is not a duration" in problems
    assert "dependencies.postgres.probe: tcp must be host:port" in problems
    assert "digests.0: cron '0 25 * * *': hour: 25 is outside 0-23" in problems
    assert "digests.1: cron '0 9 * * *': unknown timezone 'Mars/Base'" in problems


def test_the_built_in_catalog_has_the_guides_digests_and_dependencies():
    data = yaml.safe_load(DEFAULT.read_text())
    catalog = parse_catalog(data)
    assert [(d.name, d.kind, d.cron) for d in catalog.digests] == [
        ("daily-checklist", "health", "0 9 * * *"),
        ("hourly-errors", "errors", "0 * * * *"),
        ("weekly-review", "weekly", "0 9 * * 1"),  # the guide's weekly checklist, Mondays
        ("monthly-review", "monthly", "0 9 1 * *"),  # and its monthly one, on the 1st
    ]
    assert {n: d.check for n, d in catalog.dependencies.items()} == {
        "postgres": "min(pg_up)",
        "redis": "min(redis_up)",
        "rabbitmq": "min(rabbitmq_up)",
    }
    nine = catalog.digests[0].schedule.next_after(_utc(2026, 5, 1, 9, 0))
    assert nine - _utc(2026, 5, 1, 9, 0) == timedelta(days=1)
