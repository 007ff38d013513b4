"""A user unlock under the gate's real races: bot replicas on one Redis with short leases, the
real PostgreSQL (through a relay that can lose answers). Each race ends with the record, the
audit trail and the users table agreeing, and the DBA's function called at most once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from bot.config.settings import Settings
from bot.domain.gate.engine import Gate
from bot.shell.runtime import build_runtime
from sandbox import demo
from sandbox.payflow_db import BOT_ROLE, PayflowDatabase
from tests.support.bot_server import BotServer
from tests.support.chat import Chat
from tests.support.gate import win_approval_and_die
from tests.support.pg_proxy import PgProxy
from tests.test_users_commands import APPROVALS, LOCKED, _approval, _locks, users  # noqa: F401

LEASE = 1.0


def unlock_calls(db: PayflowDatabase) -> int:
    """Calls of the unlock function by the bot's role (pg_stat_statements counts each one)."""
    with db.connect_admin() as conn:
        row = conn.execute(
            "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements"
            " WHERE userid = %s::regrole AND query LIKE %s",
            (BOT_ROLE, "%unlock_user%"),
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def proxy(postgres_server: PayflowDatabase) -> Iterator[PgProxy]:
    with PgProxy(postgres_server.server.port) as relay:
        yield relay


@pytest.fixture
def settings(settings: Settings, postgres_server: PayflowDatabase, proxy: PgProxy) -> Settings:
    return replace(settings, env={**settings.env, "DATABASE_URL": proxy.dsn(postgres_server.bot_dsn)})


def _fast(catalog: Any, **data: Any) -> Any:
    env = catalog.env.model_copy(update={"lease_seconds": LEASE})
    updates: dict[str, Any] = {"environments": {catalog.environment: env}}
    if data:
        updates["data"] = catalog.data.model_copy(update=data)
    return catalog.model_copy(update=updates)


@pytest.fixture
def replicas(settings: Settings, catalog: Any, bot: BotServer) -> Iterator[Callable[..., BotServer]]:
    bot.stop()  # the default bot has the default (long) lease
    started: list[BotServer] = []

    def start(**data: Any) -> BotServer:
        server = BotServer(build_runtime(settings, _fast(catalog, **data))).start()
        started.append(server)
        return server

    yield start
    for server in started:
        if server._thread.is_alive():
            server.stop()


def _record(chat: Chat, change_id: str) -> dict[str, Any]:
    return chat.bot.call(chat.bot.runtime.store.get(f"change:{change_id}"))


def _change_id(card: Any) -> str:
    return card.blocks[-1]["block_id"].removeprefix("change:")


def _ended(chat: Chat, change_id: str, timeout: float = 30) -> dict[str, Any]:
    def over(_: Any) -> dict[str, Any] | None:
        record = _record(chat, change_id)
        return record if record and record["state"] in {"done", "voided", "failed"} else None

    return chat.slack.wait_for(over, timeout=timeout)


def _actions(chat: Chat) -> list[str]:
    return [e.action for e in chat.audit(limit=200)]


def _button(chat: Chat, card: Any, user: str) -> Any:
    who = demo.user(user)
    assert who is not None
    action = next(
        e
        for blk in card.blocks
        if blk.get("type") == "actions"
        for e in blk["elements"]
        if e["text"]["text"] == "Approve"
    )
    return chat.requests.button(
        user_id=who.id,
        user_name=who.name,
        channel_id=card.channel,
        channel_name="payflow-approvals",
        message={"ts": card.ts, "text": card.text, "blocks": card.blocks},
        action=action,
        block_id=card.blocks[-1]["block_id"],
    )


def test_two_approvers_on_two_replicas_unlock_once(chat: Chat, replicas, users) -> None:  # noqa: F811
    a, b = replicas(), replicas()
    chat.bot = a
    chat.run(f"users unlock {LOCKED} SUP-20 two approvers", user="alice")
    card = _approval(chat)
    calls = unlock_calls(users)
    barrier = threading.Barrier(20)

    def click(i: int) -> None:
        signed = _button(chat, card, "bob" if i % 2 else "carol")
        barrier.wait()
        (a if i % 2 else b).post(signed)

    threads = [threading.Thread(target=click, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    record = _ended(chat, _change_id(card))
    a.idle(30)
    b.idle(30)
    assert record["state"] == "done", record.get("error")
    assert unlock_calls(users) - calls == 1
    assert _locks(users)[LOCKED] == (None, 0)
    actions = _actions(chat)
    assert actions.count("change.unlock") == 1 and actions.count("change.approve") == 1
    assert "change.voided" not in actions


def _die_mid_unlock(server: BotServer, change_id: str) -> None:
    """What a click's worker leaves when it dies after winning the approval: `applying`, with an
    apply lease nobody renews."""

    records = Gate(server.runtime.dispatcher.deps).records
    server.call(win_approval_and_die(records, change_id, lease_seconds=LEASE))


@pytest.mark.parametrize("called", [False, True])
def test_a_worker_killed_mid_unlock_is_settled_from_the_database(
    chat: Chat,
    replicas,
    users,  # noqa: F811
    called: bool,
) -> None:
    a = replicas()
    chat.bot = a
    chat.run(f"users unlock {LOCKED} SUP-21", user="alice")
    change_id = _change_id(_approval(chat))
    calls = unlock_calls(users)
    _die_mid_unlock(a, change_id)
    if called:  # it died right after the function committed, before writing the record
        with users.connect_bot() as conn:
            conn.execute("SELECT payflow_bot.unlock_user(%s)", (LOCKED,))
    replicas()  # another replica's sweep takes over once the lease expires
    record = _ended(chat, change_id)
    assert unlock_calls(users) - calls == int(called)  # a settle never calls the function
    actions = _actions(chat)
    if called:
        assert record["state"] == "done", record.get("error")
        assert actions.count("change.unlock") == 1 and "change.voided" not in actions
        assert _locks(users)[LOCKED] == (None, 0)
    else:
        assert record["state"] == "voided" and "not unlocked" in record["error"]
        assert "change.unlock" not in actions
        assert _locks(users)[LOCKED][0] is not None


def test_a_lock_that_ran_out_while_the_worker_was_dead_is_not_recorded_as_our_unlock(
    chat: Chat,
    replicas,
    users,  # noqa: F811
) -> None:
    """The lock expired by itself (failed attempts kept): the function never ran, so the audit
    trail must not say the bot unlocked the user."""
    a = replicas()
    chat.bot = a
    chat.run(f"users unlock {LOCKED} SUP-22", user="alice")
    change_id = _change_id(_approval(chat))
    _die_mid_unlock(a, change_id)
    with users.connect_admin() as conn:
        ran_out = "UPDATE users SET locked_until = now() - interval '1 minute' WHERE email = %s"
        conn.execute(ran_out, (LOCKED,))
    before = _locks(users)[LOCKED]
    replicas()
    record = _ended(chat, change_id)
    assert record["state"] == "voided", record.get("error")
    assert "change.unlock" not in _actions(chat)
    assert _locks(users)[LOCKED] == before


def test_an_unlock_whose_commit_answer_was_lost_is_settled_done_not_voided(
    chat: Chat,
    replicas,
    users,  # noqa: F811
    proxy: PgProxy,
) -> None:
    a = replicas(timeout_seconds=1.0)
    chat.bot = a
    chat.run(f"users unlock {LOCKED} SUP-23", user="alice")
    card = _approval(chat)
    calls = unlock_calls(users)
    proxy.lose_commit_answers = True
    chat.click(card, "Approve", user="bob")
    assert proxy.commits_seen == 1
    reply = chat.slack.responses[-1].params["text"]
    assert "may or may not have happened" in reply and "Voided" not in reply
    assert _locks(users)[LOCKED] == (None, 0)  # it happened
    proxy.lose_commit_answers = False
    record = _ended(chat, _change_id(card))
    assert record["state"] == "done", record.get("error")
    assert unlock_calls(users) - calls == 1
    actions = _actions(chat)
    assert "change.voided" not in actions and actions.count("change.unlock") == 1
    assert "change.unlock_unanswered" in actions  # an unlock's words, not a switch's


def test_postgres_hung_at_the_click_voids_plainly_and_calls_nothing(
    chat: Chat,
    replicas,
    users,  # noqa: F811
    proxy: PgProxy,
) -> None:
    a = replicas(timeout_seconds=1.0)
    chat.bot = a
    chat.run(f"users unlock {LOCKED} SUP-24", user="alice")
    card = _approval(chat)
    calls = unlock_calls(users)
    before = _locks(users)
    proxy.hang_new = True
    chat.click(card, "Approve", user="bob")
    reply = chat.slack.responses[-1].params["text"]
    assert "Voided" in reply and "PostgreSQL" in reply, reply
    record = _record(chat, _change_id(card))
    assert record["state"] == "voided", record
    assert unlock_calls(users) == calls and _locks(users) == before
    assert "Traceback" not in reply
