"""Card numbers: scheme prefixes, the Luhn check and the shapes a card is printed in, apart from the
text rules because telling a card from a timestamp, order ID or hex digest is most of the work."""

from __future__ import annotations

import re
from collections.abc import Callable

from bot.base.redact.markers import CARD


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


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
