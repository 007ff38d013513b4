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

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from urllib.parse import quote, unquote

REDACTED = "[REDACTED]"
CARD = "[REDACTED card]"
TRACK = "[REDACTED track data]"
PRIVATE_KEY = "[REDACTED private key]"
TOKEN = "[REDACTED token]"
SECRET = "[REDACTED secret]"
_MARK = "[REDACTED"

_Rule = tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


# ---------------------------------------------------------------- card numbers

# Issuer prefixes of the schemes a PCI assessor counts (Visa, Mastercard incl. 2-series, Amex,
# Discover, Diners, JCB, UnionPay, Maestro, Mir, RuPay, Troy). A prefix keeps epoch micro/nano
# seconds (17…) and compact timestamps (20…) out, which Luhn alone passes one time in ten.
_CARD_PREFIX = re.compile(r"4|5[0-9]|6|3[0456789]|222[1-9]|22[3-9]|2[3-6]|27[01]|2720|220[0-4]|8[12]|9792")


def _is_card(number: str) -> bool:
    return 13 <= len(number) <= 19 and bool(_CARD_PREFIX.match(number)) and luhn_valid(number)


# Digit groups joined by at most three separator characters; `_card` decides what is a card.
# A run needs 13 digits, so ordinary numbers never reach the callback.
_SEP = r"[ \t.+_\-]{1,3}"
_CARD_RUN = re.compile(rf"(?<![0-9])[0-9]+(?:{_SEP}[0-9]+)*")
_SPLIT = re.compile(rf"({_SEP})")


def _card_end(groups: list[str], i: int) -> int | None:
    """The end of the longest card starting at group `i`: one unbroken number, or (as card schemes
    print them) a four-digit first group followed by groups of 3–6, the last one 1–6 digits."""
    first = groups[i]
    if len(first) >= 13:
        if _is_card(first):
            return i + 1
        return _card_end_zero_padded(first, i)
    if len(first) != 4:
        return None
    best, digits = None, 4
    for j in range(i + 1, len(groups)):
        size = len(groups[j])
        digits += size
        if size > 6 or digits > 19:
            break
        if digits >= 13 and _is_card("".join(groups[i : j + 1])):
            best = j + 1
        if size < 3:  # only the last group may be this short
            break
    return best


def _card_end_zero_padded(run: str, i: int) -> int | None:
    """Fixed-width fields pad a card with zeros (`0004111111111111111`)."""
    stripped = run.lstrip("0")
    return i + 1 if stripped != run and _is_card(stripped) else None


_HEX_TOKEN = re.compile(r"[0-9A-Fa-f]+")
_ID_KEY = re.compile(r"(?i)(?:trace|span|parent)[_.-]?id[\"']?[ \t]*[=:][ \t]*[\"']?$")


def _not_a_card_here(text: str, start: int, end: int) -> bool:
    """Digits inside a hash or hex ID (git SHA, image digest, hex trace ID), or a decimal trace
    ID under its key (Datadog's 64-bit IDs have up to 20 digits): never card numbers."""
    if _ID_KEY.search(text, max(0, start - 24), start):
        return True
    if not (
        (start and text[start - 1] in "abcdefABCDEF") or (end < len(text) and text[end] in "abcdefABCDEF")
    ):
        return False
    left = start
    while left and text[left - 1] in "0123456789abcdefABCDEF":
        left -= 1
    token = _HEX_TOKEN.match(text, left)
    return (
        token is not None and token.end() - left >= 24 and not text[token.end() : token.end() + 1].isalnum()
    )


def _glued_suffix(run: str) -> int | None:
    """Where a card starts inside a run glued to a word (`ref7` + card): the longest suffix that
    is a card. Only for runs glued to letters: a free-standing long number (an epoch in
    microseconds, a Luhn-invalid order ID) has suffixes that pass Luhn one time in ten."""
    for start in range(1, len(run) - 12):
        if len(run) - start <= 19 and _is_card(run[start:]):
            return start
    return None


def _card(match: re.Match[str]) -> str:
    """Redact every card inside a run of digit groups: `txn 42 4111 1111 1111 1111` must not
    hide the card behind the number in front of it (the run as a whole fails the Luhn check)."""
    run = match.group(0)
    if sum(c.isdigit() for c in run) < 13:
        return run
    text, start = match.string, match.start()
    if _not_a_card_here(text, start, match.end()):
        return run
    parts = _SPLIT.split(run)
    groups, separators = parts[0::2], parts[1::2]
    glued = start > 0 and (text[start - 1].isalpha() or text[start - 1] == "_")
    out: list[str] = []
    i = 0
    while i < len(groups):
        end = _card_end(groups, i)
        if end is not None:
            out.append(CARD)
        elif i == 0 and glued and 13 < len(groups[0]) <= 23 and (cut := _glued_suffix(groups[0])):
            out.append(groups[0][:cut] + CARD)
            end = 1
        else:
            out.append(groups[i])
            end = i + 1
        if end < len(groups):
            out.append(separators[end - 1])
        i = end
    return "".join(out)


# Magnetic stripe: sensitive authentication data, never to be kept after authorisation, so the
# whole track goes (name, expiry, service code, discretionary data with CVV1/PVV), not just the PAN.
_TRACK1 = re.compile(r"%?B([0-9]{13,19})\^[^^\n]{0,26}\^[0-9]{0,4}[^?\s]{0,80}\??")
_TRACK2 = re.compile(r";?(?<![0-9])([0-9]{13,19})[=D][0-9]{4}[0-9A-Za-z]{0,40}\??")


def _track(match: re.Match[str]) -> str:
    return TRACK if _is_card(match.group(1)) else match.group(0)


# ---------------------------------------------------------------- keys, tokens, credentials

_PEM_BEGIN = re.compile(r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
_PEM_END = re.compile(r"-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
_PEM_BODY = re.compile(r"(?:^|\s)(?:[A-Za-z0-9+/=]{1,100}|(?:Proc-Type|DEK-Info|Comment):.*)\s*$|^\s*$")
_PEM_MAX_LINES = 120  # an 8192-bit RSA key is ~100 lines: past that an unclosed block is over

# Shapes that are secrets wherever they appear, whatever key they sit under.
_TOKENS: list[_Rule] = [
    (re.compile(r"xox(?:[abposre]|e\.xox[bp])-[A-Za-z0-9-]{8,}"), TOKEN),  # Slack bot/user/refresh
    (re.compile(r"xapp-[0-9]-[A-Za-z0-9-]{8,}"), TOKEN),  # Slack app-level (Socket Mode)
    (
        re.compile(r"(hooks\.slack(?:-gov)?\.com/(?:services|workflows|triggers)/)[A-Za-z0-9_/-]{8,}"),
        r"\1" + REDACTED,
    ),
    (re.compile(r"(?<![A-Za-z0-9])(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{8,}"), TOKEN),  # Stripe secret
    (re.compile(r"(?<![A-Za-z0-9])whsec_[A-Za-z0-9]{8,}"), TOKEN),  # Stripe webhook signing secret
    (
        re.compile(
            r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA)[A-Z0-9]{16}"
        ),
        TOKEN,
    ),
    (re.compile(r"(?<![A-Za-z0-9])(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})"), TOKEN),
    (re.compile(r"(?<![A-Za-z0-9])glpat-[A-Za-z0-9_-]{20,}"), TOKEN),  # GitLab
    (re.compile(r"AIza[0-9A-Za-z_-]{35}"), TOKEN),  # Google API key
    (re.compile(r"(?<![A-Za-z0-9])ya29\.[0-9A-Za-z_-]{20,}"), TOKEN),  # Google OAuth access token
    (re.compile(r"GOCSPX-[0-9A-Za-z_-]{20,}"), TOKEN),  # Google OAuth client secret
    (re.compile(r"(?<![A-Za-z0-9])npm_[A-Za-z0-9]{36}"), TOKEN),
    (re.compile(r"(?<![A-Za-z0-9])SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}"), TOKEN),  # SendGrid
    (re.compile(r"(?<![A-Za-z0-9])sq0(?:atp|csp)-[A-Za-z0-9_-]{20,}"), TOKEN),  # Square
    (re.compile(r"access_token\$(?:production|sandbox)\$[0-9a-z]{8,}\$[0-9a-f]{16,}"), TOKEN),  # Braintree
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), "[REDACTED jwt]"),
]

# user:password@ in any URL; the user may be empty (redis://:pw@host) and an unescaped @ inside
# the password must not leave its tail behind, so the match runs to the last @ before the host.
_URL_CREDENTIALS = re.compile(
    r"\b([a-z][a-z0-9+.-]{0,30}://)([^:/@\s]{0,256}):([^/\s]{1,256})@(?=[^@/\s]*(?:[/\s?#]|$))",
    re.IGNORECASE,
)

_NOT_MARK = r"(?!\[REDACTED)"
# Authorization headers of any scheme (Bearer, Basic, Token, Digest, AWS4-HMAC-SHA256 …): a
# one-token scheme stays readable with its credential gone; anything else goes to the end of the
# field, since Digest and AWS4 carry their secrets in comma-separated parameters.
_AUTH_HEADER = re.compile(
    r"(?i)((?:proxy-)?authorization(?:&quot;|\\?[\"'])?[ \t]*+[:=][ \t]*+)(&quot;|\\?[\"'])?([^\n]+)"
)
_ONE_TOKEN_SCHEME = re.compile(
    r"(?i)(bearer|basic|token|apikey|api-key|key|negotiate|ntlm|dpop|ssws|sso-key)([ \t]+)(\S+)(.*)"
)
_BEARER = re.compile(rf"(?i)\b(bearer[ \t]++){_NOT_MARK}([A-Za-z0-9._~+/-]{{8,}}=*)")
_COOKIE = re.compile(rf"(?i)\b((?:set-)?cookie[ \t]*+:[ \t]*+){_NOT_MARK}([^\n]+)")

# Words that make a key secret, however it is prefixed (DB_PASSWORD, authToken, client_secret …).
_STRONG = (
    r"password|passwd|passphrase|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|"
    r"secret[_-]?key|credentials?|signature|session[_-]?id|"
    r"card[_-]?number|card[_-]?no|cc[_-]?num(?:ber)?|primary[_-]?account[_-]?number|"
    r"cvv2?|cvc2?|cav2|security[_-]?code|pin[_-]?block|track[_-]?[12]|track[_-]?data"
)
# Short words that must stand on their own (`pan=` but not `span=`, `cardPan=`, `pin` not `spin`).
_WEAK = r"pan|pin|pwd|pass|csc|otp"
_KEY = rf"(?:{_STRONG}|(?<![A-Za-z0-9])(?:{_WEAK})|(?<=[a-z])(?-i:Pan|Pin|Pwd|Pass|Csc|Otp))"
_QUOTE = r"(?:&quot;|\\?[\"'])"
_KEY_VALUE = re.compile(
    rf"(?i)({_KEY}{_QUOTE}?[ \t]*(?:=>|[=:])[ \t]*)"
    r"(\\\"(?:[^\"\\\n]|\\[^\"\n])*+\\\"|\"(?:[^\"\\\n]|\\.)*+\"|'[^'\n]*+'"
    r"|&quot;(?:(?!&quot;)[^\n])*+&quot;|(?:&quot;|\\?[\"'])?[^\s,;&\"'<>]++)"
)
# `--password VALUE`, `--db-token VALUE`, `-p VALUE` right after mysql/sshpass.
_CLI_FLAG = re.compile(
    rf"(?i)((?<![\w-])--?[A-Za-z0-9_-]{{0,30}}(?:{_STRONG}|(?<![A-Za-z0-9])(?:{_WEAK}))[ \t]++)"
    rf"{_NOT_MARK}(?!-)(\S++)"
)
_MYSQL_P = re.compile(
    rf"\b((?:mysql\w{{0,10}}|sshpass)\b[^\n]{{0,200}}?[ \t]-p[ \t]?+){_NOT_MARK}([^\s-]\S*+)"
)
# <Password>…</Password>, <ns:ApiToken>…</…>, <CardNumber>…, also HTML-escaped (&lt;Password&gt;).
_XML = re.compile(
    rf"(?i)((?:<|&lt;)(?:[\w.-]{{1,40}}:)?[\w.-]{{0,40}}(?:{_STRONG}|(?<![A-Za-z0-9])(?:{_WEAK}))[\w.-]{{0,40}}"
    r"(?:\s[^<>\n]{0,200})?(?:>|&gt;))"
    r"((?:(?!&lt;)[^<\n])++)"
)

# Keys and secret keys with no label (an AWS secret key, a PEM body line out of its block): a long
# base64 run mixing cases and digits. Hex (git SHAs, digests, trace IDs), UUIDs, pod names and
# paths (one '/' in ten characters or more) do not qualify.
_BASE64_RUN = re.compile(r"(?<![A-Za-z0-9+/_.-])[A-Za-z0-9+/]{40,}={0,2}(?![A-Za-z0-9+/=_-])")


def _base64(match: re.Match[str]) -> str:
    run = match.group(0)
    if run.count("/") * 10 > len(run) or run.startswith("/"):
        return run
    has = (any(c.isupper() for c in run), any(c.islower() for c in run), any(c.isdigit() for c in run))
    return SECRET if all(has) else run


def _value(match: re.Match[str]) -> str:
    """Keep the key and the quotes, drop the value; a value that is already a marker stays."""
    head, value = match.group(1), match.group(2)
    for quote_ in ('\\"', '"', "'", "&quot;"):
        if len(value) >= 2 * len(quote_) and value.startswith(quote_) and value.endswith(quote_):
            inner = value[len(quote_) : -len(quote_)]
            if not inner or inner.startswith(_MARK):
                return match.group(0)
            return f"{head}{quote_}{REDACTED}{quote_}"
    if value.startswith(_MARK):
        return match.group(0)
    tail = ""
    for close, open_ in ((")", "("), ("]", "["), ("}", "{")):  # `{password=x}`: keep the brace
        while value.endswith(close) and value.count(close) > value.count(open_):
            value, tail = value[:-1], close + tail
    return f"{head}{REDACTED}{tail}" if value else match.group(0)


def _second(marker: str) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        return match.group(1) + marker

    return replace


def _auth(match: re.Match[str]) -> str:
    """In a quoted field (JSON, a repr) the credentials end at the closing quote, elsewhere at
    the end of the line."""
    quote_, rest = match.group(2) or "", match.group(3)
    head, tail = match.group(1) + quote_, ""
    if quote_ and quote_ in rest:
        rest, tail = rest[: rest.index(quote_)], rest[rest.index(quote_) :]
    if rest.startswith(_MARK):
        return match.group(0)
    one = _ONE_TOKEN_SCHEME.fullmatch(rest)
    if one is None:
        return head + REDACTED + tail
    if one.group(3).startswith(_MARK):
        return match.group(0)
    return f"{head}{one.group(1)}{one.group(2)}{REDACTED}{one.group(4)}{tail}"


_TRACKS: list[_Rule] = [(_TRACK1, _track), (_TRACK2, _track)]
_RULES: list[_Rule] = [
    *_TOKENS,
    (_URL_CREDENTIALS, r"\1\2:" + REDACTED.replace("\\", "\\\\") + "@"),
    (_AUTH_HEADER, _auth),
    (_BEARER, _second(REDACTED)),
    (_COOKIE, _second(REDACTED)),
    (_CLI_FLAG, _second(REDACTED)),
    (_MYSQL_P, _second(REDACTED)),
    (_XML, _second(REDACTED)),
    (_KEY_VALUE, _value),
    (_CARD_RUN, _card),
    (_BASE64_RUN, _base64),
]


# ---------------------------------------------------------------- whole text

_PERCENT_TOKEN = re.compile(r"[^\s%]*(?:%[0-9A-Fa-f]{2}[^\s%]*)+")
_KEEP_IN_URL = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def _percent(match: re.Match[str]) -> str:
    """URL-encoded text (`%22pan%22%3A%224111…`, query strings, form bodies) is decoded, redacted
    and put back; readable where it was redacted, escapes kept for what must not be raw (%0A)."""
    token = match.group(0)
    decoded = token
    for _ in range(3):  # double encoding, but bounded
        again = unquote(decoded, errors="replace")
        if again == decoded:
            break
        decoded = again
    clean = _redact_plain(decoded)
    return token if clean == decoded else quote(clean, safe=_KEEP_IN_URL)


def _pem_lines(text: str) -> str:
    """Private keys, also when a log wrote one line per record: from BEGIN to END (or, when END
    never comes, for as long as the lines look like key material) every line is replaced."""
    lines = text.split("\n")
    out: list[str] = []
    inside = 0  # lines of the open block so far, 0: none open
    for line in lines:
        if inside:
            end = _PEM_END.search(line)
            if end:
                line, inside = PRIVATE_KEY + line[end.end() :], 0
            elif inside <= _PEM_MAX_LINES and _PEM_BODY.search(line):
                out.append(PRIVATE_KEY)
                inside += 1
                continue
            else:
                inside = 0
        while (begin := _PEM_BEGIN.search(line)) is not None:
            end = _PEM_END.search(line, begin.end())
            if end is None:
                line, inside = line[: begin.start()] + PRIVATE_KEY, 1
                break
            line = line[: begin.start()] + PRIVATE_KEY + line[end.end() :]
        out.append(line)
    return "\n".join(out)


def _redact_plain(text: str) -> str:
    if "PRIVATE KEY" in text:
        text = _pem_lines(text)
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


def redact(text: str) -> str:
    """`text` with card data and credentials replaced by `[REDACTED …]` markers; same lines."""
    for pattern, replacement in _TRACKS:  # before URL decoding: `%B4111…^` is not an escape
        text = pattern.sub(replacement, text)
    if "%" in text:
        text = _PERCENT_TOKEN.sub(_percent, text)
    return _redact_plain(text)


def redact_lines(lines: list[str]) -> list[str]:
    """Redact lines as one text (a key split over lines is seen whole), one result per line."""
    out = redact("\n".join(lines)).split("\n")
    return out if len(out) == len(lines) else [redact(line) for line in lines]


# ---------------------------------------------------------------- payloads and files

# Values that are our own identifiers or Block Kit structure, never free text.
_STRUCTURAL = frozenset(
    {"type", "action_id", "block_id", "style", "channel", "ts", "thread_ts", "user", "response_type"}
)


def redact_payload(value: object) -> object:
    """Every string inside a Slack payload (text, blocks, attachments, button values, URLs),
    redacted; structure and identifiers untouched."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple):
        return [redact_payload(v) for v in value]
    if isinstance(value, dict):
        return {k: (v if k in _STRUCTURAL else redact_payload(v)) for k, v in value.items()}
    return value


redact_blocks = redact_payload

_BINARY_MAGIC = (
    b"\x89PNG",
    b"\xff\xd8\xff",
    b"GIF8",
    b"%PDF",
    b"PK\x03\x04",
    b"\x1f\x8b",
    b"BZh",
    b"\xfd7zXZ",
    b"RIFF",
    b"\x00asm",
    b"\x7fELF",
)
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _text_encoding(data: bytes) -> str | None:
    """The encoding of a text file, or None for binary data (images, archives) that must go out
    byte for byte: a BOM, UTF-16 without one (NULs on one side), UTF-8, else Latin-1 when the
    bytes hold almost no control characters."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding
    if data.startswith(_BINARY_MAGIC):
        return None
    head = data[:8192]
    if len(head) >= 4 and b"\x00" in head:
        odd, even = head[1::2].count(0), head[0::2].count(0)
        if odd > len(head) * 0.4 and even == 0:
            return "utf-16-le"
        if even > len(head) * 0.4 and odd == 0:
            return "utf-16-be"
        return None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        controls = sum(b < 0x20 and b not in b"\t\n\r\f\b\x1b" for b in head)
        return "latin-1" if controls * 100 <= len(head) else None
    return "utf-8"


def redact_file(content: bytes | str) -> bytes:
    """File content as it may leave: text in any encoding decoded, redacted and encoded back the
    same way (BOM included); binary content (a PNG chart) unchanged, byte for byte."""
    if isinstance(content, str):
        return redact(content).encode()
    encoding = _text_encoding(content)
    if encoding is None:
        return content
    text = content.decode(encoding, errors="surrogateescape" if encoding == "utf-8" else "strict")
    clean = redact(text)
    if clean == text:
        return content
    if encoding in ("utf-16", "utf-32"):  # the codec writes the BOM itself, in native order
        bom = content[: 4 if encoding == "utf-32" else 2]
        return bom + clean.encode(_bomless(bom))
    return clean.encode(encoding, errors="surrogateescape" if encoding == "utf-8" else "strict")


def _bomless(bom: bytes) -> str:
    return {
        codecs.BOM_UTF32_LE: "utf-32-le",
        codecs.BOM_UTF32_BE: "utf-32-be",
        codecs.BOM_UTF16_LE: "utf-16-le",
        codecs.BOM_UTF16_BE: "utf-16-be",
    }[bom]
