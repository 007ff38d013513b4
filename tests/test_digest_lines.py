"""The digests' Backups, Restore drill and Locked users lines come from the same reads as
`/payflow backups` and `/payflow users locked`: the sandbox's backup Jobs and a real PostgreSQL."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.config.settings import Settings
from bot.domain.backups import finished, job_from_cronjob
from handlers.digest_lines import extra_lines
from sandbox.local import wait_until
from sandbox.payflow_db import PayflowDatabase
from tests.support.bot_server import BotServer


@pytest.fixture
def settings(settings: Settings, postgres_server: PayflowDatabase) -> Settings:
    return replace(settings, env={"DATABASE_URL": postgres_server.bot_dsn})


def _lines(bot: BotServer, kind: str) -> dict[str, tuple[str, str]]:
    figures = bot.call(extra_lines(bot.runtime.dispatcher.deps, kind), timeout=60)
    return {f.label: (f.value, f.verdict) for f in figures}


def test_daily_and_weekly_digests_say_backups_drill_and_locked_users(bot: BotServer, k8s_view) -> None:
    for kind in ("daily", "weekly"):
        lines = _lines(bot, kind)
        value, verdict = lines["Backups"]
        assert value.startswith("postgres fresh (") and "redis not configured" in value and verdict == "ok"
        assert lines["Restore drill"][1] == "ok" and "match" in lines["Restore drill"][0]
        assert lines["Locked users"] == ("7 locked out now (`/payflow users locked`)", "info")
    assert "Backups" not in _lines(bot, "monthly")


def test_a_stale_backup_turns_the_line_bad(bot: BotServer, cluster, k8s_view) -> None:
    catalog = bot.runtime.dispatcher.deps.catalog
    stale = catalog.model_copy(update={"backups": catalog.backups.model_copy(update={"max_age_hours": 1})})
    deps = replace(bot.runtime.dispatcher.deps, catalog=stale)
    figures = bot.call(extra_lines(deps, "daily"), timeout=60)
    [backups] = [f for f in figures if f.label == "Backups"]
    assert backups.verdict == "bad" and backups.value.startswith("postgres STALE or FAILED (")


def _drill_ran(cluster, name: str, log: str) -> None:
    """A finished restore-drill Job whose pod printed `log` (the sandbox's log annotation wins)."""
    cron = cluster.get("CronJob", "payflow", "restore-drill")
    job = job_from_cronjob(cron, name)
    annotations = {"sandbox.payflow.io/runtime-seconds": "0", "sandbox.payflow.io/log": log}
    job["spec"]["template"].setdefault("metadata", {}).setdefault("annotations", {}).update(annotations)
    cluster.create("Job", job, namespace="payflow")
    wait_until(lambda: finished(cluster.get("Job", "payflow", name)), 20, f"{name} to finish", poll=0.05)


@pytest.mark.parametrize(
    "log, said",
    [
        ("table=ledger_entries restored=10 production=12\ntable=wallets restored=3 production=3", "1 of 2"),
        ("restore-drill: restored, nothing compared", "no row counts"),
    ],
)
def test_a_drill_that_lies_or_compares_nothing_is_not_ok(
    bot: BotServer, cluster, k8s_view, log, said
) -> None:
    _drill_ran(cluster, "restore-drill-lying", log)
    value, verdict = _lines(bot, "weekly")["Restore drill"]
    assert said in value and verdict == "bad" and "match" not in value.replace("tables differ", "")


def test_a_drill_never_run_is_not_ok(bot: BotServer, cluster, k8s_view) -> None:
    cron = cluster.get("CronJob", "payflow", "restore-drill")
    for job in cluster.list("Job", "payflow"):
        if any(r["uid"] == cron["metadata"]["uid"] for r in job["metadata"].get("ownerReferences") or []):
            cluster.delete("Job", "payflow", job["metadata"]["name"])
    value, verdict = _lines(bot, "weekly")["Restore drill"]
    assert "never run" in value and verdict != "ok"
