"""The markers every rule writes, in one place: idempotence rests on rules recognising them."""

from __future__ import annotations

REDACTED = "[REDACTED]"
CARD = "[REDACTED card]"
TRACK = "[REDACTED track data]"
PRIVATE_KEY = "[REDACTED private key]"
TOKEN = "[REDACTED token]"
SECRET = "[REDACTED secret]"
_MARK = "[REDACTED"
