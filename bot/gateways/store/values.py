"""The values that cross the store's contract: its errors, its limits, the ``ttl`` and
``expected`` argument types and the compare-and-set outcome. Both backends and every caller
share these, so they depend on nothing else in the package."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, Literal

AUDIT_SCAN_CAP: Final = 10_000
"""Default number of newest audit entries a filtered `Store.audit` looks through at most."""
MAX_AUDIT_LIMIT: Final = 1_000
MAX_KEY_LENGTH: Final = 512
MAX_RECORD_BYTES: Final = 1_000_000
MAX_TTL_SECONDS: Final = 366 * 86_400
MAX_EXACT_INT: Final = 2**53 - 1  # Lua numbers are doubles: beyond this, equality lies
AUDIT_BATCH: Final = 500  # audit entries read per round trip
MAX_INDEX_READ: Final = 10_000  # members one `index_range` returns at most, keys one `get_many` reads


class StoreError(Exception):
    """The store answered, but not as the contract expects (corrupt record, server-side bug)."""


class StoreUnavailable(StoreError):
    """The store cannot be reached; callers must refuse to act, never assume.

    ``brief`` names the dependency and what happened, fit to show a user (no address, no secret).
    """

    def __init__(self, message: str, *, brief: str = "The bot's store is unreachable"):
        super().__init__(message)
        self.brief = brief


class KeepTtl(Enum):
    KEEP_TTL = "KEEP_TTL"

    def __repr__(self) -> str:
        return "KEEP_TTL"


KEEP_TTL: Final = KeepTtl.KEEP_TTL
"""Pass as ``ttl`` to keep the record's current expiry (or lack of one) unchanged."""

Ttl = float | Literal[KeepTtl.KEEP_TTL] | None
Expected = str | int | bool | None
"""What `compare_and_set` / `delete` may compare a field against.

Floats, lists and dicts are refused: float equality is unreliable, and structures would need a
canonical encoding that Python and Lua agree on. ``None`` matches a field that is JSON ``null``
*or* absent. Types never mix: ``True`` does not match ``1`` and ``"1"`` does not match ``1``
(but ``1`` matches ``1.0``).
Integers must lie within ±(2**53 - 1) because Redis compares them as doubles.
"""


@dataclass(frozen=True)
class CasResult:
    """Outcome of `Store.compare_and_set`.

    ``won`` — this call replaced the record. ``current`` — the record as it is now: the new value
    if won; if lost, the record that beat us (so a late clicker can be told who approved), or
    ``None`` when there is no record at all. Truthiness is ``won``, so ``if await cas(...)`` is
    safe; never test ``is None`` on it.
    """

    won: bool
    current: dict[str, Any] | None

    def __bool__(self) -> bool:
        return self.won
