"""The Slack stub must satisfy the *real* slack_sdk clients, or every bot test built on it proves nothing."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook import WebhookClient

# The repo is not installed into the test virtualenv; make `sandbox` importable however pytest is run.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from sandbox.slack_api import BOT_ID, BOT_USER_ID, Call, SlackApiStub  # noqa: E402

TOKEN = "xoxb-test"
BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*checkout* is healthy"}}]


@pytest.fixture
def stub() -> Iterator[SlackApiStub]:
    with SlackApiStub(bot_token=TOKEN, usergroups={"S0ONCALL": ["U0ALICE", "U0BOB"]}) as server:
        yield server


@pytest.fixture
def client(stub: SlackApiStub) -> WebClient:
    return WebClient(token=TOKEN, base_url=stub.api_url)


def test_api_url_ends_with_slash_for_slack_sdk(stub: SlackApiStub) -> None:
    assert stub.api_url.startswith("http://127.0.0.1:")
    assert stub.api_url.endswith("/api/")


def test_auth_test(client: WebClient, stub: SlackApiStub) -> None:
    resp = client.auth_test()

    assert resp["ok"] is True
    assert resp["team_id"] == "T0PAYFLOW"
    assert resp["user_id"] == BOT_USER_ID
    assert resp["bot_id"] == BOT_ID
    assert resp["url"] == "https://payflow.slack.com/"
    assert resp["is_enterprise_install"] is False
    [call] = stub.calls_to("auth.test")
    assert call.headers["authorization"] == f"Bearer {TOKEN}"


def test_post_update_permalink_round_trip(client: WebClient, stub: SlackApiStub) -> None:
    posted = client.chat_postMessage(channel="#payflow-ops", text="deploying", blocks=BLOCKS)

    channel, ts = posted["channel"], posted["ts"]
    assert channel == stub.channel_id("#payflow-ops")
    assert channel.startswith("C") and channel.isalnum() and channel.isupper()
    seconds, micros = ts.split(".")
    assert seconds.isdigit() and len(micros) == 6
    assert posted["message"]["user"] == BOT_USER_ID
    assert posted["message"]["blocks"] == BLOCKS
    # postMessage goes out as JSON, so blocks arrive as a list, not a string.
    assert stub.calls_to("chat.postMessage")[0].params["blocks"] == BLOCKS

    reply = client.chat_postMessage(channel=channel, text="step 1/3", thread_ts=ts)
    assert reply["ts"] > ts
    assert reply["message"]["thread_ts"] == ts

    new_blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "done"}}]
    updated = client.chat_update(channel=channel, ts=ts, text="deployed", blocks=new_blocks)
    assert (updated["channel"], updated["ts"], updated["text"]) == (channel, ts, "deployed")

    link = client.chat_getPermalink(channel=channel, message_ts=ts)
    assert link["permalink"] == f"https://payflow.slack.com/archives/{channel}/p{ts.replace('.', '')}"

    root, threaded = stub.messages("#payflow-ops")
    assert (root.ts, root.text, root.blocks) == (ts, "deployed", new_blocks)
    assert (threaded.thread_ts, threaded.text) == (ts, "step 1/3")
    assert stub.messages(channel) == stub.messages()

    client.chat_delete(channel=channel, ts=reply["ts"])
    assert [m.ts for m in stub.messages(channel)] == [ts]


def test_async_client_round_trip(stub: SlackApiStub) -> None:
    async def scenario() -> tuple[str, str]:
        client = AsyncWebClient(token=TOKEN, base_url=stub.api_url)
        posted = await client.chat_postMessage(channel="#payflow-ops", text="hi", blocks=BLOCKS)
        await client.chat_update(channel=posted["channel"], ts=posted["ts"], text="bye")
        info = await client.conversations_info(channel=posted["channel"])  # GET with a query string
        user = await client.users_info(user="U0ALICE")
        assert info["channel"]["name"] == "payflow-ops"
        assert user["user"]["id"] == "U0ALICE" and user["user"]["tz"]
        return posted["channel"], posted["ts"]

    channel, ts = asyncio.run(scenario())

    [message] = stub.messages(channel)
    assert (message.ts, message.text, message.blocks) == (ts, "bye", BLOCKS)


def test_form_encoded_blocks_are_decoded(client: WebClient, stub: SlackApiStub) -> None:
    # api_call(params=...) is form-encoded by the sync client; blocks ride along as a JSON string.
    client.api_call("chat.postMessage", params={"channel": "C0ROOM", "blocks": json.dumps(BLOCKS)})

    assert stub.calls_to("chat.postMessage")[0].params["blocks"] == BLOCKS
    assert stub.messages("C0ROOM")[0].blocks == BLOCKS


def test_slack_errors(client: WebClient, stub: SlackApiStub) -> None:
    with pytest.raises(SlackApiError) as no_text:
        client.api_call("chat.postMessage", json={"channel": "#payflow-ops", "text": ""})
    assert no_text.value.response["error"] == "no_text"

    with pytest.raises(SlackApiError) as no_channel:
        client.api_call("chat.postMessage", json={"text": "hi"})
    assert no_channel.value.response["error"] == "channel_not_found"

    with pytest.raises(SlackApiError) as no_message:
        client.chat_update(channel="C0ROOM", ts="1.000001", text="x")
    assert no_message.value.response["error"] == "message_not_found"

    with pytest.raises(SlackApiError) as unknown:
        client.api_call("reactions.add", params={"name": "eyes"})
    assert unknown.value.response["error"] == "unknown_method"


@pytest.mark.parametrize(("token", "error"), [("xoxb-wrong", "invalid_auth"), (None, "not_authed")])
def test_bad_token_is_rejected(stub: SlackApiStub, token: str | None, error: str) -> None:
    with pytest.raises(SlackApiError) as exc:
        WebClient(token=token, base_url=stub.api_url).auth_test()

    assert exc.value.response.status_code == 200
    assert exc.value.response["error"] == error


def test_rate_limit_is_retried_by_slack_sdk(stub: SlackApiStub) -> None:
    client = WebClient(token=TOKEN, base_url=stub.api_url, retry_handlers=[RateLimitErrorRetryHandler()])
    stub.fail_next("chat.postMessage", retry_after=0)

    resp = client.chat_postMessage(channel="#payflow-ops", text="hello")

    assert resp["ok"] is True
    first, second = stub.calls_to("chat.postMessage")
    assert (first.status, first.response["error"]) == (429, "ratelimited")
    assert second.status == 200
    assert len(stub.messages()) == 1  # the rejected attempt left no trace in the channel


def test_rate_limit_is_retried_by_async_client(stub: SlackApiStub) -> None:
    stub.fail_next("chat.postMessage", retry_after=0)

    async def post() -> bool:
        client = AsyncWebClient(
            token=TOKEN, base_url=stub.api_url, retry_handlers=[AsyncRateLimitErrorRetryHandler()]
        )
        return bool((await client.chat_postMessage(channel="#payflow-ops", text="hello"))["ok"])

    assert asyncio.run(post()) is True
    assert [c.status for c in stub.calls_to("chat.postMessage")] == [429, 200]


def test_injected_error_without_retry(client: WebClient, stub: SlackApiStub) -> None:
    stub.fail_next("chat.postMessage", error="channel_not_found")

    with pytest.raises(SlackApiError) as exc:
        client.chat_postMessage(channel="#payflow-ops", text="hi")
    assert exc.value.response["error"] == "channel_not_found"
    assert client.chat_postMessage(channel="#payflow-ops", text="hi")["ok"] is True


def test_files_upload_v2_end_to_end(client: WebClient, stub: SlackApiStub) -> None:
    channel = stub.channel_id("#payflow-ops")
    content = b"service,replicas\ncheckout,4\n\x00\xff"

    resp = client.files_upload_v2(
        channel=channel, content=content, filename="report.csv", title="Replicas", initial_comment="here"
    )

    [get_url] = stub.calls_to("files.getUploadURLExternal")
    [complete] = stub.calls_to("files.completeUploadExternal")
    file_id = resp["file"]["id"]
    assert get_url.params["filename"] == "report.csv"
    assert int(get_url.params["length"]) == len(content)
    assert complete.params["files"] == [{"id": file_id, "title": "Replicas"}]
    assert stub.uploads == {file_id: content}
    assert resp["file"]["name"] == "report.csv" and resp["file"]["size"] == len(content)
    [shared] = stub.messages(channel)
    assert shared.text == "here"
    assert [f["id"] for f in shared.files] == [file_id]


def test_async_files_upload_v2(stub: SlackApiStub) -> None:
    async def upload() -> str:
        client = AsyncWebClient(token=TOKEN, base_url=stub.api_url)
        resp = await client.files_upload_v2(channel="C0ROOM", content="log line\n", filename="deploy.log")
        return str(resp["file"]["id"])

    file_id = asyncio.run(upload())

    assert stub.uploads[file_id] == b"log line\n"
    assert stub.messages("C0ROOM")[0].files[0]["title"] == "deploy.log"


def test_complete_upload_of_unknown_file(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as exc:
        client.files_completeUploadExternal(files=[{"id": "F404", "title": "x"}], channel_id="C0ROOM")
    assert exc.value.response["error"] == "file_not_found"


def test_usergroups_users_list(client: WebClient) -> None:
    assert client.usergroups_users_list(usergroup="S0ONCALL")["users"] == ["U0ALICE", "U0BOB"]

    with pytest.raises(SlackApiError) as exc:
        client.usergroups_users_list(usergroup="S0NOPE")
    assert exc.value.response["error"] == "no_such_subteam"


def test_response_url_posts_are_recorded(stub: SlackApiStub) -> None:
    resp = WebhookClient(stub.response_url("x")).send(text="scaled", response_type="in_channel")

    assert (resp.status_code, resp.body) == (200, "ok")
    [posted] = stub.responses
    assert posted.method == "response_url"
    assert posted.params == {"text": "scaled", "response_type": "in_channel", "tag": "x"}


def test_subscribers_see_each_event(client: WebClient, stub: SlackApiStub) -> None:
    seen: list[Call] = []
    unsubscribe = stub.subscribe(seen.append)

    client.chat_postMessage(channel="#payflow-ops", text="one")
    WebhookClient(stub.response_url("cmd")).send(text="two")
    unsubscribe()
    client.chat_postMessage(channel="#payflow-ops", text="three")

    assert [event.method for event in seen] == ["chat.postMessage", "response_url"]


def test_wait_for_wakes_on_a_call_from_another_thread(client: WebClient, stub: SlackApiStub) -> None:
    worker = threading.Thread(target=lambda: client.chat_postMessage(channel="#payflow-ops", text="late"))
    worker.start()

    messages = stub.wait_for(lambda s: s.messages("#payflow-ops"))

    worker.join()
    assert messages[0].text == "late"


def test_wait_for_timeout_raises_with_summary(client: WebClient, stub: SlackApiStub) -> None:
    client.chat_postMessage(channel="#payflow-ops", text="only this")

    with pytest.raises(AssertionError) as exc:
        stub.wait_for(lambda s: s.calls_to("chat.update"), timeout=0.2)

    assert "chat.postMessage" in str(exc.value)
    assert TOKEN not in str(exc.value)


def test_reset_clears_records(client: WebClient, stub: SlackApiStub) -> None:
    client.chat_postMessage(channel="#payflow-ops", text="x")

    stub.reset()

    assert stub.calls == [] and stub.messages() == [] and stub.responses == [] and stub.uploads == {}


@pytest.mark.parametrize(
    "block",
    [
        {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}]},
        {"type": "header", "text": {"type": "plain_text", "text": "h" * 151}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11},
    ],
)
def test_blocks_over_slacks_per_block_limits_are_refused_like_slack(client: WebClient, block) -> None:
    """A message with one block over its limit is refused whole (invalid_blocks), as Slack does,
    so a view that would break in Slack breaks in the tests too."""
    with pytest.raises(SlackApiError) as refused:
        client.chat_postMessage(channel="C0OPS", text="t", blocks=[block])
    assert refused.value.response["error"] == "invalid_blocks"
    limit = {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3000}}
    assert client.chat_postMessage(channel="C0OPS", text="t", blocks=[limit])["ok"] is True
