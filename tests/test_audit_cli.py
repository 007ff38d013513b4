"""`payflow-bot audit verify | export | trim` as an operator or a CronJob runs them: the real CLI
in a subprocess against a private redis-server, the trail tampered with by plain Redis commands."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from bot.config.settings import Settings
from bot.gateways.store import AuditEntry, RedisStore, chain_hash
from bot.shell.runtime import build_runtime
from sandbox.local import ROOT, wait_until
from sandbox.slack_api import SlackApiStub
from sandbox.slack_requests import SlackRequests
from tests.conftest import SIGNING_SECRET
from tests.support.bot_server import BotServer
from tests.support.chat import Chat
from tests.support.redis_server import RedisServer

STREAM = "payflow:audit"


def cli(*args: str, redis_url: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    if redis_url:
        env["REDIS_URL"] = redis_url
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "bot.shell.cli", "audit", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def fill(url: str, n: int) -> list[str]:
    async def main() -> list[str]:
        async with RedisStore(url) as store:
            return [
                await store.append_audit(AuditEntry(f"U{i}", "scale", "ok", target="api", detail=f"to {i}"))
                for i in range(n)
            ]

    return asyncio.run(main())


@pytest.fixture
def url(redis_server: RedisServer) -> str:
    redis_server.flush()
    return redis_server.url


def test_verify_passes_on_an_intact_trail(url: str) -> None:
    fill(url, 5)
    result = cli("verify", redis_url=url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "audit trail ok: 5 entries, #1–#5, chain intact"


def test_verify_names_the_entry_edited_in_redis(url: str, redis_server: RedisServer) -> None:
    ids = fill(url, 5)
    client = redis_server.client()
    entries = client.xrange(STREAM)
    entries[3][1]["detail"] = "to 99"  # rewrite the stream with one entry changed, same ids
    client.delete(STREAM)
    for entry_id, fields in entries:
        client.xadd(STREAM, fields, id=entry_id)
    result = cli("verify", redis_url=url)
    assert result.returncode == 1
    assert result.stdout.strip() == (
        f"audit trail BROKEN at entry {ids[3]}: its content does not match its hash: it was altered"
    )


def test_verify_finds_an_entry_deleted_from_the_middle(url: str, redis_server: RedisServer) -> None:
    ids = fill(url, 5)
    assert redis_server.client().xdel(STREAM, ids[1]) == 1
    result = cli("verify", redis_url=url)
    assert result.returncode == 1
    assert f"BROKEN at entry {ids[2]}: 1 entry before it (#2) are missing: deleted" in result.stdout


def test_export_then_trim_then_verify(url: str, tmp_path: Path, redis_server: RedisServer) -> None:
    ids = fill(url, 6)
    out = tmp_path / "audit.jsonl"
    result = cli("export", "--out", str(out), redis_url=url)
    assert result.returncode == 0, result.stderr
    assert f"exported 6 entries; exported up to {ids[-1]}" in result.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == ids
    for line in lines:  # a log pipeline can check each line on its own
        assert chain_hash({k: v for k, v in line.items() if k != "id"}) == line["hash"]
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(lines))

    # nothing is older than the window yet: nothing goes
    assert cli("trim", "--keep", "90d", redis_url=url).stdout.strip() == (
        "trimmed 0 exported entries older than 90d"
    )
    fill(url, 2)  # two more, not exported: they must survive any trim
    # a window of one second: wait until the exported entries (stream ids are ms) are older than it
    newest_ms = int(ids[-1].split("-")[0])
    wait_until(lambda: time.time() * 1000 - newest_ms > 1100, 10, "the exported entries to age")
    result = cli("trim", "--keep", "1s", redis_url=url)
    assert result.stdout.strip() == "trimmed 6 exported entries older than 1s"
    assert redis_server.client().xlen(STREAM) == 2
    result = cli("verify", redis_url=url)
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip() == "audit trail ok: 2 entries, #7–#8, chain intact"

    # the next export continues from the watermark
    result = cli("export", redis_url=url)
    assert [json.loads(line)["seq"] for line in result.stdout.splitlines()] == ["7", "8"]


def test_export_since_a_time_and_bad_input(url: str) -> None:
    fill(url, 3)
    result = cli("export", "--since", "1h", "--no-mark", redis_url=url)
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 3
    assert result.stderr.strip() == "exported 3 entries"
    result = cli("export", "--since", "2999-01-01T00:00", redis_url=url)
    assert result.returncode == 0 and result.stdout == ""
    for bad in (["export", "--since", "yesterday"], ["trim", "--keep", "forever"], ["frobnicate"]):
        result = cli(*bad, redis_url=url)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr and "usage: payflow-bot audit" in result.stderr


def test_altered_chain_metadata_and_unwritable_export(url: str, redis_server: RedisServer) -> None:
    fill(url, 2)
    redis_server.client().hset("payflow:audit:chain", "tip_seq", "two")
    result = cli("verify", redis_url=url)
    assert result.returncode == 1 and "chain's metadata" in result.stdout
    result = cli("export", "--out", "/nonexistent-dir/audit.jsonl", redis_url=url)
    assert result.returncode == 2 and "cannot write the export" in result.stderr
    assert "Traceback" not in result.stderr


def test_without_redis_it_says_so() -> None:
    result = cli("verify", redis_url=None)
    assert result.returncode == 2
    assert "REDIS_URL is not set" in result.stderr and "Traceback" not in result.stderr


def test_unreachable_redis_is_named_not_a_traceback(tmp_path: Path) -> None:
    from sandbox.local import free_port

    result = cli("verify", redis_url=f"redis://:hunter2secret@127.0.0.1:{free_port()}/0")
    assert result.returncode == 2
    assert "store is unreachable" in result.stderr
    assert "hunter2secret" not in result.stderr and "Traceback" not in result.stderr


def test_each_entry_goes_to_stdout_as_it_is_written(
    settings: Settings, catalog, slack: SlackApiStub, k8s_view, capfd: pytest.CaptureFixture[str]
) -> None:
    bot = BotServer(build_runtime(replace(settings, audit_stdout=True), catalog)).start()
    try:
        chat = Chat(bot, slack, SlackRequests(SIGNING_SECRET, response_url=slack.response_url("cmd")))
        chat.run("status")
    finally:
        bot.stop()
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    assert [(d["action"], d["outcome"], d["seq"]) for d in lines] == [("status", "ok", "1")]
    [stored] = asyncio.run(_read(settings.redis_url))
    assert lines[0]["id"] == stored.id and lines[0]["hash"] == stored.hash


async def _read(url: str | None) -> list[AuditEntry]:
    assert url
    async with RedisStore(url) as store:
        return await store.audit()
