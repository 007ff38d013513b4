"""The Bolt app: verify (Bolt's signature check), ack at once, hand the work on.

`process_before_response=True` sends the response as soon as the listener returns, instead of
Bolt's default of polling every 10 ms for the ack; so the listener must only parse and queue.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.blocks import ACTION_PREFIX
from bot.dispatch import Dispatcher, Invocation
from bot.jobs import Jobs
from bot.slack import MessageRef, SlackGateway

log = logging.getLogger(__name__)


class _TokenFromClient(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN itself and warns that our client's token wins; it is the same
    token, so the warning would only teach on-call people to ignore warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


_bolt_log = logging.getLogger("slack_bolt")
_bolt_log.addFilter(_TokenFromClient())


def invocation(command: dict[str, Any]) -> Invocation:
    return Invocation(
        user_id=str(command.get("user_id", "")),
        channel_id=str(command.get("channel_id", "")),
        channel_name=command.get("channel_name"),
        text=str(command.get("text", "")),
        response_url=command.get("response_url"),
    )


def build_bolt(
    dispatcher: Dispatcher,
    jobs: Jobs,
    slack: SlackGateway,
    *,
    signing_secret: str | None,
    command: str = "/payflow",
    verify_requests: bool = True,
) -> AsyncApp:
    app = AsyncApp(
        client=slack.client,
        signing_secret=signing_secret or "",
        process_before_response=True,
        request_verification_enabled=verify_requests,
        # we take slash commands and interactivity only: no Events API subscriptions to filter
        ignoring_self_events_enabled=False,
        ignoring_self_assistant_message_events_enabled=False,
        url_verification_enabled=False,
        attaching_function_token_enabled=False,
        attaching_conversation_kwargs_enabled=False,
        logger=_bolt_log,
    )

    @app.command(command)
    async def on_command(ack: Any, command: dict[str, Any]) -> None:
        accepted = dispatcher.accept(invocation(command))
        if accepted.ack is None:
            await ack()
        else:
            await ack(text=accepted.ack.text, blocks=accepted.ack.blocks)
        if accepted.job is not None:
            jobs.submit(accepted.job)

    @app.action(re.compile(f"^{re.escape(ACTION_PREFIX)}"))
    async def on_click(ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        container = body.get("container") or {}
        channel = body.get("channel") or {}
        inv = Invocation(
            user_id=str((body.get("user") or {}).get("id", "")),
            channel_id=str(channel.get("id") or container.get("channel_id") or ""),
            channel_name=channel.get("name"),
            response_url=body.get("response_url"),
        )
        ts = container.get("message_ts")
        message = MessageRef(inv.channel_id, str(ts)) if ts and inv.channel_id else None
        name = str(action.get("action_id", ""))[len(ACTION_PREFIX) :]
        accepted = dispatcher.accept_action(inv, name, str(action.get("value", "")), message)
        if accepted.job is not None:
            jobs.submit(accepted.job)

    @app.error
    async def on_error(error: Exception) -> None:
        log.exception("unhandled error in a Slack listener", exc_info=error)

    return app
