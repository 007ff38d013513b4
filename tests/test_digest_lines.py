"""The digests' Backups, Restore drill and Locked users lines come from the same reads as
`/payflow backups` and `/payflow users locked`: the sandbox's backup Jobs and a real PostgreSQL."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.config.settings import Settings
from handlers.digest_lines import extra_lines
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
