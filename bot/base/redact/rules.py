"""The patterns for keys, tokens, credentials and track data, in the order they apply, apart from
the code applying them so that adding a rule touches only this table."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable

from bot.base.redact.cards import _SEPARATORS, _card, _is_card
from bot.base.redact.markers import _MARK, REDACTED, SECRET, TOKEN, TRACK

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
