"""Slack's mrkdwn, the little of it that view text needs: escaping outside text and dates that
every reader sees in their own timezone. Views carry mrkdwn text; `bot/chat/blocks` lays it out."""

from __future__ import annotations

from datetime import datetime


def escape(text: str) -> str:
    """Neutralise Slack's control characters in text that came from outside (users, the cluster)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_date(at: datetime) -> str:
    """A timestamp every reader sees in their own timezone; the fallback is UTC."""
    fallback = at.strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"<!date^{int(at.timestamp())}^{{date_num}} {{time_secs}}|{fallback}>"
