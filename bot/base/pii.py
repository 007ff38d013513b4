"""Customer identifiers as the bot may show them: an email address is masked (`j***@example.com`)
everywhere but in the requester's own ephemeral view, and only addresses of a sane shape are
accepted as input at all."""

from __future__ import annotations

import re

MAX_EMAIL = 254  # RFC 5321's limit on a forward path
# Deliberately narrower than RFC 5322: no quotes, no comments, no IP literals. An address PayFlow's
# sign-up accepted fits; anything else is refused before it reaches PostgreSQL.
_LOCAL = r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(rf"{_LOCAL}@{_LABEL}(?:\.{_LABEL})+")


def is_email(text: str) -> bool:
    return len(text) <= MAX_EMAIL and _EMAIL.fullmatch(text) is not None


def mask_email(email: str) -> str:
    """`jane.doe@example.com` → `j***@example.com`: enough to tell two users apart in a thread,
    not enough to contact or look up anyone."""
    local, at, domain = email.partition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


_ANY_EMAIL = re.compile(rf"{_LOCAL}@{_LABEL}(?:\.{_LABEL})+")


def mask_emails(text: str) -> str:
    """Every address inside `text` masked: free text (a reason, a server's error) that names a
    customer is shown as the card shows them."""
    return _ANY_EMAIL.sub(lambda m: mask_email(m.group(0)), text) if "@" in text else text
