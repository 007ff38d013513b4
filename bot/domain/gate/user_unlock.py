"""The user-unlock kind: the guide's `UPDATE users SET locked_until = NULL WHERE email = …`,
approval-gated exactly like a traffic switch (four-eyes, single use, expiry, re-check at the
click, audited) and run through the one function the DBA installed (deploy/sql/payflow-bot.sql),
so the bot's role can make no other write.

- plan: refused before any approval is asked unless the user exists and is locked now;
- prepare: reads the lock again — what the approver sees (locked until, failed attempts);
- recheck (at the click): still locked, else the approval is void;
- apply: one call of `unlock_user(email)`, which changes exactly one row in its transaction or
  raises and changes nothing; a call whose answer never came is `Unanswered`, never void;
- applied (a worker died mid-call): unlocked exactly when the user's lock is cleared (NULL), as
  the function leaves it; a lock that ran out by itself is not our unlock;
- nothing to watch afterwards (a zero schedule), nothing to clean up, and no revert: locking a
  user again is the auth service's job.

The address is kept in the record's `target` only while the change is in flight (the record
layer scrubs it at the end); people and the audit trail see it masked.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from bot.base.pii import mask_email
from bot.base.refused import Refused
from bot.domain.gate.messages import Gateways
from bot.domain.gate.record import WORDINGS, Change, Check, Failed, Unanswered, Voided, Wording, new_id
from bot.gateways.postgres import NotLocked, Postgres, PostgresError, PostgresUnavailable

KIND = "user_unlock"


def lock_subject(email: str) -> str:
    """The change lock's key: one unlock in flight per user, without the address in the key."""
    return "user:" + hashlib.sha256(email.encode()).hexdigest()[:16]


def _postgres(deps: Gateways) -> Postgres:
    pg: Postgres | None = deps.postgres
    if pg is None:
        raise Refused("PostgreSQL is not configured (DATABASE_URL), so no user can be unlocked from chat.")
    return pg


def _until(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


async def _evidence(deps: Gateways, email: str) -> tuple[str, ...] | str:
    """The lock as it is now, as lines for the approver; or why there is nothing to unlock."""
    lock = await _postgres(deps).user_lock(email, table=deps.catalog.data.postgres.users_table)
    if not lock.found:
        return "there is no user with this address"
    if lock.locked_until is None or lock.locked_until <= datetime.now(UTC):
        return "the user is not locked (any more)"
    attempts = "?" if lock.failed_attempts is None else str(lock.failed_attempts)
    return (f"locked until {_until(lock.locked_until)}", f"{attempts} failed sign-in attempts")


async def plan(deps: Gateways, email: str, *, requester: str, reason: str, channel: str) -> Change:
    found = await _evidence(deps, email)
    if isinstance(found, str):
        raise Refused(f"{mask_email(email)}: {found}; nothing to unlock, no approval was asked.")
    return Change(
        id=new_id(),
        kind=KIND,
        service=lock_subject(email),
        requester=requester,
        reason=reason,
        channel=channel,
        subject=mask_email(email),
        target=email,
    )


async def prepare(deps: Gateways, change: Change, step: Any) -> tuple[str, ...]:
    found = await _evidence(deps, change.target)
    if isinstance(found, str):
        raise Failed(found)
    return found


async def recheck(deps: Gateways, change: Change) -> str | None:
    """A lock that cannot be read now voids the approval: nothing has been called yet."""
    try:
        found = await _evidence(deps, change.target)
    except PostgresError as exc:
        return f"could not re-check the lock ({exc}); the user was not unlocked"
    return found if isinstance(found, str) else None


async def apply(deps: Gateways, change: Change) -> str:
    function = deps.catalog.data.postgres.unlock_function
    try:
        rows = await _postgres(deps).unlock_user(change.target, function=function)
    except NotLocked as exc:
        raise Voided(str(exc)) from None
    except PostgresUnavailable as exc:
        if exc.uncertain:
            raise Unanswered(str(exc)) from None
        raise Voided(f"PostgreSQL could not be reached ({exc})") from None
    except PostgresError as exc:
        raise Voided(f"PostgreSQL refused the unlock ({exc}); nothing was changed") from None
    return f"{function}({change.subject}) changed {rows} row"


async def applied(deps: Gateways, change: Change) -> bool:
    """The function clears `locked_until`; a lock that ran out by itself keeps its time (and its
    failed attempts), so it is not our unlock. An unreadable database raises: settled later."""
    lock = await _postgres(deps).user_lock(change.target, table=deps.catalog.data.postgres.users_table)
    return lock.found and lock.locked_until is None


def schedule(deps: Gateways, change: Change) -> tuple[float, float]:
    return 0.0, 1.0  # nothing to watch: the lock is gone or it is not


async def check(deps: Gateways, change: Change) -> Check:
    return Check("ok", "nothing to watch after an unlock")


async def clean_up(deps: Gateways, change: Change) -> str:
    return ""


async def revert(deps: Gateways, change: Change, requester: str, reason: str) -> Change:
    raise Refused("An unlock is not reverted from chat: lock the user again in the auth service.")


def wording(c: Change) -> Wording:
    return Wording(
        title=f"Unlock of user {c.subject}",
        question=f"Unlock {c.subject}? They can sign in again at once.",
        confirm=("Unlock this user?", "Unlock"),
        done=f"{c.subject} is unlocked",
        unchanged="the user stays locked",
        not_done="the user was not unlocked",
        summary=f"unlock {c.subject}",
        fields=(("User", c.subject), ("Change", f"user unlock `{c.id}`")),
        evidence="Lock",
        action="unlock",
        status="unlocked",
        after_failure="Nothing was changed.",
        after_cancel="The user stays locked.",
    )


WORDINGS[KIND] = wording
