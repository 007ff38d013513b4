"""Roles and channels across the command families added lately, through the real app: a viewer
running operator commands, an operator running an approver's `backup drill`, and any of them in
a DM while `allow_dms` is false. Each refusal says why, is audited `denied`, and reaches nothing:
every data store is a black hole that counts connections, and the cluster's fingerprint holds."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from bot.config.settings import Settings
from tests.support.blackhole import BlackHole
from tests.support.chat import Chat

OPERATOR_ONLY = [
    "db activity",
    "db slow 5",
    "tokens",
    "tokens check jti-00000042",
    "users locked",
    "users unlock jane@example.com SUP-812 locked out after a reset",
    "backup config",
    "backup postgres",
    "backup redis",
]
VIEWER = ["db", "db sizes", "mq", "netpol", "backups", "digest now weekly"]
DM = ("D0DIRECT", "directmessage")

CASES = (
    [(text, "dave", None, "This needs the *operator* role; you have viewer.") for text in OPERATOR_ONLY]
    + [("backup drill", "alice", None, "This needs the *approver* role; you have operator.")]
    + [
        (text, "carol", DM, "/payflow is not enabled here.")
        for text in [*VIEWER, *OPERATOR_ONLY, "backup drill"]
    ]
)


@pytest.fixture
def hole() -> Iterator[BlackHole]:
    with BlackHole() as server:
        yield server


@pytest.fixture
def settings(settings: Settings, hole: BlackHole) -> Settings:
    where = f"127.0.0.1:{hole.port}"
    return replace(
        settings,
        env={
            **settings.env,
            "DATABASE_URL": f"postgresql://payflow_bot:pw@{where}/payflow",
            "PAYFLOW_REDIS_URL": f"redis://:pw@{where}/0",
            "RABBITMQ_API_URL": f"http://monitor:pw@{where}",
        },
    )


@pytest.mark.parametrize(
    ("text", "user", "channel", "said"),
    CASES,
    ids=[f"{c[1]}:{c[0]}:{'dm' if c[2] else 'ops'}" for c in CASES],
)
def test_refused_with_the_reason_and_nothing_reached(
    chat: Chat, k8s_view, hole: BlackHole, text: str, user: str, channel, said: str
) -> None:
    before = k8s_view.fingerprint()
    answer = chat.run(text, user=user, **({"channel": channel} if channel else {}))
    assert said in answer.all_text()
    assert answer.posts == []
    assert hole.connections == 0  # no data store was contacted
    assert k8s_view.fingerprint() == before  # no Job, no change in the cluster
    [entry] = chat.audit()
    assert entry.outcome == "denied"
