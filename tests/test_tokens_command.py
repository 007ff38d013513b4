"""/payflow tokens end to end: signed requests to the served bot, PayFlow's token blacklist in a
private redis-server (100,000 keys), and Redis's own command statistics as the witness of what
the bot sent: SCAN steps, never KEYS, and nothing at all for input it refused."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis

from bot.config.catalog import Catalog
from bot.config.settings import Settings
from sandbox.local import wait_until
from sandbox.payflow_redis import blacklist_key
from tests.support.blackhole import BlackHole
from tests.support.chat import Chat
from tests.support.datastores import BLACKLIST_KEYS, BlacklistRedis
from tests.support.redis_server import RedisServer


def _with_redis(catalog: Catalog, **changes: object) -> Catalog:
    data = catalog.data
    conf = data.redis.model_copy(update=changes)
    return catalog.model_copy(update={"digests": [], "data": data.model_copy(update={"redis": conf})})


@pytest.fixture
def catalog(catalog: Catalog) -> Catalog:
    return _with_redis(catalog, scan_budget_seconds=30.0)  # room to count every key


@pytest.fixture
def settings(settings: Settings, blacklist_redis: BlacklistRedis) -> Settings:
    return replace(settings, env={"PAYFLOW_REDIS_URL": blacklist_redis.url})


@pytest.fixture
def witness(blacklist_redis: BlacklistRedis) -> Iterator[redis.Redis]:
    client = blacklist_redis.server.client()
    yield client
    client.close()


def calls(client: redis.Redis) -> dict[str, int]:
    """Calls per command since the server started; INFO itself excluded (the witness uses it)."""
    stats = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info"}


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}


def test_tokens_counts_every_key_with_scan_and_never_keys(chat: Chat, witness: redis.Redis):
    before = calls(witness)
    answer = chat.run("tokens")
    sent = _delta(before, calls(witness))

    [post] = answer.posts
    assert post["text"].startswith(f"Token blacklist: {BLACKLIST_KEYS:,} blacklisted tokens")
    body = answer.all_text()
    assert "Keys: matching the catalog's data.redis.blacklist_pattern" in body
    assert "TTL min / median / max (2,000 sampled)" in body
    assert "Without expiry: 0 of 2,000 sampled" in body
    assert "partial" not in body and "at least" not in body
    assert sent.get("scan", 0) >= BLACKLIST_KEYS // 250  # COUNT 250 per step (the catalog default)
    assert "keys" not in sent
    assert set(sent) <= {"scan", "pttl", "client|setinfo", "select"}  # reads only
    assert sent["pttl"] == 2000
    [entry] = chat.audit()
    assert (entry.action, entry.outcome) == ("tokens", "ok")
    assert entry.detail == f"{BLACKLIST_KEYS:,} blacklisted tokens"


class TestSmallBudget:
    @pytest.fixture
    def catalog(self, catalog: Catalog) -> Catalog:
        return _with_redis(catalog, scan_budget_seconds=0.001, scan_count=10)

    def test_a_partial_count_says_so(self, chat: Chat, witness: redis.Redis):
        before = calls(witness)
        answer = chat.run("tokens")
        steps = _delta(before, calls(witness))["scan"]

        [post] = answer.posts
        assert post["text"].startswith("Token blacklist: at least ")
        assert "blacklisted tokens; stopped after 0.001 s" in post["text"]
        counted = int(post["text"].split("at least ")[1].split()[0].replace(",", ""))
        assert 0 < counted < BLACKLIST_KEYS and steps < BLACKLIST_KEYS // 10
        assert "The count is partial: the scan stopped at its 0.001 s budget" in answer.all_text()


def test_check_a_blacklisted_token_says_until_when_and_shows_only_a_prefix(chat: Chat, witness):
    ttl = witness.ttl(blacklist_key("jti-00000042"))
    answer = chat.run("tokens check jti-00000042")
    text = answer.all_text()
    assert "Token is blacklisted" in text and "yes, until <!date^" in text
    hours = ttl // 3600
    assert f"(in {hours}h " in text or f"(in {ttl // 60}m" in text
    assert "`jti-0000…`" in text and "jti-00000042" not in text
    [entry] = chat.audit()
    assert entry.action == "tokens check" and "jti-00000042" not in entry.detail


def test_check_a_token_that_is_not_blacklisted(chat: Chat):
    text = chat.run("tokens check jti-99999999").all_text()
    assert "Token is not blacklisted" in text and "Blacklisted: no" in text


def test_an_entry_without_ttl_is_flagged_as_a_leak(chat: Chat, witness: redis.Redis):
    key = blacklist_key("leak-test-1")
    witness.set(key, "user:1:logout")  # no expiry: what a buggy revocation leaves behind
    try:
        text = chat.run("tokens check leak-test-1").all_text()
    finally:
        witness.delete(key)
    assert "yes, with no expiry" in text and "never removed: a leak" in text


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("tokens check jti-*", "only letters, digits, `.`, `_` and `-`; that one has `*` (no wildcards"),
        ("tokens check jti-0000004?", "that one has `?` (no wildcards"),
        ("tokens check jti-[0-9]", "that one has `[` `]` (no wildcards"),
        ("tokens check jti-1 jti-2", "A token ID has no spaces"),
        ("tokens check token:blacklist:x", "that one has `:`"),
        ("tokens check " + "a" * 129, "at most 128 characters; that one has 129"),
        ("tokens check " + "a" * 10_240, "a command is at most 500"),
        ("tokens check", "Say which token ID"),
        ("tokens everything", "No subcommand `tokens everything`"),
    ],
)
def test_bad_input_is_refused_and_reaches_nothing(chat: Chat, witness: redis.Redis, typed: str, said: str):
    before = calls(witness)
    answer = chat.run(typed)
    assert said in answer.all_text()
    assert answer.posts == []
    assert "a" * 60 not in answer.all_text()  # a long ID is never echoed
    assert calls(witness) == before  # not one command reached PayFlow's Redis


def test_viewers_may_not_read_the_blacklist(chat: Chat, witness: redis.Redis):
    before = calls(witness)
    answer = chat.run("tokens check jti-00000042", user="dave")
    assert answer.posts == [] and "jti-00000042" not in answer.all_text()
    assert calls(witness) == before


class TestNotConfigured:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return replace(settings, env={})

    def test_tokens_says_which_setting_to_set(self, chat: Chat):
        for typed in ("tokens", "tokens check jti-00000042"):
            text = chat.run(typed).all_text()
            assert "PayFlow's Redis is not configured: set `PAYFLOW_REDIS_URL`" in text


@pytest.fixture
def hole() -> Iterator[BlackHole]:
    with BlackHole() as server:
        yield server


class TestHungRedis:
    @pytest.fixture
    def catalog(self, catalog: Catalog) -> Catalog:
        return catalog.model_copy(update={"data": catalog.data.model_copy(update={"timeout_seconds": 0.5})})

    @pytest.fixture
    def settings(self, settings: Settings, hole: BlackHole) -> Settings:
        url = f"redis://:hole-secret-42@127.0.0.1:{hole.port}/0"
        return replace(settings, env={"PAYFLOW_REDIS_URL": url})

    def test_a_hung_redis_costs_one_deadline(self, chat: Chat, hole: BlackHole):
        text = chat.run("tokens").all_text()
        assert f"PayFlow's Redis at 127.0.0.1:{hole.port} did not answer SCAN within 0.5 s" in text
        assert "hole-secret-42" not in text and "Traceback" not in text
        assert hole.connections == 1  # one attempt, no retry
        [entry] = chat.audit()
        assert entry.outcome == "failed"


# --- red team ----------------------------------------------------------------------------------


def _pause_after_scans(client: redis.Redis, steps: int, pause_ms: int) -> threading.Thread:
    """Another client pauses Redis (CLIENT PAUSE ALL: no command is answered) once the bot has
    made `steps` SCAN calls: a Redis that stops answering in the middle of a count."""
    start = calls(client).get("scan", 0)

    def watch() -> None:
        wait_until(
            lambda: calls(client).get("scan", 0) - start >= steps or None, 30, "the bot's SCANs", poll=0.002
        )
        client.execute_command("CLIENT", "PAUSE", str(pause_ms), "ALL")

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


class TestRedisStopsMidScan:
    @pytest.fixture
    def catalog(self, catalog: Catalog) -> Catalog:
        changed = _with_redis(catalog, scan_budget_seconds=30.0, scan_count=10)
        return changed.model_copy(update={"data": changed.data.model_copy(update={"timeout_seconds": 0.5})})

    def test_the_count_fails_plainly_and_the_next_answers_are_right(self, chat: Chat, witness: redis.Redis):
        pauser = _pause_after_scans(witness, 20, 1500)
        text = chat.run("tokens").all_text()
        pauser.join(10)
        wait_until(lambda: witness.ping() or None, 10, "Redis unpaused")

        assert "did not answer SCAN within 0.5 s" in text and "Traceback" not in text
        [entry] = chat.audit()
        assert (entry.action, entry.outcome) == ("tokens", "failed")
        # The connection that lost its answer must not hand it to the next command.
        assert "Token is blacklisted" in chat.run("tokens check jti-00000042").all_text()
        assert "Token is not blacklisted" in chat.run("tokens check jti-99999999").all_text()
        assert "Token is blacklisted" in chat.run("tokens check jti-00000043").all_text()


# A JWT is base64url in three dot-separated parts: every character a token ID may hold, so it
# passed as an ID, was looked up under the wrong key and answered "not blacklisted".
SHORT_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJqdGktMDAwMDAwNDIifQ.c2lnbmF0dXJlLWJ5dGVzLWhlcmUtMTIzNDU2Nzg5MA"
LONG_JWT = SHORT_JWT + "eyJzdWIiOiJ1c2VyOjEiLCJleHAiOjE3MDAwMDAwMDB9" * 3


@pytest.mark.parametrize(
    ("typed", "said", "never"),
    [
        ("tokens check " + SHORT_JWT, "a whole JWT, not its ID", "eyJhbGci"),
        ("tokens check " + LONG_JWT, "a whole JWT, not its ID", "eyJhbGci"),
        # a homoglyph is named by its code point: drawn alone it looks like the letter it mimics
        ("tokens check jt\u0456-00000042", "`\u0456` (U+0456)", "jt\u0456"),
    ],
)
def test_odd_token_ids_are_refused_without_echo(
    chat: Chat, witness: redis.Redis, typed: str, said: str, never: str
):
    before = calls(witness)
    answer = chat.run(typed)
    text = answer.all_text()
    assert said in text and never not in text and "Nothing was looked up" in text
    assert answer.posts == []
    assert calls(witness) == before


@pytest.mark.parametrize(
    "typed",
    ["tokens check jti-\uff10\uff10\uff10\uff10\uff10\uff10\uff142", "tokens check jti\u200b-00000042\u202e"],
)
def test_fullwidth_digits_and_invisible_characters_are_folded_before_the_lookup(chat: Chat, typed: str):
    """What the user meant (handlers/registry.py folds NFKC and drops format characters)."""
    assert "Token is blacklisted" in chat.run(typed).all_text()


def test_a_128_character_id_is_looked_up_and_not_echoed(chat: Chat, witness: redis.Redis):
    ident = "j" * 128
    before = calls(witness)
    text = chat.run(f"tokens check {ident}").all_text()
    assert "Token is not blacklisted" in text and "`jjjjjjjj…`" in text and "j" * 9 not in text
    assert _delta(before, calls(witness)).get("exists") == 1


def test_a_key_of_another_type_under_the_pattern_is_read_not_broken(chat: Chat, witness: redis.Redis):
    key = blacklist_key("odd-type-1")
    witness.hset(key, mapping={"user": "1"})  # a hash where the auth service writes strings
    try:
        text = chat.run("tokens check odd-type-1").all_text()
    finally:
        witness.delete(key)
    assert "yes, with no expiry" in text and "Traceback" not in text


class TestGlobPattern:
    """A catalog pattern that is not a prefix and one `*`: `tokens` still counts with it (SCAN
    MATCH is a glob), `check` says it cannot build one key from it, and nothing is read."""

    @pytest.fixture
    def catalog(self, catalog: Catalog) -> Catalog:
        return _with_redis(catalog, blacklist_pattern="token:black[l]ist:*")

    def test_count_works_and_check_is_refused(self, chat: Chat, witness: redis.Redis):
        counted = chat.run("tokens").all_text()
        assert f"{BLACKLIST_KEYS:,} blacklisted tokens" in counted
        before = calls(witness)
        text = chat.run("tokens check jti-00000042").all_text()
        assert "is not a key prefix followed by one `*`" in text and "Nothing was looked up" in text
        assert calls(witness) == before


@pytest.fixture(scope="module")
def million_redis() -> Iterator[RedisServer]:
    """A private Redis with 1,000,000 blacklist keys (DEBUG POPULATE: seconds, not minutes)."""
    with RedisServer(extra_args=("--enable-debug-command", "yes")) as server:
        client = server.client()
        client.execute_command("DEBUG", "POPULATE", "1000000", "token:blacklist")
        client.close()
        yield server


class TestMillionKeysSmallBudget:
    @pytest.fixture
    def catalog(self, catalog: Catalog) -> Catalog:
        return _with_redis(catalog, scan_budget_seconds=0.05, scan_count=100)

    @pytest.fixture
    def settings(self, settings: Settings, million_redis: RedisServer) -> Settings:
        return replace(settings, env={"PAYFLOW_REDIS_URL": million_redis.url})

    def test_the_count_is_partial_and_says_so(self, chat: Chat, million_redis: RedisServer):
        client = million_redis.client()
        try:
            before = calls(client)
            answer = chat.run("tokens")
            steps = _delta(before, calls(client))["scan"]
        finally:
            client.close()
        [post] = answer.posts
        assert post["text"].startswith("Token blacklist: at least ")
        counted = int(post["text"].split("at least ")[1].split()[0].replace(",", ""))
        assert 0 < counted < 1_000_000 and steps < 1_000_000 // 100
        text = answer.all_text()
        assert "The count is partial: the scan stopped at its 0.05 s budget" in text
        assert "sampled blacklist entries have no TTL" in text  # DEBUG POPULATE sets none
