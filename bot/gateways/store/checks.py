"""Input validation and record encoding shared by both backends.

`Store` runs these *before* touching a backend, so a bad call raises the same ``ValueError``
whether or not Redis is reachable, and nothing is written.
"""

from __future__ import annotations

import json
import math
from typing import Any

from bot.gateways.store.values import (
    KEEP_TTL,
    MAX_AUDIT_LIMIT,
    MAX_EXACT_INT,
    MAX_KEY_LENGTH,
    MAX_RECORD_BYTES,
    MAX_TTL_SECONDS,
    Expected,
    KeepTtl,
    StoreError,
)


def check_utf8(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid Unicode (lone surrogate?)") from None


def check_key(key: object, what: str = "key") -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"{what} must be a non-empty string")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"{what} is longer than {MAX_KEY_LENGTH} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in key):
        raise ValueError(f"{what} must not contain whitespace or control characters: {key!r}")
    check_utf8(key, what)
    return key


def check_count(count: object, what: str, top: int) -> int:
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= top:
        raise ValueError(f"{what} must be an integer from 1 to {top}")
    return count


def check_score(score: object) -> float:
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
        raise ValueError("score must be a finite number")
    return float(score)


def check_prefix(prefix: object) -> str:
    if prefix == "":
        return ""
    return check_key(prefix, "prefix")


def encode_record(value: object) -> str:
    """JSON text of ``value``; refuses anything that would not read back equal."""
    if not isinstance(value, dict):
        raise ValueError(f"record value must be a dict, got {type(value).__name__}")
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        size = len(text.encode("utf-8"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"record value is not JSON-serialisable: {exc}") from None
    if size > MAX_RECORD_BYTES:
        raise ValueError(f"record value is {size} bytes, more than {MAX_RECORD_BYTES}")
    if json.loads(text) != value:
        raise ValueError("record value changes in a JSON round trip (tuples or non-string keys?)")
    return text


def decode_record(key: str, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise StoreError(f"record {key!r} is not a JSON object")
    return value


def check_field(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError("field must be a non-empty string")
    check_utf8(name, "field")
    return name


def check_expected(expected: object) -> None:
    if expected is None or isinstance(expected, bool):
        return
    if isinstance(expected, str):
        check_utf8(expected, "expected")
        return
    if isinstance(expected, int):
        if abs(expected) > MAX_EXACT_INT:
            raise ValueError("expected integer must lie within ±(2**53 - 1)")
        return
    raise ValueError(f"expected must be str, int, bool or None, got {type(expected).__name__}")


def to_ttl_ms(ttl: object) -> int | KeepTtl | None:
    if ttl is None or ttl is KEEP_TTL:
        return None if ttl is None else KEEP_TTL
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise ValueError(f"ttl must be a number of seconds, None or KEEP_TTL, got {ttl!r}")
    if not math.isfinite(ttl) or ttl <= 0 or ttl > MAX_TTL_SECONDS:
        raise ValueError(f"ttl must be > 0 and at most {MAX_TTL_SECONDS} seconds, got {ttl!r}")
    return math.ceil(ttl * 1000)


def check_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_AUDIT_LIMIT:
        raise ValueError(f"limit must be an integer from 1 to {MAX_AUDIT_LIMIT}")
    return limit


def matches(record: dict[str, Any], name: str, expected: Expected) -> bool:
    """Typed equality; the Lua `matches` in `redis_lua` is the same rule, keep them in step."""
    value = record.get(name)
    if expected is None:
        return value is None
    if isinstance(expected, bool):
        return isinstance(value, bool) and value is expected
    if isinstance(expected, int):
        return isinstance(value, int | float) and not isinstance(value, bool) and value == expected
    return isinstance(value, str) and value == expected
