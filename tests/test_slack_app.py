"""The Slack app as users meet it: the manifest's usage hint names every command, and a chart
shared into a channel the bot has not joined fails with what to do, not Slack's error code."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from handlers import COMMANDS
from tests.support.prom import history_prometheus  # noqa: F401
from tests.test_metrics_commands import catalog, settings  # noqa: F401  (Prometheus-backed bot)

ROOT = Path(__file__).resolve().parents[1]


def test_usage_hint_lists_every_command():
    manifest = yaml.safe_load((ROOT / "deploy" / "slack-app-manifest.yaml").read_text())
    [command] = manifest["features"]["slash_commands"]
    hint = command["usage_hint"]
    named = {part.split()[0] for part in hint.split("|")}
    families = {name.split()[0] for name in COMMANDS}
    assert named == families, f"missing {sorted(families - named)}, unknown {sorted(named - families)}"
    assert len(hint) <= 1000  # Slack's limit for the field


def test_readme_says_files_need_the_bot_in_the_channel():
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"chat:write\.public.{0,200}not.{0,40}files", readme, re.S)


def test_a_chart_in_a_channel_the_bot_has_not_joined_says_what_to_do(chat, slack):
    slack.fail_next("files.completeUploadExternal", error="not_in_channel")
    answer = chat.run("metrics api-gateway 1h")

    assert "✅ error rate" in str(answer.posts)  # the figures still arrive, only the chart is missing
    # the chart's figures come as a table, with what to do instead of Slack's error code
    [table] = [p for p in answer.posts if "could not be uploaded" in str(p)]
    told = str(table)
    assert "only in channels the bot is a member of" in told
    assert "/invite @payflow-bot" in told
    assert "not_in_channel" not in told  # Slack's code is for logs, not for people
    [complete] = slack.calls_to("files.completeUploadExternal")
    assert complete.response["error"] == "not_in_channel"
    assert slack.uploads  # the bytes went up; Slack refused to share them
