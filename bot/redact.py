"""Scrub secrets and card numbers from anything before it is posted to Slack.

Applied by the Slack gateway to every outgoing message, so no handler can forget it. Card
numbers are redacted only when they pass the Luhn check: order IDs and amounts stay readable.
"""

from __future__ import annotations

import re

_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}")
_SLACK_TOKEN = re.compile(r"\bxox[abprse]-[A-Za-z0-9-]{10,}")
_KEY_VALUE = re.compile(
    r"(?i)\b(password|passwd|pwd|secret|client_secret|token|access_token|api_key|apikey)"
    r"([\"']?\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&\"']+)"
)
_URL_CREDENTIALS = re.compile(r"\b([a-z][a-z0-9+.-]*://)([^:/@\s]+):([^@/\s]+)@", re.IGNORECASE)


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    raw = match.group(0)
    digits = re.sub(r"[ -]", "", raw)
    separators = set(re.findall(r"[ -]", raw))
    if 13 <= len(digits) <= 19 and len(separators) <= 1 and luhn_valid(digits):
        return "[REDACTED card]"
    return raw


def redact(text: str) -> str:
    text = _URL_CREDENTIALS.sub(r"\1\2:[REDACTED]@", text)
    text = _JWT.sub("[REDACTED jwt]", text)
    text = _BEARER.sub(r"\1 [REDACTED]", text)
    text = _SLACK_TOKEN.sub("[REDACTED token]", text)
    text = _KEY_VALUE.sub(r"\1\2[REDACTED]", text)
    return _CARD.sub(_card, text)


def redact_blocks(value: object) -> object:
    """Every string inside a Block Kit structure, redacted; structure and keys untouched."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [redact_blocks(v) for v in value]
    if isinstance(value, dict):
        return {
            k: (v if k in {"type", "action_id", "block_id", "style"} else redact_blocks(v))
            for k, v in value.items()
        }
    return value
