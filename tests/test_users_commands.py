"""/payflow users locked and users unlock end to end: the served bot, signed commands and clicks,
a real PostgreSQL with the seeded users and the bot's least-privilege role. An unlock is an
approval-gated change of the gate: asked only for a user locked now, re-checked at the click,
one row changed by the DBA's function, four-eyes, audited with the address masked."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from bot.config.settings import Settings
from bot.shell.runtime import build_runtime
from sandbox.local import wait_until
from sandbox.payflow_db import PayflowDatabase, user_email
from sandbox.slack_requests import SlackRequests
from tests.conftest import SIGNING_SECRET
from tests.support.bot_server import BotServer
from tests.support.chat import Chat
from tests.support.pg_sessions import bot_statement_calls

APPROVALS = "#payflow-approvals"
LOCKED = user_email(2)  # locked for ~34 more minutes by the seed
MASKED = "u***@payflow.example"


@pytest.fixture
def settings(settings: Settings, postgres_server: PayflowDatabase) -> Settings:
    return replace(settings, env={**settings.env, "DATABASE_URL": postgres_server.bot_dsn})


def _locks(db: PayflowDatabase) -> dict[str, tuple[Any, int]]:
    with db.connect_admin() as conn:
        rows = conn.execute("SELECT email, locked_until, failed_attempts FROM users ORDER BY id").fetchall()
    return {email: (until, attempts) for email, until, attempts in rows}


@pytest.fixture
def users(postgres_server: PayflowDatabase) -> Iterator[PayflowDatabase]:
    """The shared database's locks as they were, put back after the test (others count them)."""
    before = _locks(postgres_server)
    yield postgres_server
    with postgres_server.connect_admin() as conn:
        for email, (until, attempts) in before.items():
            conn.execute(
                "UPDATE users SET locked_until = %s, failed_attempts = %s WHERE email = %s "
                "AND (locked_until IS DISTINCT FROM %s OR failed_attempts IS DISTINCT FROM %s)",
                (until, attempts, email, until, attempts),
            )


def _approval(chat: Chat) -> Any:
    return wait_until(lambda: next(iter(chat.messages(APPROVALS)[::-1]), None), 10, "an approval request")


def _texts(chat: Chat, channel: str) -> str:
    return "\n".join(f"{m.text} {m.blocks}" for m in chat.messages(channel))


def test_locked_users_are_listed_masked_and_only_the_requester_sees_addresses(chat: Chat, users) -> None:
    answer = chat.run("users locked", user="alice")
    [post] = answer.posts
    shown = str(post)
    assert "Locked now: 7" in shown
    assert shown.count(MASKED) == 7 and "user1@" not in shown and "@payflow.example`" not in shown
    # soonest lock to end first: user1 (17 min) before user7 (119 min)
    assert shown.index("ends in") < shown.index(MASKED)
    [private] = [
        c.params for c in chat.slack.calls_to("chat.postEphemeral") if "only you see" in str(c.params)
    ]
    assert private["user"] == "U0ALICE"
    assert all(user_email(n) in str(private) for n in range(1, 8))
    assert user_email(8) not in str(private)  # an expired lock is not a lock


def test_a_viewer_may_not_list_locked_users(chat: Chat, users) -> None:
    answer = chat.run("users locked", user="dave")
    assert "operator" in answer.all_text() and "@payflow.example" not in answer.all_text()


def test_unlock_is_asked_approved_by_another_person_and_changes_exactly_that_row(chat: Chat, users) -> None:
    before = _locks(users)
    answer = chat.run(f"users unlock {LOCKED} SUP-812 locked out after a password reset", user="alice")
    assert answer.ack_text == ""
    card = _approval(chat)
    assert f"Approval needed: Unlock of user {MASKED}" in card.text
    assert LOCKED not in _texts(chat, APPROVALS)  # the full address never reaches a channel
    assert "locked until" in str(card.blocks) and "SUP-812" in str(card.blocks)
    assert _locks(users) == before  # nothing before the click

    chat.click(card, "Approve", user="bob")
    after = _locks(users)
    assert after[LOCKED] == (None, 0)
    assert {e: v for e, v in after.items() if e != LOCKED} == {e: v for e, v in before.items() if e != LOCKED}
    decided = chat.messages(APPROVALS)[-1]
    assert f"{MASKED} is unlocked" in str(decided.blocks)
    actions = {(e.actor, e.action, e.outcome) for e in chat.audit()}
    assert {("U0ALICE", "change.request", "ok"), ("U0BOB", "change.approve", "ok")} <= actions
    assert ("U0BOB", "change.unlock", "ok") in actions
    assert all(LOCKED not in f"{e.detail} {e.target}" for e in chat.audit())
    assert any(MASKED in e.detail for e in chat.audit() if e.action == "change.unlock")
    # the record keeps no address once the change is over
    store = chat.bot.runtime.store

    def records() -> list[Any]:
        return list(chat.bot.call(store.scan("change:")).values())

    wait_until(lambda: [r["state"] for r in records()] == ["done"], 10, "the unlock to finish")
    assert all(LOCKED not in str(r) for r in records())


def test_the_requester_cannot_approve_their_own_unlock(chat: Chat, users) -> None:
    chat.run(f"users unlock {LOCKED} INC-7", user="carol")  # an admin asks…
    card = _approval(chat)
    chat.click(card, "Approve", user="carol")  # …and cannot approve it
    assert _locks(users)[LOCKED][0] is not None
    assert [e.outcome for e in chat.audit() if e.action == "click:approve"] == ["refused"]


@pytest.mark.parametrize(
    ("email", "said"),
    [
        (user_email(9), "the user is not locked"),  # an expired lock
        (user_email(400), "the user is not locked"),  # never locked
        ("nobody@payflow.example", "there is no user with this address"),
    ],
)
def test_nothing_to_unlock_is_refused_before_any_approval(chat: Chat, users, email: str, said: str) -> None:
    before = _locks(users)
    answer = chat.run(f"users unlock {email} SUP-1", user="alice")
    assert said in answer.all_text() and "no approval was asked" in answer.all_text()
    assert chat.messages(APPROVALS) == [] and _locks(users) == before
    assert [e.outcome for e in chat.audit() if e.action == "users unlock"] == ["refused"]


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("users unlock", "Say whose account and why"),
        (f"users unlock {LOCKED}", "Say why"),
        ("users unlock not-an-address SUP-1", "is not an email address"),
        ("users unlock x'); UPDATE users SET locked_until = NULL; --@a.io SUP-1", "is not an email address"),
        ("users unlock " + "a" * 300 + "@payflow.example SUP-1", "is not an email address"),
        ("users unlock " + "a" * 10_000, "a command is at most 500"),
        ("users locked 0", "N must be between 1 and 100"),
        ("users locked many", "N must be a whole number"),
        ("users", "needs a subcommand: `users locked`, `users unlock`"),
        ("users lock jane@example.com", "needs a subcommand"),
    ],
)
def test_bad_input_is_refused_and_reaches_nothing(chat: Chat, users, text: str, said: str) -> None:
    before, calls = _locks(users), bot_statement_calls(users)
    answer = chat.run(text, user="alice")
    assert said in answer.ack_text
    assert chat.messages(APPROVALS) == []
    assert _locks(users) == before and bot_statement_calls(users) == calls


def test_a_user_unlocked_meanwhile_voids_the_approval_and_nothing_is_written(chat: Chat, users) -> None:
    chat.run(f"users unlock {LOCKED} SUP-9", user="alice")
    card = _approval(chat)
    with users.connect_admin() as conn:  # the lock ran out (or support cleared it) before the click
        conn.execute(
            "UPDATE users SET locked_until = now() - interval '1 minute' WHERE email = %s", (LOCKED,)
        )
    before = _locks(users)
    chat.click(card, "Approve", user="bob")
    assert _locks(users) == before  # failed_attempts untouched: the function was never called
    assert "voided" in str(chat.messages(APPROVALS)[-1].blocks)
    assert [e.outcome for e in chat.audit() if e.action == "change.voided"] == ["voided"]


def test_one_unlock_per_user_at_a_time(chat: Chat, users) -> None:
    chat.run(f"users unlock {LOCKED} SUP-10", user="alice")
    _approval(chat)
    answer = chat.run(f"users unlock {LOCKED} SUP-11", user="carol")
    assert "already in flight" in answer.all_text()
    assert len(chat.messages(APPROVALS)) == 1


def test_without_a_database_the_answer_says_what_to_set(settings: Settings, catalog, slack) -> None:
    env = {k: v for k, v in settings.env.items() if k != "DATABASE_URL"}
    server = BotServer(build_runtime(replace(settings, env=env), catalog)).start()
    try:
        chat = Chat(server, slack, SlackRequests(SIGNING_SECRET, response_url=slack.response_url("cmd")))
        for text in ("users locked", f"users unlock {LOCKED} SUP-1"):
            answer = chat.run(text, user="alice")
            assert "PostgreSQL is not configured: set `DATABASE_URL`" in answer.all_text()
        assert chat.messages(APPROVALS) == []
    finally:
        server.stop()


def test_changes_and_cancel_speak_of_the_masked_user(chat: Chat, users) -> None:
    chat.run(f"users unlock {LOCKED} SUP-12", user="alice")
    card = _approval(chat)
    listed = chat.run("changes", user="dave").all_text()
    assert f"Unlock of user {MASKED}" in listed and LOCKED not in listed
    change_id = card.blocks[-1]["block_id"].removeprefix("change:")
    assert "Cancelled" in chat.run(f"cancel {change_id}", user="alice").all_text()
    assert _locks(users)[LOCKED][0] is not None
    assert "cancelled" in str(chat.messages(APPROVALS)[-1].blocks)


def _everything_said(chat: Chat) -> str:
    """Every channel message (text, blocks), ephemeral reply and audit entry the bot produced."""
    said = [
        f"{c.params}"
        for c in chat.slack.calls
        if c.method.startswith("chat.") and c.method != "chat.postEphemeral"
    ]
    said += [f"{r.params}" for r in chat.slack.responses]
    said += [f"{e.actor} {e.action} {e.target} {e.detail}" for e in chat.audit(limit=200)]
    return "\n".join(said)


def test_the_address_repeated_in_the_reason_is_masked_everywhere(chat: Chat, users, caplog) -> None:
    reason = f"SUP-30 {LOCKED} called support; cc {user_email(3)}"
    chat.run(f"users unlock {LOCKED} {reason}", user="alice")
    card = _approval(chat)
    assert "SUP-30" in str(card.blocks) and "called support" in str(card.blocks)
    chat.click(card, "Approve", user="bob")
    said = _everything_said(chat)
    assert LOCKED not in said and user_email(3) not in said
    assert f"{MASKED} called support" in said
    assert LOCKED not in caplog.text


def test_an_error_from_the_unlock_function_never_shows_the_address(
    settings: Settings, catalog, slack, users, caplog
) -> None:
    """The DBA's function (or a trigger under it) may name the address in its error: the card,
    the audit trail, the logs and the record must not repeat it."""
    with users.connect_admin() as conn:
        conn.execute(
            "CREATE OR REPLACE FUNCTION payflow_bot.unlock_user_loud(p_email text) RETURNS integer"
            " LANGUAGE plpgsql SECURITY DEFINER AS $fn$ BEGIN"
            " RAISE EXCEPTION 'user % is under a legal hold', p_email"
            " USING DETAIL = format('Key (email)=(%s) already exists.', p_email); END $fn$"
        )
        conn.execute("GRANT EXECUTE ON FUNCTION payflow_bot.unlock_user_loud(text) TO payflow_bot")
    data = catalog.data.model_copy(
        update={
            "postgres": catalog.data.postgres.model_copy(
                update={"unlock_function": "payflow_bot.unlock_user_loud"}
            )
        }
    )
    server = BotServer(build_runtime(settings, catalog.model_copy(update={"data": data}))).start()
    try:
        chat = Chat(server, slack, SlackRequests(SIGNING_SECRET, response_url=slack.response_url("cmd")))
        chat.run(f"users unlock {LOCKED} SUP-31", user="alice")
        chat.click(_approval(chat), "Approve", user="bob")
        said = _everything_said(chat)
        assert "legal hold" in said and "voided" in said  # the reason is told…
        assert LOCKED not in said and LOCKED not in caplog.text  # …without the address
        assert _locks(users)[LOCKED][0] is not None
        records = chat.bot.call(chat.bot.runtime.store.scan("change:"))
        assert [r["state"] for r in records.values()] == ["voided"]
        assert LOCKED not in str(records)
    finally:
        server.stop()
        with users.connect_admin() as conn:
            conn.execute("DROP FUNCTION payflow_bot.unlock_user_loud(text)")


def test_a_hundred_long_addresses_reach_the_requester_within_slacks_limits(chat: Chat, users) -> None:
    """Slack refuses a section over 3,000 characters (invalid_blocks): the full list must still
    arrive, every address of it."""
    with users.connect_admin() as conn:
        conn.execute(
            "UPDATE users SET email = 'a-rather-long-mailbox-name-for-testing-' || id || '@' || email,"
            " locked_until = now() + interval '1 hour' WHERE id <= 120"
        )
    try:
        chat.run("users locked 100", user="alice")
        [private] = [
            c.params for c in chat.slack.calls_to("chat.postEphemeral") if "only you see" in str(c.params)
        ]
        blocks = json.loads(private["blocks"]) if isinstance(private["blocks"], str) else private["blocks"]
        sections = [b["text"]["text"] for b in blocks if b.get("type") == "section"]
        assert all(len(s) <= 3000 for s in sections), [len(s) for s in sections]
        assert len(blocks) <= 50
        shown_all = "\n".join(sections)
        assert shown_all.count("a-rather-long-mailbox-name-for-testing-") == 100
    finally:
        with users.connect_admin() as conn:
            conn.execute(
                "UPDATE users SET email = split_part(email, '@', 2) || '@' || split_part(email, '@', 3)"
                " WHERE id <= 120 AND email LIKE 'a-rather-long-mailbox-name-for-testing-%'"
            )
