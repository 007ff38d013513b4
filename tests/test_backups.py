"""Backups from chat (issue 14), through the served bot against the sandbox's job controller and a
private redis-server: a backup Job made from the CronJob as kubectl makes it and followed in ONE
message, its failure with exit code and log lines, one run at a time, the backups table with a
stale and a failed run, ConfigMaps as a redacted file with no Secret ever requested, the restore
drill's verdict in the audit channel, BGSAVE and its failure, roles and bad input."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from bot.config.settings import Settings
from bot.domain.backups import drill_rows, job_from_cronjob
from bot.shell.runtime import build_runtime
from sandbox.apiserver.http import RequestRecord
from sandbox.cluster import Cluster
from sandbox.k8s_api import SandboxServer
from sandbox.local import wait_until
from tests.support.bot_server import BotServer
from tests.support.chat import Chat
from tests.support.redis_server import RedisServer

NS = "payflow"
OPS = "C0PAYFLOWOPS"


@pytest.fixture
def seen() -> list[RequestRecord]:
    return []


@pytest.fixture
def sandbox(cluster: Cluster, tmp_path: Path, seen: list[RequestRecord]) -> Iterator[SandboxServer]:
    server = SandboxServer(cluster, record=seen).start()  # every API request the bot makes
    server.write_kubeconfig(tmp_path / "kubeconfig")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def payflow_redis() -> Iterator[RedisServer]:
    with RedisServer(extra_args=["--enable-protected-configs", "yes"]) as server:
        yield server


@pytest.fixture
def settings(settings: Settings, payflow_redis: RedisServer) -> Settings:
    return replace(settings, env={"PAYFLOW_REDIS_URL": payflow_redis.url})


def _jobs(cluster: Cluster, cronjob: str = "postgres-backup") -> list[dict[str, Any]]:
    return [
        j
        for j in cluster.list("Job", NS)
        if any(r["name"] == cronjob for r in j["metadata"].get("ownerReferences") or [])
    ]


def _final(chat: Chat, marker: str, channel: str = OPS) -> Any:
    return chat.slack.wait_for(
        lambda s: next((m for m in s.messages(channel) if marker in m.text), None), timeout=30
    )


def _blocks_text(message: Any) -> str:
    return json.dumps(message.blocks, ensure_ascii=False) + message.text


def _updates_of(chat: Chat, ts: str) -> int:
    return sum(1 for c in chat.slack.calls_to("chat.update") if c.params.get("ts") == ts)


def _wait_audit(chat: Chat, action: str, outcome: str) -> Any:
    """The follow's outcome entry (not the request's "… created from cronjob/…"), written after
    its last Slack call: polled, with a deadline."""

    def found() -> Any:
        entries = chat.audit()
        return next(
            (
                e
                for e in entries
                if (e.action, e.outcome) == (action, outcome) and "created from" not in e.detail
            ),
            None,
        )

    return wait_until(
        found,
        30,
        f"audit entry {action} {outcome}",
        poll=0.1,
    )


def test_backup_postgres_runs_a_job_from_the_cronjob_and_follows_it_in_one_message(chat, cluster, k8s_view):
    before = {j["metadata"]["name"] for j in _jobs(cluster)}
    posts_before = len(chat.slack.calls_to("chat.postMessage"))
    chat.run("backup postgres", user="alice")
    done = _final(chat, "PostgreSQL backup done")

    [job] = [j for j in _jobs(cluster) if j["metadata"]["name"] not in before]
    md = job["metadata"]
    assert md["name"].startswith("postgres-backup-manual-") and len(md["name"]) <= 63
    assert md["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    cron = cluster.get("CronJob", NS, "postgres-backup")
    [owner] = md["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("CronJob", cron["metadata"]["uid"], True)
    template = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert job["spec"]["template"]["spec"]["containers"] == template

    text = _blocks_text(done)
    size = int(md["annotations"]["backup.payflow.io/size-bytes"])
    assert f"`{md['name']}`" in text and " GiB" in text and "<@U0ALICE>" in text and size > 0
    assert md["annotations"]["backup.payflow.io/location"] in text
    # one message, updated in place: one post, its updates, and the last state is the result
    assert len(chat.slack.calls_to("chat.postMessage")) == posts_before + 1
    assert _updates_of(chat, done.ts) >= 1
    assert [m for m in chat.messages(OPS) if "backup" in m.text.lower()] == [done]
    request = next(e for e in chat.audit() if e.action == "backup postgres" and "created" in e.detail)
    assert request.outcome == "ok" and md["name"] in request.detail
    outcome = _wait_audit(chat, "backup postgres", "ok")
    assert "complete" in outcome.detail and outcome.detail != request.detail


def test_a_failed_backup_says_why_with_exit_code_and_log_lines(chat, cluster, k8s_view):
    log = "\n".join(f"pg_dump: step {i}" for i in range(12)) + "\npg_dump: error: password=hunter2 rejected"
    cluster.fail_next_run(NS, "postgres-backup", exit_code=2, log=log)
    chat.run("backup postgres")
    failed = _final(chat, "PostgreSQL backup failed")
    text = _blocks_text(failed)
    assert "BackoffLimitExceeded" in text and "exit code 2" in text and "Error" in text
    assert "pg_dump: error: password=[REDACTED] rejected" in text and "hunter2" not in text
    assert "pg_dump: step 3" in text and "pg_dump: step 2" not in text  # the last 10 lines only
    entry = _wait_audit(chat, "backup postgres", "failed")
    assert "exit code 2" in entry.detail


def test_one_backup_at_a_time(chat, cluster, k8s_view):
    chat.run("backup postgres", user="alice")
    [mine] = [j for j in _jobs(cluster) if "manual" in j["metadata"]["name"]]
    count = len(_jobs(cluster))
    answer = chat.run("backup postgres", user="carol")  # while alice's runs: the store's lock
    said = f"started by <@U0ALICE> (Job `{mine['metadata']['name']}`) is still running"
    assert said in answer.all_text() and "Nothing was started" in answer.all_text()
    assert len(_jobs(cluster)) == count
    _final(chat, "PostgreSQL backup done")
    _wait_audit(chat, "backup postgres", "ok")  # the follow has let go of the lock

    # a run the bot did not start (the schedule's, kubectl's): the cluster is asked
    cron = cluster.get("CronJob", NS, "postgres-backup")
    cluster.create("Job", job_from_cronjob(cron, "postgres-backup-29400000"), namespace=NS)
    answer = chat.run("backup postgres", user="carol")
    assert "`postgres-backup-29400000` (PostgreSQL backup) is still running" in answer.all_text()
    manual = [j["metadata"]["name"] for j in _jobs(cluster) if "manual" in j["metadata"]["name"]]
    assert manual == [mine["metadata"]["name"]]  # nothing new (older history is trimmed as it finishes)
    refused = [e for e in chat.audit() if e.action == "backup postgres" and e.outcome == "refused"]
    assert len(refused) == 2


def test_backups_table_is_fresh_then_stale_then_shows_a_failure(chat, cluster, k8s_view, payflow_redis):
    payflow_redis.client().bgsave()
    answer = chat.run("backups", user="dave")
    text = answer.all_text()
    assert "✅ Backups" in text and "10 h" in text and "on demand" in text
    assert "✅ Restore drill: all 6 tables match" in text
    assert "failed" not in text  # the failure 82 h ago is older than the last success

    good = sorted(
        (j for j in _jobs(cluster) if j["status"].get("succeeded")), key=lambda j: j["status"]["startTime"]
    )
    for job in good[1:]:  # the runs of 10 h and 34 h ago go: the last success is 58 h old
        cluster.delete("Job", NS, job["metadata"]["name"])
    text = chat.run("backups").all_text()
    assert "⚠️ Backups" in text and "58 h" in text and "🔴" in text

    cluster.fail_next_run(NS, "postgres-backup", exit_code=1, log="pg_dump: error: connection refused")
    chat.run("backup postgres")
    _final(chat, "PostgreSQL backup failed")
    text = chat.run("backups").all_text()
    assert "Last PostgreSQL backup `postgres-backup-manual-" in text
    assert "BackoffLimitExceeded" in text and "exit code 1" in text and "connection refused" in text


def test_backup_config_posts_redacted_config_maps_and_never_asks_for_secrets(chat, k8s_view, seen, slack):
    answer = chat.run("backup config")
    text = answer.all_text()
    assert "Secrets are not backed up from chat" in text and "`legacy-reconciliation`" in text
    [content] = slack.uploads.values()
    body = content.decode()
    doc = yaml.safe_load(body)
    names = {item["metadata"]["name"] for item in doc["items"]}
    assert {"payflow-config", "wallet-service-settlement", "legacy-reconciliation"} <= names
    assert "Payfl0w-Recon-2023!" not in body and "4111 1111 1111 1111" not in body
    legacy = next(i for i in doc["items"] if i["metadata"]["name"] == "legacy-reconciliation")
    assert legacy["data"]["DB_PASSWORD"] == "[REDACTED]" and legacy["data"]["DB_USER"] == "reconciler"
    assert all("uid" not in i["metadata"] and "resourceVersion" not in i["metadata"] for i in doc["items"])
    assert ("list", "", "configmaps", "", NS) in seen
    assert not [r for r in seen if r.resource == "secrets"]


def test_the_restore_drill_goes_to_the_audit_channel(chat, cluster, k8s_view):
    answer = chat.run("backup drill", user="alice")  # an operator is not enough
    assert "approver" in answer.all_text() and not [
        j for j in _jobs(cluster, "restore-drill") if "manual" in j["metadata"]["name"]
    ]
    chat.run("backup drill", user="bob")
    here = _final(chat, "Restore drill: all 6 tables match")
    there = _final(chat, "Restore drill: all 6 tables match", channel="#payflow-audit")
    for message in (here, there):
        text = _blocks_text(message)
        assert "ledger_entries" in text and "s3://payflow-backups/postgres/" in text
    _wait_audit(chat, "backup drill", "ok")


def test_backup_redis_waits_for_lastsave_and_reports_a_failed_save(chat, payflow_redis, k8s_view):
    client: redis.Redis = payflow_redis.client()
    client.set("payflow:probe", "1")
    before = client.lastsave()
    answer = chat.run("backup redis")
    assert "✅ Redis snapshot written" in answer.all_text()
    assert client.info("persistence")["rdb_changes_since_last_save"] == 0 and client.lastsave() >= before

    gone = tempfile.mkdtemp(prefix="payflow-redis-gone-")
    client.config_set("dir", gone)
    os.rmdir(gone)  # the child cannot create its temp file: BGSAVE fails even for root
    try:
        client.set("payflow:probe", "2")
        answer = chat.run("backup redis")
        text = answer.all_text()
        assert "⛔ Redis snapshot failed" in text and "`err`" in text
        entry = chat.audit()[0]  # newest first
        assert (entry.action, entry.outcome) == ("backup redis", "failed")
    finally:
        client.config_set("dir", str(payflow_redis.log_path.parent))
    client.bgsave()
    text = chat.run("backups").all_text()
    assert "last BGSAVE" in text


def test_roles_and_bad_input_change_nothing(chat, cluster, k8s_view, seen):
    count = len(cluster.list("Job", NS))
    for text, user, said in [
        ("backup postgres", "dave", "operator"),
        ("backup config", "dave", "operator"),
        ("backup redis", "dave", "operator"),
        ("backup drill", "alice", "approver"),
        ("backup nope", "carol", "`backup` needs a subcommand"),
        ("backup", "carol", "`backup postgres`"),
        ("backup postgres now", "carol", "Too many arguments: `now`"),
        ("backups all", "carol", "Too many arguments: `all`"),
    ]:
        answer = chat.run(text, user=user)
        assert said in answer.all_text(), (text, answer.all_text())
    assert len(cluster.list("Job", NS)) == count
    assert not [r for r in seen if r.verb == "create"]


def test_drill_lines_are_parsed_and_a_mismatch_is_seen():
    log = "restore-drill: comparing\ntable=ledger restored=10 production=12\n"
    log += "table=wallets restored=3 production=3\n"
    rows = drill_rows(log + "table=broken restored=x production=1\n")
    assert [(r.table, r.matches) for r in rows] == [("ledger", False), ("wallets", True)]


# --- the follow survives its worker ----------------------------------------------------------


def _slow_backups(cluster: Cluster, seconds: float) -> None:
    """The next backups run `seconds` (the sandbox reads it from the pod template's annotations)."""
    annotations = {"sandbox.payflow.io/runtime-seconds": f"{seconds:g}"}
    patch = {"spec": {"jobTemplate": {"spec": {"template": {"metadata": {"annotations": annotations}}}}}}
    cluster.patch("CronJob", NS, "postgres-backup", patch)


@pytest.fixture
def replicas(settings: Settings, catalog: Any, k8s_view: Any, bot: BotServer) -> Iterator[Any]:
    """Bot replicas on demand, on the same Redis and cluster, with a one-second lease."""
    bot.stop()
    env = catalog.env.model_copy(update={"lease_seconds": 1.0})
    fast = catalog.model_copy(update={"environments": {catalog.environment: env}})
    started: list[BotServer] = []

    def start() -> BotServer:
        server = BotServer(build_runtime(settings, fast)).start()
        started.append(server)
        return server

    yield start
    for server in started:
        if server._thread.is_alive():
            server.stop()


def _follow_outcomes(chat: Chat) -> list[str]:
    return [
        e.outcome for e in chat.audit() if e.action == "backup postgres" and "created from" not in e.detail
    ]


def test_a_follow_whose_worker_died_is_resumed_and_its_message_ends_once(chat, cluster, replicas):
    _slow_backups(cluster, 5)
    a = replicas()
    chat.bot = a
    chat.run("backup postgres", user="alice")
    running = chat.slack.wait_for(
        lambda s: next((m for m in s.messages(OPS) if "` running · " in m.text), None), timeout=20
    )
    a.stop()  # the worker goes away mid-follow: its task is cancelled, its lease left to expire
    b, c = replicas(), replicas()  # two sweeping replicas: exactly one takes the follow over
    chat.bot = b
    done = _final(chat, "PostgreSQL backup done")
    assert done.ts == running.ts  # the same message ends with the truth
    _wait_audit(chat, "backup postgres", "ok")
    assert _follow_outcomes(chat) == ["ok"]  # the cancelled follow wrote no "running"
    finals = [
        call
        for call in chat.slack.calls_to("chat.update")
        if call.params.get("ts") == running.ts and "PostgreSQL backup done" in str(call.params.get("text"))
    ]
    assert len(finals) == 1
    assert b.call(b.runtime.store.get("backup:postgres-backup")) is None  # the lock is released
    assert [m for m in chat.messages(OPS) if "backup" in m.text.lower()] == [done]
    del c


def test_slack_refusing_the_updates_still_lands_the_result(chat, cluster, k8s_view, slack):
    _slow_backups(cluster, 2)
    slack.fail_next("chat.update", status=500, times=2)  # retried by the gateway, within its deadline
    slack.fail_next("chat.update", error="cant_update_message", times=50)  # never taken
    chat.run("backup postgres", user="alice")
    done = _final(chat, "PostgreSQL backup done")
    assert "started the PostgreSQL backup" not in done.text  # a new message carries the result
    assert _wait_audit(chat, "backup postgres", "ok")
    assert chat.bot.call(chat.bot.runtime.store.get("backup:postgres-backup")) is None


def test_a_job_deleted_mid_follow_is_said_and_frees_the_lock(chat, cluster, k8s_view):
    _slow_backups(cluster, 30)
    chat.run("backup postgres", user="alice")
    [mine] = [j["metadata"]["name"] for j in _jobs(cluster) if "manual" in j["metadata"]["name"]]
    cluster.delete("Job", NS, mine)
    gone = _final(chat, "was deleted before it finished")
    assert f"`{mine}`" in gone.text
    _wait_audit(chat, "backup postgres", "failed")
    assert chat.bot.call(chat.bot.runtime.store.get("backup:postgres-backup")) is None


def test_two_replicas_asked_at_the_same_instant_make_one_job(chat, cluster, replicas):
    import threading

    a, b = replicas(), replicas()
    before = len(_jobs(cluster))
    answers: dict[str, Any] = {}

    def ask(server: BotServer, user: str) -> None:
        chat_of = Chat(server, chat.slack, chat.requests)
        answers[user] = chat_of.send("backup postgres", user=user)

    threads = [threading.Thread(target=ask, args=(s, u)) for s, u in ((a, "alice"), (b, "carol"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a.idle()
    b.idle()
    assert len(_jobs(cluster)) == before + 1
    chat.bot = a
    _wait_audit(chat, "backup postgres", "ok")
    refused = [e for e in chat.audit() if e.action == "backup postgres" and e.outcome == "refused"]
    assert len(refused) == 1


def _config_map(name: str, data: dict[str, str] | None = None, binary: dict[str, str] | None = None) -> Any:
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
    if data is not None:
        body["data"] = data
    if binary is not None:
        body["binaryData"] = binary
    return body


def test_backup_config_redacts_hostile_values_and_never_posts_binary_data(
    chat, cluster, k8s_view, seen, slack
):
    import base64

    key = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7" for _ in range(5)
    )
    key += "\n-----END PRIVATE KEY-----\n"
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
    hidden = base64.b64encode(b"password=hunter2 card 4111111111111111").decode()
    data = {
        "note": "refund to card4111111111111111x today",
        "dsn": "postgres://app:hunter2@db:5432/payflow?password=hunter2",
        "tls.key": key,
        "token": jwt,
        "big": "a" * (1000 * 1000),
    }
    cluster.create("ConfigMap", _config_map("hostile", data, {"blob": hidden}), namespace=NS)
    answer = chat.run("backup config")
    [content] = slack.uploads.values()
    body = content.decode()
    for leak in ("4111111111111111", "hunter2", "MIIEvQIBADANBgkqhkiG9w0", jwt, hidden):
        assert leak not in body, leak
    item = next(i for i in yaml.safe_load(body)["items"] if i["metadata"]["name"] == "hostile")
    assert item["data"]["big"] == "a" * (1000 * 1000)  # a long value is kept whole, never cut
    assert "binaryData" not in item  # binary values cannot be redacted: left out, and said
    text = answer.all_text()
    assert "binaryData" in text and "`hostile`" in text
    assert not [r for r in seen if r.resource == "secrets"]
