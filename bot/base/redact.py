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

import base64
import codecs
import re
import unicodedata
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


# Digit groups and separators, at least 13 characters from digit to digit; `_card` decides.
_SEPARATORS = " \t.+_-"
_SPLIT = re.compile(r"([ \t.+_\-]+)")


def _card_end(groups: list[str], separators: list[str], i: int) -> int | None:
    """The end of the longest card starting at group `i`: one unbroken number, or (as card schemes
    print them) a four-digit first group followed by groups of 3–6, the last one 1–6 digits, at
    most three separator characters between groups."""
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
        if size > 6 or digits > 19 or len(separators[j - 1]) > 3:
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


_HEX = frozenset("0123456789abcdefABCDEF")
_HEX_LETTERS = frozenset("abcdefABCDEF")
# ObjectID, MD5 and hex trace IDs, SHA-1 (git), SHA-224/256 (digests), SHA-384/512: by length, so
# that every digit run inside one token gets the same answer (a redaction must not change it).
_HEX_ID_LENGTHS = frozenset({24, 32, 40, 48, 56, 64, 96, 128})
_ID_KEY = re.compile(r"(?i)(?:trace|span|parent)[_.-]?id[\"']?[ \t]*[=:][ \t]*[\"']?$")


def _not_a_card_here(text: str, start: int, end: int) -> bool:
    """Digits inside a hash, hex ID or UUID (git SHA, image digest, hex trace ID), or a decimal
    trace ID under its key (Datadog's 64-bit IDs have up to 20 digits): never card numbers."""
    if _ID_KEY.search(text, max(0, start - 24), start):
        return True
    around = text[start - 1 : start] + text[end : end + 1]
    if not any(c in _HEX_LETTERS or c == "-" for c in around):
        return False
    return _token_around(text, start, end, _HEX | {"-"}, _UUID.fullmatch) or _token_around(
        text, start, end, _HEX, lambda token: len(token) in _HEX_ID_LENGTHS and not token.isdigit()
    )


def _token_around(
    text: str, start: int, end: int, chars: frozenset[str], test: Callable[[str], object]
) -> bool:
    """Whether the token of `chars` around `text[start:end]`, bounded by no letter or digit,
    passes `test`."""
    if any(c not in chars for c in text[start:end]):
        return False
    left, right = start, end
    while left and text[left - 1] in chars:
        left -= 1
    while right < len(text) and text[right] in chars:
        right += 1
    if (left and text[left - 1].isalnum()) or text[right : right + 1].isalnum():
        return False
    return bool(test(text[left:right]))


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


# Lengths a scheme really issues, by prefix, for cards glued after a digit (see `_glued_suffix`).
_ISSUED = {13: re.compile(r"4"), 14: re.compile(r"3[689]|30[0-5]"), 15: re.compile(r"3[47]")}


def _glued_suffix(run: str) -> int | None:
    """Where a card starts inside a run glued to a word and a digit (`ref7` + card; up to three
    digits before a 16- or 19-digit card). Only for runs glued to letters, and only lengths the
    scheme issues: the suffixes of any long number pass Luhn one time in ten; this way a glued
    Luhn-invalid 16-digit number looks like a card one time in five hundred, a free-standing one
    never."""
    for start in range(1, min(4, len(run) - 12)):
        card = run[start:]
        issued = _ISSUED.get(len(card))
        shaped = len(card) in (16, 19) or (start == 1 and issued is not None and issued.match(card))
        if shaped and _is_card(card):
            return start
    return None


_EPOCH = re.compile(r"1[4-9][0-9]{11}(?:[0-9]{3}){0,2}")  # seconds since 2014 in ms, µs or ns


def _glued_card(groups: list[str], separators: list[str], i: int) -> tuple[int, int] | None:
    """A card whose group `i` has a word and one to three digits glued in front (`ref9` + card):
    (where the card starts in that group, the group after the card)."""
    first = groups[i]
    if 5 <= len(first) <= 7 and len(groups) > i + 1:  # printed in groups: `ref94111 1111 1111 1111`
        stop = _card_end([first[-4:], *groups[i + 1 :]], separators[i:], 0)
        return None if stop is None else (len(first) - 4, i + stop)
    if 14 <= len(first) <= 22 and not _EPOCH.fullmatch(first):
        cut = _glued_suffix(first)
        return None if cut is None else (cut, i + 1)
    return None


def _card(text: str, start: int, end: int) -> str:
    """Redact every card inside a run of digit groups: `txn 42 4111 1111 1111 1111` must not
    hide the card behind the number in front of it (the run as a whole fails the Luhn check)."""
    run = text[start:end]
    if _not_a_card_here(text, start, end):
        return run
    parts = _SPLIT.split(run)
    groups, separators = parts[0::2], parts[1::2]
    glued = start > 0 and (text[start - 1].isalpha() or text[start - 1] == "_")
    out: list[str] = []
    i = 0
    while i < len(groups):
        stop = _card_end(groups, separators, i)
        if stop is not None:
            out.append(CARD)
        elif (glued if i == 0 else separators[i - 1].endswith("_")) and (
            glued_stop := _glued_card(groups, separators, i)
        ) is not None:
            cut, stop = glued_stop
            out.append(groups[i][:cut] + CARD)
        else:
            out.append(groups[i])
            stop = i + 1
        if stop < len(groups):
            out.append(separators[stop - 1])
        i = stop
    return "".join(out)


# ---------------------------------------------------------------- keys, tokens, credentials

# Every rule is its own regex starting with a literal or a small set of characters, so that the
# regex engine skips ahead in C to where a match can start: one merged alternation, or a
# lookbehind in front, makes it try every position (ten times slower, bench/redact.py).
_NOT_MARK = r"(?!\[redacted)"  # in rules that scan the lower-cased text
_PEM_BEGIN = re.compile(r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
_PEM_END = re.compile(r"-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
_PEM_BODY = re.compile(r"(?:^|\s)(?:[A-Za-z0-9+/=]{1,100}|(?:Proc-Type|DEK-Info|Comment):.*)\s*$|^\s*$")
_PEM_MAX_LINES = 120  # an 8192-bit RSA key is ~100 lines: past that an unclosed block is over


def _edge(literal: str) -> str:
    """`literal` with no letter or digit right before it; the check comes after the literal, so
    the regex engine can still search for the literal in C."""
    return rf"{re.escape(literal)}(?<![A-Za-z0-9]{re.escape(literal)})"


_TOKENS = [
    r"xox(?:[abposre]|e\.xox[bp])-[A-Za-z0-9-]{8,}",  # Slack bot/user/refresh tokens
    r"xapp-[0-9]-[A-Za-z0-9-]{8,}",  # Slack app-level (Socket Mode) tokens
    _edge("sk_") + r"(?:live|test)_[A-Za-z0-9]{8,}",  # Stripe secret keys
    _edge("rk_") + r"(?:live|test)_[A-Za-z0-9]{8,}",  # Stripe restricted keys
    _edge("whsec_") + r"[A-Za-z0-9]{8,}",  # Stripe webhook signing secrets
    # AWS access key IDs
    r"A(?:KIA|SIA|BIA|CCA|GPA|IDA|IPA|NPA|NVA|ROA|PKA|SCA)(?<![A-Z0-9]....)[A-Z0-9]{16}",
    r"gh[pousr]_(?<![A-Za-z0-9]gh[pousr]_)[A-Za-z0-9]{30,}",  # GitHub
    _edge("github_pat_") + r"[A-Za-z0-9_]{30,}",
    _edge("glpat-") + r"[A-Za-z0-9_-]{20,}",  # GitLab
    r"AIza[0-9A-Za-z_-]{35}",  # Google API keys
    _edge("ya29.") + r"[0-9A-Za-z_-]{20,}",  # Google OAuth access tokens
    r"GOCSPX-[0-9A-Za-z_-]{20,}",  # Google OAuth client secrets
    _edge("npm_") + r"[A-Za-z0-9]{36}",
    _edge("SG.") + r"[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}",  # SendGrid
    _edge("sq0") + r"(?:atp|csp)-[A-Za-z0-9_-]{20,}",  # Square
    r"access_token\$(?:production|sandbox)\$[0-9a-z]{8,}\$[0-9a-f]{16,}",  # Braintree
]

_STRONG = (
    r"password|passwd|passphrase|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|"
    r"secret[_-]?key|credentials?|signature|session[_-]?id|"
    r"card[_-]?number|card[_-]?no|cc[_-]?num(?:ber)?|primary[_-]?account[_-]?number|"
    r"cvv2?|cvc2?|cav2|security[_-]?code|pin[_-]?block|track[_-]?[12]|track[_-]?data"
)
# Short words that must stand on their own or start a camelCase word (`pan=`, `cardPan=`; not
# `span=`, `spin=`): checked against the original case in `_key_value`.
_WEAK = r"pan|pin|pwd|pass|csc|otp"
_QUOTE = r"(?:&quot;|\\?[\"'])"
# _STRONG and _WEAK as a trie by first letter: the engine tries six branches, not thirty.
_KV_KEY = (
    r"(?:p(?:ass(?:word|wd|phrase)|rivate[_-]?key|rimary[_-]?account[_-]?number|in[_-]?block)"
    r"|s(?:ecret(?:[_-]?key)?|ignature|ession[_-]?id|ecurity[_-]?code)"
    r"|t(?:oken|rack[_-]?(?:[12]|data))"
    r"|a(?:pi[_-]?key|ccess[_-]?key)"
    r"|c(?:redentials?|ard[_-]?(?:number|no)|c[_-]?num(?:ber)?|vv2?|vc2?|av2)"
    r"|(?P<weak>p(?:an|in|wd|ass)|csc|otp))"
)
# SECRET_KEY_BASE=, password_hash:, token_b64= are the secret too; password_policy= is not.
_KEY_SUFFIX = r"(?:[_.-]?(?:base|value|b64|base64|raw|plain|hash|enc|encrypted|str|string|text))?"
_ONE_TOKEN_SCHEMES = r"bearer|basic|token|apikey|api-key|key|negotiate|ntlm|dpop|ssws|sso-key"


def _span(match: re.Match[str], text: str, group: str | int) -> str:
    start, end = match.span(group)
    return text[start:end] if start >= 0 else ""


def _track(match: re.Match[str], text: str) -> str:
    return TRACK if _is_card(match.group("pan")) else match.group(0)


def _whole(marker: str) -> Callable[[re.Match[str], str], str]:
    return lambda match, text: marker


def _head(match: re.Match[str], text: str) -> str:
    """Keep the key (original case), drop what follows it."""
    return _span(match, text, "head") + REDACTED


def _basic(match: re.Match[str], text: str) -> str:
    head, start = _span(match, text, "head"), match.end("head")
    try:
        decoded = base64.b64decode(text[start : match.end()], validate=True)
    except ValueError:
        return _span(match, text, 0)
    return head + REDACTED if b":" in decoded and decoded.isascii() else _span(match, text, 0)


_MYSQL_P = re.compile(r"((?<![\w-])-p)(?!\[REDACTED)([^\s-]\S*)")  # -P is the port, `-p db` a prompt
_SSHPASS_P = re.compile(r"((?<![\w-])-p[ \t]+)(?!\[REDACTED)(\S+)")


def _password_flags(match: re.Match[str], text: str) -> str:
    line = _span(match, text, 0)
    flag = _SSHPASS_P if line[:7].lower() == "sshpass" else _MYSQL_P
    return flag.sub(lambda m: m.group(1) + REDACTED, line)


def _card_run(match: re.Match[str], text: str) -> str:
    """A run of digits and separators, maybe with a track 2 tail (`=YYMM…` right after the PAN)."""
    start, end = match.span("run")
    run = text[start:end]
    tail = _span(match, text, "tail")
    if tail and run.isdigit() and _is_card(run):
        return TRACK
    digits = len(run) - sum(run.count(c) for c in _SEPARATORS)
    clean = run if digits < 13 else _card(text, start, end)
    return clean + (_scan(_CARD_RUN, tail, tail, _card_run) if tail else "")


def _base64(match: re.Match[str], text: str) -> str:
    """Hex (git SHAs, digests, trace IDs), UUIDs, pod names and paths (a '/' in every ten
    characters or more) do not qualify; such a run may still hide a card."""
    run = match.group(0)
    mixed = any(c.isupper() for c in run) and any(c.islower() for c in run) and any(c.isdigit() for c in run)
    if mixed and run.count("/") * 10 <= len(run) and not run.startswith("/"):
        return SECRET
    return _scan(_CARD_RUN, run, run, _card_run)  # digits glued to letters: `PAN4111…`


def _auth(match: re.Match[str], text: str) -> str:
    return _span(match, text, "head") + _span(match, text, "quote") + _span(match, text, "scheme") + REDACTED


def _key_value(match: re.Match[str], text: str) -> str:
    """Keep the key and the quotes, drop the value; a value that is already a marker stays."""
    whole = _span(match, text, 0)
    weak = match.start("weak")
    if weak > 0 and text[weak - 1].isalnum() and not (text[weak].isupper() and text[weak - 1].islower()):
        return whole  # `span=`, `spin:`: not a key of ours
    head, value = _span(match, text, "head"), _span(match, text, "value")
    for quote_ in ('\\"', '"', "'", "&quot;"):
        if len(value) >= 2 * len(quote_) and value.startswith(quote_) and value.endswith(quote_):
            inner = value[len(quote_) : -len(quote_)]
            if not inner or inner.startswith(_MARK):
                return whole
            return f"{head}{quote_}{REDACTED}{quote_}"
    if value.removeprefix("&quot;").lstrip("\\\"'").startswith(_MARK):  # also `"[REDACTED` cut at a space
        return whole
    tail = ""
    for close, open_ in ((")", "("), ("]", "["), ("}", "{")):  # `{password=x}`: keep the brace
        while value.endswith(close) and value.count(close) > value.count(open_):
            value, tail = value[:-1], close + tail
    return f"{head}{REDACTED}{tail}" if value else whole


_Replace = Callable[[re.Match[str], str], str]

# Magnetic stripe: sensitive authentication data, never to be kept after authorisation, so the
# whole track goes (name, expiry, service code, discretionary data), not just the PAN.
_TRACKS: list[tuple[re.Pattern[str], _Replace]] = [
    (re.compile(r"[%B](?:(?<=%)B)?(?P<pan>[0-9]{13,19})\^[^^\n]{0,26}\^[0-9]{0,4}[^?\s]{0,80}\??"), _track),
    (re.compile(r";(?P<pan>[0-9]{13,19})[=D][0-9]{4}[0-9A-Za-z]{0,40}\??"), _track),
]
_CARD_RUN = re.compile(
    r"(?P<run>[0-9](?<![0-9][0-9])[0-9 \t.+_\-]{11,}[0-9])(?P<tail>[=D][0-9]{4}[0-9A-Za-z]{0,40}\??)?"
)

# (pattern, replacement, scans the lower-cased text): in order.
_RULES: list[tuple[re.Pattern[str], _Replace, bool]] = [
    *((pattern, replace, False) for pattern, replace in _TRACKS),
    (
        re.compile(
            r"(?P<head>hooks\.slack(?:-gov)?\.com/(?:services|workflows|triggers)/)[A-Za-z0-9_/-]{8,}"
        ),
        _head,
        False,
    ),
    *((re.compile(shape), _whole(TOKEN), False) for shape in _TOKENS),
    (
        re.compile(r"eyJ(?<![A-Za-z0-9_-]eyJ)[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
        _whole("[REDACTED jwt]"),
        False,
    ),
    # cards before the rules that read context: a marker must not make a key of what follows it
    (_CARD_RUN, _card_run, False),
    # user:password@ in any URL; the user may be empty (redis://:pw@host) and an unescaped @ inside
    # the password must not leave its tail behind: the match runs to the last @ before the host.
    (
        re.compile(r"(?P<head>://[^:/@\s]{0,256}:)[^/\s]{1,256}@(?=[^@/\s]*(?:[/\s?#]|$))"),
        lambda match, text: _head(match, text) + "@",
        False,
    ),
    # Authorization of any scheme (Bearer, Basic, Token, Digest, AWS4-HMAC-SHA256 …)
    (
        re.compile(
            # a one-token scheme keeps its name and loses its token; anything else (Digest, AWS4,
            # no scheme) loses the whole field: to the closing quote in JSON or a repr, else the line
            rf"(?P<head>authorization{_QUOTE}?[ \t]*+[:=][ \t]*+)(?P<quote>{_QUOTE})?+"
            rf"(?:(?P<scheme>(?:{_ONE_TOKEN_SCHEMES})[ \t]++){_NOT_MARK}[^\s\"',;\\]++"
            rf"|(?!(?:{_ONE_TOKEN_SCHEMES})[ \t]){_NOT_MARK}(?:(?!(?P=quote))[^\n])+)"
        ),
        _auth,
        True,
    ),
    (re.compile(rf"(?P<head>cookie[ \t]*+:[ \t]*+){_NOT_MARK}[^\n]+"), _head, True),
    (re.compile(rf"(?P<head>bearer[ \t]++){_NOT_MARK}[a-z0-9._~+/-]{{8,}}=*"), _head, True),
    # `Basic dXNlcjpwYXNz` without its header: only when it decodes to user:password
    (re.compile(rf"(?P<head>basic[ \t]++){_NOT_MARK}[a-z0-9+/]{{8,}}={{0,2}}(?![a-z0-9+/=])"), _basic, True),
    # SQL: CREATE USER … IDENTIFIED BY 'secret'
    (
        re.compile(
            rf"(?P<head>identified[ \t]+by[ \t]+(?:password[ \t]+)?){_NOT_MARK}(?:'[^'\n]*'|\"[^\"\n]*\"|\S+)"
        ),
        _head,
        True,
    ),
    # `--password VALUE`, `--db-token VALUE`
    (
        re.compile(
            rf"(?P<head>-(?<![\w-]-)-?[a-z0-9_-]{{0,30}}(?:{_STRONG}|(?<![a-z0-9])(?:{_WEAK}))[ \t]++)"
            rf"{_NOT_MARK}(?!-)\S++"
        ),
        _head,
        True,
    ),
    # `-pVALUE` anywhere on a mysql command line, `-p VALUE` on an sshpass one
    (re.compile(r"(?:mysql\w{0,10}|sshpass)\b[^\n]*"), _password_flags, True),
    # <Password>…</Password>, <ns:ApiToken>…, <CardNumber>…, also HTML-escaped (&lt;Password&gt;)
    (
        re.compile(
            rf"(?P<head>(?:<|&lt;)(?:[\w.-]{{1,40}}:)?[\w.-]{{0,40}}(?:{_STRONG}|(?<![a-z0-9])(?:{_WEAK}))"
            rf"[\w.-]{{0,40}}(?:\s[^<>\n]{{0,200}})?(?:>|&gt;))(?:(?!&lt;)[^<\n])++"
        ),
        _head,
        True,
    ),
    # key=value, key: value, "key": "value", key => 'value', map[key:value] …
    (
        re.compile(
            rf"(?P<head>{_KV_KEY}{_KEY_SUFFIX}{_QUOTE}?[ \t]*(?:=>|[=:])[ \t]*)"
            r"(?P<value>\\\"(?:[^\"\\\n]|\\[^\"\n])*+\\\"|\"(?:[^\"\\\n]|\\.)*+\"|'[^'\n]*+'"
            r"|&quot;(?:(?!&quot;)[^\n])*+&quot;|(?:&quot;|\\?[\"'])?[^\s,;&\"'<>]++)"
        ),
        _key_value,
        True,
    ),
    # A key or secret key with no label (an AWS secret key, a PEM line out of its block).
    (
        re.compile(
            r"[A-Za-z0-9+/](?<![A-Za-z0-9+/_.\-][A-Za-z0-9+/])[A-Za-z0-9+/]{39,}={0,2}(?![A-Za-z0-9+/=_-])"
        ),
        _base64,
        False,
    ),
]


def _scan(pattern: re.Pattern[str], scanned: str, text: str, replace: _Replace) -> str:
    """`pattern.sub` where matching runs on `scanned` (the text lower-cased, same length) and
    replacements are built from `text`; `text` itself when nothing matched."""
    out: list[str] = []
    last = 0
    for match in pattern.finditer(scanned):
        out.append(text[last : match.start()])
        out.append(replace(match, text))
        last = match.end()
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)


_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def _lower(text: str) -> str:
    """Lower-cased, with the same length (`"İ".lower()` has two characters)."""
    low = text.lower()
    return low if len(low) == len(text) else text.translate(_ASCII_LOWER)


# ---------------------------------------------------------------- whole text

_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_SPACE = re.compile(r"\s")
_KEEP_IN_URL = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def _percent(token: str) -> str:
    """URL-encoded text (`%22pan%22%3A%224111…`, query strings, form bodies) is decoded, redacted
    and put back; readable where it was redacted, escapes kept for what must not be raw (%0A)."""
    decoded = token
    for _ in range(3):  # double encoding, but bounded
        again = unquote(decoded, errors="replace")
        if again == decoded:
            break
        decoded = again
    clean = _redact_plain(decoded)
    return token if clean == decoded else quote(clean.encode("utf-8", "surrogatepass"), safe=_KEEP_IN_URL)


def _percent_tokens(text: str) -> str:
    """Every whitespace-delimited token holding a %XX escape, through `_percent`."""
    out: list[str] = []
    last = 0
    for escape_ in _ESCAPE.finditer(text):
        if escape_.start() < last:
            continue  # inside a token already done
        start = escape_.start()
        while start > last and not text[start - 1].isspace():
            start -= 1
        space = _SPACE.search(text, escape_.end())
        end = space.start() if space else len(text)
        out += [text[last:start], _percent(text[start:end])]
        last = end
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)


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
    low = None
    for pattern, replace, lowered in _RULES:
        if lowered:
            low = _lower(text) if low is None else low
            redacted = _scan(pattern, low, text, replace)
        elif pattern is _CARD_RUN and not text.isascii():
            redacted = _cards_in_unicode(text)
        else:
            redacted = _scan(pattern, text, text, replace)
        if redacted is not text:
            text, low = redacted, None
    return text


class _AsciiDigits(dict[int, int]):
    """A `str.translate` table, filled as characters come: any decimal digit (fullwidth ４, Arabic-
    Indic ٤ …) to its ASCII digit, any space or dash (no-break space, en dash) to ' ' or '-',
    invisible format characters (zero-width space) to ' '; one character for one."""

    def __missing__(self, code: int) -> int:
        char = chr(code)
        digit = unicodedata.decimal(char, None)
        category = unicodedata.category(char)
        if digit is not None:
            value = ord("0") + digit
        elif category == "Zs" or category == "Cf":
            value = ord(" ")
        elif category == "Pd":
            value = ord("-")
        else:
            value = code
        self[code] = value
        return value


_ASCII_DIGITS = _AsciiDigits()


def _cards_in_unicode(text: str) -> str:
    """Cards written with other digits or separators: found on an ASCII view of the same length,
    the original text kept wherever nothing was redacted."""
    view = text.translate(_ASCII_DIGITS)
    if view == text:
        return _scan(_CARD_RUN, text, text, _card_run)

    def replace(match: re.Match[str], original: str) -> str:
        out = _card_run(match, view)
        return original[match.start() : match.end()] if out == match.group(0) else out

    return _scan(_CARD_RUN, view, text, replace)


def redact(text: str) -> str:
    """`text` with card data and credentials replaced by `[REDACTED …]` markers; same lines."""
    if "%" in text:  # track 1 starts with `%B`: not an escape, so tracks go first
        for pattern, replace in _TRACKS:
            text = _scan(pattern, text, text, replace)
        text = _percent_tokens(text)
    return _redact_plain(text)


def redact_lines(lines: list[str]) -> list[str]:
    """Redact lines as one text (a key split over lines is seen whole), one result per line."""
    out = redact("\n".join(lines)).split("\n")
    return out if len(out) == len(lines) else [redact(line) for line in lines]


def _in_number(char: str) -> bool:
    return char.isdecimal() or char in _SEPARATORS or char.isspace()


def clip(text: str, limit: int, tail: str = "") -> str:
    """`text` in at most `limit` characters (`tail` appended when cut) that never ends inside a
    number: a card cut short fails the Luhn check, so the redaction point downstream would let its
    first twelve or more digits through. The number the cut would split goes whole instead. Every
    length bound on outside text (alert annotations, Block Kit limits) cuts through this."""
    if len(text) <= limit:
        return text
    cut = max(0, limit - len(tail))
    if cut and _in_number(text[cut - 1]) and _in_number(text[cut]):
        start = cut
        while start and _in_number(text[start - 1]):
            start -= 1
        if any(c.isdecimal() for c in text[start : cut + 1]):
            cut = start
    return text[:cut] + tail


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
    bom = _bom(encoding, content)
    codec = _bomless(bom) if encoding in ("utf-16", "utf-32") else encoding.removesuffix("-sig")
    body = content[len(bom) :]
    try:
        text = body.decode(codec)
    except UnicodeDecodeError:  # damaged text, or binary that looks like text: keep it whole unless
        text = body.decode(codec, errors="replace")  # there is something to redact in it
    clean = redact(text)
    if clean == text:
        return content
    return bom + clean.encode(codec, errors="replace")


def _bom(encoding: str, content: bytes) -> bytes:
    """The byte order mark `content` starts with, for an encoding found from one."""
    size = {"utf-8-sig": 3, "utf-16": 2, "utf-32": 4}.get(encoding, 0)
    return content[:size]


def _bomless(bom: bytes) -> str:
    return {
        codecs.BOM_UTF32_LE: "utf-32-le",
        codecs.BOM_UTF32_BE: "utf-32-be",
        codecs.BOM_UTF16_LE: "utf-16-le",
        codecs.BOM_UTF16_BE: "utf-16-be",
    }[bom]
