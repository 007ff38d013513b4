"""Applying the rules to text: URL-encoded tokens, PEM blocks over many lines, Unicode digits, and
the length cut that never splits a number; `redact` here is the one entry every byte passes."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote, unquote

from bot.base.redact.cards import _SEPARATORS
from bot.base.redact.markers import PRIVATE_KEY
from bot.base.redact.rules import (
    _CARD_RUN,
    _PEM_BEGIN,
    _PEM_BODY,
    _PEM_END,
    _PEM_MAX_LINES,
    _RULES,
    _TRACKS,
    _card_run,
    _lower,
    _scan,
)

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
