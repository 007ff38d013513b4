"""`/payflow users locked` and `/payflow users unlock <email> <reason…>`: the guide's "User
Lockouts", without `psql` in a pod. The list shows masked addresses to the channel (the full
ones only to the requester, ephemerally); an unlock is an approval-gated change of the gate,
exactly like a traffic switch, run through the one SECURITY DEFINER function the DBA installed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from bot.base.pii import is_email, mask_email, mask_emails
from bot.base.roles import Role
from bot.config.catalog import Catalog
from bot.domain.gate import user_unlock
from bot.domain.gate.engine import Gate
from bot.domain.gate.messages import who
from bot.domain.views import Facts, Notice, Reply, Report, Table, Text, Tone
from bot.gateways.postgres import PostgresError, PostgresUnavailable
from handlers.base import Context, Refused
from handlers.db import postgres, read
from handlers.registry import Usage, command, count_arg, reason_text, shown

DEFAULT_LOCKED = 20
MAX_LOCKED = 100


@dataclass(frozen=True)
class LockedUsers:
    limit: int = DEFAULT_LOCKED


@dataclass(frozen=True)
class UnlockUser:
    email: str
    reason: str


def _parse_locked(args: list[str], catalog: Catalog) -> LockedUsers:
    return LockedUsers(count_arg(args, "users locked", default=DEFAULT_LOCKED, most=MAX_LOCKED))


def _parse_unlock(args: list[str], catalog: Catalog) -> UnlockUser:
    example = "`/payflow users unlock jane@example.com SUP-812 locked out after a password reset`"
    if not args:
        raise Usage(f"Say whose account and why, e.g. {example}.", "users unlock")
    email = args[0]
    if not is_email(email):
        raise Usage(
            f"`{shown(email)}` is not an email address; say the user's sign-in address.", "users unlock"
        )
    if len(args) < 2:
        raise Usage(f"Say why (a ticket or incident), e.g. {example}.", "users unlock")
    # the reason goes to the approval card and the audit trail: addresses in it are masked too
    return UnlockUser(email, mask_emails(reason_text(args[1:], "users unlock")))


def _until(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _in(at: datetime) -> str:
    minutes = max(0, int((at - datetime.now(UTC)).total_seconds() // 60))
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


@command(
    "users locked [N]",
    summary=f"Users locked out now (`locked_until` in the future), soonest to expire first, at most N "
    f"(default {DEFAULT_LOCKED}, at most {MAX_LOCKED}): masked addresses here, the full ones only to you.",
    role=Role.OPERATOR,
    examples=("/payflow users locked", "/payflow users locked 50"),
    parse=_parse_locked,
)
async def users_locked(cmd: LockedUsers, ctx: Context) -> Reply:
    users_table = ctx.catalog.data.postgres.users_table
    locked = await read(ctx, lambda pg: pg.locked_users(cmd.limit, table=users_table))
    shown_rows = len(locked.users)
    facts = Facts((("Locked now", str(locked.total)),))
    rows = tuple(
        (mask_email(u.email), _until(u.locked_until), _in(u.locked_until), str(u.failed_attempts or 0))
        for u in locked.users
    )
    note = f"the {shown_rows} locks that end soonest of {locked.total}" if locked.total > shown_rows else ""
    table = Table(
        ("user", "locked until", "ends in", "failed attempts"),
        rows,
        empty="Nobody is locked out.",
        noun="users",
        note=note,
    )
    parts: tuple[Facts | Table | Text, ...] = (facts, table)
    if locked.users:
        parts += (
            Text("Unlock one with `/payflow users unlock <email> <reason…>`; an approver approves it."),
        )
    if locked.users:  # the full addresses, to the requester alone: never in the channel
        full = "\n".join(f"• {u.email} — until {_until(u.locked_until)}" for u in locked.users)
        await ctx.notifier.tell(ctx.channel, ctx.actor, Notice(f"Locked users (only you see this):\n{full}"))
    report = Report(
        "Locked users", parts, Tone.WARNING if locked.total else Tone.SUCCESS, filename="locked.txt"
    )
    return Reply(report, public=True, detail=f"{locked.total} locked")


@command(
    "users unlock <email> <reason…>",
    summary="Unlock a locked-out user after an approver approves (four-eyes, like a traffic switch); "
    "checked again at the click, exactly one row changed, audited with the masked address.",
    role=Role.OPERATOR,
    examples=("/payflow users unlock jane@example.com SUP-812 locked out after a password reset",),
    parse=_parse_unlock,
)
async def users_unlock(cmd: UnlockUser, ctx: Context) -> Reply:
    postgres(ctx)  # not configured: said before anything else
    gate = Gate(ctx.deps)
    holder = await gate.records.holder(user_unlock.lock_subject(cmd.email))
    if holder and holder.in_flight:
        raise Refused(
            f"{holder.id} (unlock of {holder.subject} by {who(holder.requester)}) is already in flight: "
            f"{holder.state.replace('_', ' ')}."
        )
    try:
        change = await user_unlock.plan(
            ctx.deps, cmd.email, requester=ctx.actor, reason=cmd.reason, channel=ctx.channel
        )
    except PostgresUnavailable as exc:
        raise Refused(f"PostgreSQL did not answer: {exc}. No approval was asked.") from None
    except PostgresError as exc:
        raise Refused(f"PostgreSQL refused the read: {exc}. No approval was asked.") from None
    change = await gate.open(change)
    return Reply(None, detail=f"{change.id} unlock {change.subject}", target="users", audited=False)
