"""The one "no" a handler or the change gate gives: understood and allowed, but must not run now.

It lives below both `handlers/` and `bot/domain/gate/`, so the gate can refuse without importing the
command layer that sits on top of it."""

from __future__ import annotations


class Refused(Exception):
    """Understood and allowed, but must not run now; `str()` tells the user why."""
