"""The one place that knows Slack's message format: views → Block Kit (plus a plain-text fallback
for notifications and screen readers). `kit` holds the pieces and the fitting rule; each other
module registers the renderings of a family of views."""

from bot.chat.blocks import changes, digests, metrics, report, status
from bot.chat.blocks.kit import (
    ACTION_PREFIX,
    MAX_BLOCKS,
    SECTION_LIMIT,
    TEXT_LIMIT,
    Fitted,
    Row,
    action_id,
    fit_rows,
    render,
)
from bot.gateways.slack import Attachment, Message

__all__ = [
    "ACTION_PREFIX",
    "MAX_BLOCKS",
    "SECTION_LIMIT",
    "TEXT_LIMIT",
    "Attachment",
    "Fitted",
    "Message",
    "Row",
    "action_id",
    "changes",
    "digests",
    "fit_rows",
    "metrics",
    "render",
    "report",
    "status",
]
