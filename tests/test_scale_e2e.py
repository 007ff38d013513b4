"""A catalog too big for one message, end to end (issue 9): the served bot against the sandbox
grown to 300 services answers `status` with a summary that counts every service and the full
table as a file in the message's thread, through the Slack stand-in; a wallet-service problem
is shown first. Timings are bench/scale.py's."""

from __future__ import annotations

import json

import pytest

from bot.config.catalog import Catalog, load_catalog
from sandbox import demo
from sandbox.seed import with_services

N = 300


@pytest.fixture
def catalog() -> Catalog:
    return with_services(demo.demo_catalog(load_catalog()), N)


def test_status_of_300_services_counts_every_one_and_attaches_the_full_table(chat, k8s_view, slack, catalog):
    k8s_view.apps.patch_namespaced_deployment_scale(
        "wallet-service-blue", "payflow", {"spec": {"replicas": 0}}, _request_timeout=5
    )
    answer = chat.run("status")

    [post] = answer.posts
    blocks = post["blocks"] if isinstance(post["blocks"], list) else json.loads(post["blocks"])
    assert len(blocks) <= 50
    body = "\n".join(b["text"]["text"] for b in blocks if "text" in b) + "\n".join(
        e["text"] for b in blocks for e in b.get("elements", ()) if "text" in e
    )
    assert body.index("*wallet-service*") < body.index("…and")
    assert "live color is scaled to zero" in body
    assert f"…and *{N - 1}* healthy" in body
    assert f"1 of {N} services shown; the full table of all {N} is in the file" in body

    [upload] = slack.calls_to("files.completeUploadExternal")
    [content] = slack.uploads.values()
    rows = content.decode().splitlines()
    assert rows[0].startswith("service\tlive") and len(rows) == N + 1
    assert {r.split("\t", 1)[0] for r in rows[1:]} == set(catalog.services)
    assert upload.params.get("thread_ts"), "the table goes in the message's thread"
    [entry] = chat.audit()
    assert (entry.action, entry.outcome) == ("status", "ok")
    assert k8s_view.replicas("wallet-service-blue") == 0 and k8s_view.replicas("api-gateway-blue") == 3


def test_a_table_slack_will_not_take_is_said_in_the_thread(chat, k8s_view, slack, catalog):
    """A file Slack refuses (the bot is not in the channel): the message still counts every
    service, and its thread says the table could not be attached and what to do."""
    slack.fail_next("files.completeUploadExternal", error="not_in_channel")
    answer = chat.run("status")

    [post, note] = answer.posts
    assert f"all {N} service(s) healthy" in post["text"]
    blocks = post["blocks"] if isinstance(post["blocks"], list) else json.loads(post["blocks"])
    assert any(f"*{N}* healthy" in b["text"]["text"] for b in blocks if "text" in b)
    assert note["thread_ts"] and "could not be attached (Slack: not_in_channel)" in note["text"]
    assert "invite the bot to this channel" in note["text"]
    [entry] = chat.audit()
    assert (entry.action, entry.outcome) == ("status", "ok")
