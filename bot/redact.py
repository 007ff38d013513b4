"""Scrub secrets and card numbers from anything before it is posted to Slack.

Applied by the Slack gateway to every outgoing message, so no handler can forget it. Card
numbers are redacted only when they pass the Luhn check: order IDs and amounts stay readable.
Redacting is idempotent, so text redacted by a handler (log excerpts) passes the gateway unchanged.
"""

from __future__ import annotations

import re

_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,}(?![\w-])")  # a run of digit groups; `_card` decides
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)\b(bearer|authorization:[ \t]*basic)\s+[A-Za-z0-9._~+/=-]{8,}")
_SLACK_TOKEN = re.compile(r"\bxox[abprse]-[A-Za-z0-9-]{10,}")
# Any key that ends like a secret (DB_PASSWORD, auth_token, X-Api-Key, aws_secret_access_key …);
# the value stops at the end of the line, so a bare `password:` never swallows the next line.
_KEY_VALUE = re.compile(
    r"(?i)(?<![A-Za-z0-9])([A-Za-z0-9_.-]*?(?:password|passwd|pwd|secret|token|api[_-]?key|"
    r"access[_-]?key|private[_-]?key|secret[_-]?key|credentials?))"
    r"([\"']?[ \t]*[=:][ \t]*)(\"[^\"\n]*\"|'[^'\n]*'|[^\s,;&\"']+)"
)
# user:password@ in any URL; the user may be empty (redis://:pw@host) and an unescaped @ inside
# the password must not leave its tail behind, so the match runs to the last @ before the host.
_URL_CREDENTIALS = re.compile(
    r"\b([a-z][a-z0-9+.-]*://)([^:/@\s]*):([^/\s]+)@(?=[^@/\s]*(?:[/\s?#]|$))", re.IGNORECASE
)


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _card_end(groups: list[str], separators: list[str], i: int) -> int | None:
    """The end of the longest card starting at group `i`: 13–19 digits passing Luhn, one kind of
    separator, and (when grouped) a four-digit first group, as every card scheme prints them."""
    if len(groups[i]) > 19:
        return None
    ends, digits = [], 0
    for j in range(i, len(groups)):
        digits += len(groups[j])
        if digits > 19 or (j > i and separators[j - 1] != separators[i]):
            break
        ends.append(j + 1)
    for end in reversed(ends):
        number = "".join(groups[i:end])
        if len(number) >= 13 and (end == i + 1 or len(groups[i]) == 4) and luhn_valid(number):
            return end
    return None


def _card(match: re.Match[str]) -> str:
    """Redact every card inside a run of digit groups: `txn 42 4111 1111 1111 1111` must not
    hide the card behind the number in front of it (the run as a whole fails the Luhn check)."""
    parts = re.split(r"([ -])", match.group(0))
    groups, separators = parts[0::2], parts[1::2]
    out: list[str] = []
    i = 0
    while i < len(groups):
        end = _card_end(groups, separators, i)
        if end is None:
            out.append(groups[i])
            end = i + 1
        else:
            out.append("[REDACTED card]")
        if end < len(groups):
            out.append(separators[end - 1])
        i = end
    return "".join(out)


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
