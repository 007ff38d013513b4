"""Durations as people type them in Slack and as PromQL writes them (`15m`, `1h`, `24h`, `7d`).

One spelling for both sides, so a window the user typed can go into a query unchanged.
"""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^([0-9]{1,5})([smhdw])$")


class BadDuration(ValueError):
    """`str()` says what was wrong, fit to show a user."""


def seconds(text: str) -> int:
    """`"15m"` → 900. A single number and unit; raises `BadDuration` otherwise."""
    m = _DURATION.match(text.strip().lower())
    if not m or int(m.group(1)) == 0:
        raise BadDuration(f"`{text}` is not a duration like 15m, 1h or 24h")
    return int(m.group(1)) * _UNITS[m.group(2)]


def bounded(text: str, lowest: int, highest: int) -> int:
    """Seconds of `text`, refused outside [lowest, highest] with a message naming the bounds."""
    value = seconds(text)
    if not lowest <= value <= highest:
        raise BadDuration(f"`{text}` is outside {label(lowest)}–{label(highest)}")
    return value


def is_duration(text: str) -> bool:
    return bool(_DURATION.match(text.strip().lower()))


def label(value: int) -> str:
    """900 → `15m`; the largest unit that divides the value, as PromQL accepts it."""
    for unit, size in sorted(_UNITS.items(), key=lambda kv: -kv[1]):
        if unit != "w" and value % size == 0:
            return f"{value // size}{unit}"
    return f"{value}s"
