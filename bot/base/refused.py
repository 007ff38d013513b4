"""The one "no" a handler or the change gate gives: understood and allowed, but must not run now.

It lives below both `handlers/` and `bot/domain/gate/`, so the gate can refuse without importing the
command layer that sits on top of it."""

from __future__ import annotations


class Refused(Exception):
    """Understood and allowed, but must not run now; `str()` tells the user why."""


class Unavailable(Exception):
    """What the command needs outside is not configured, did not answer, or refused: `str()` says
    which (never a secret), `detail` is the audit's word for it; audited as failed, not refused.
    `configured` False: a setting is missing (a warning: someone has to set it), else an error."""

    def __init__(self, message: str, *, detail: str = "", configured: bool = True):
        super().__init__(message)
        self.detail = detail or message
        self.configured = configured
