"""Where a posted message lives: kept in records (approvals, alert groups) to update it later."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MessageRef:
    channel: str
    ts: str
