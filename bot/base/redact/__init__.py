"""The one redaction point: card data and credentials never reach Slack or a log.

Every byte the bot sends out passes `redact` (text) or `redact_payload` / `redact_file` (Slack
payloads and uploads), called by the Slack gateway and the log formatter, so no handler can
forget it. Rules, not a detector library: detect-secrets has no card-number plugin, no track
data, and flags hex trace IDs and git SHAs as high-entropy secrets; bench/redact.py measures both.

Properties the tests hold it to:
- Card numbers (13–19 digits, any mix of space, dash, dot, plus or underscore separators, glued
  to letters, inside URL-encoded or HTML-escaped text) are redacted when they carry a card
  scheme's prefix and pass the Luhn check, so timestamps, order IDs and Luhn-invalid numbers stay
  readable. The marker keeps no digits: last four next to an order ID and a time is enough to
  find the cardholder, and Slack keeps, indexes and exports everything it is sent.
- Idempotent: `redact(redact(x)) == redact(x)`, so a handler may redact and the gateway again.
- Line-preserving: the number of lines never changes; a PEM key split over log lines is redacted
  line by line, so `redact_lines` can redact a log excerpt as a whole and keep its lines.
- Linear: every pattern is anchored on a literal or bounded, so 1 MB of adversarial input costs
  milliseconds, not minutes (bench/redact.py).
"""

from bot.base.redact.cards import luhn_valid
from bot.base.redact.markers import CARD, PRIVATE_KEY, REDACTED, SECRET, TOKEN, TRACK
from bot.base.redact.payloads import redact_blocks, redact_file, redact_payload
from bot.base.redact.text import clip, redact, redact_lines

__all__ = [
    "CARD",
    "PRIVATE_KEY",
    "REDACTED",
    "SECRET",
    "TOKEN",
    "TRACK",
    "clip",
    "luhn_valid",
    "redact",
    "redact_blocks",
    "redact_file",
    "redact_lines",
    "redact_payload",
]
