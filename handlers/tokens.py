"""`/payflow tokens [check <token-id>]`: the guide's "JWT Token Problems" check of the auth
service's blacklist in PayFlow's Redis, without its `redis-cli keys "*token*"`: KEYS stops Redis
for the whole keyspace, the auth service included, while SCAN counts in short steps within a
time budget (and says when the count is partial). Operators only: it reads a security store."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.base.mrkdwn import slack_date
from bot.base.roles import Role
from bot.config.catalog import Catalog
from bot.domain.views import Facts, Notice, Reply, Report, Text, Tone
from bot.gateways.payflow_redis import KeyCount, PayflowRedis, PayflowRedisError
from handlers.base import Context
from handlers.registry import Usage, command, shown, takes_nothing

MAX_ID = 128
SHOWN_PREFIX = 8  # characters of a token ID an answer shows: enough to recognise, not to reuse
_TOKEN_ID = re.compile(r"[A-Za-z0-9._-]+")
# A whole JWT (base64url header `{"…` . payload . signature) holds only characters an ID may hold.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_GLOB = set("*?[]\\")


@dataclass(frozen=True)
class Tokens:
    pass


@dataclass(frozen=True)
class TokenCheck:
    token_id: str
    key: str


def key_prefix(pattern: str) -> str | None:
    """`token:blacklist:*` → `token:blacklist:`; None when the pattern is not a prefix and one `*`."""
    prefix = pattern[:-1]
    if not pattern.endswith("*") or _GLOB & set(prefix):
        return None
    return prefix


def token_id(args: list[str], command_name: str) -> str:
    """One token ID, strictly: nothing that could widen a lookup (no glob character) or hide a
    second word; the ID itself is never echoed back."""
    if not args:
        raise Usage("Say which token ID (the JWT's `jti`) to look up.", command_name)
    if len(args) > 1:
        raise Usage("A token ID has no spaces: give exactly one ID. Nothing was looked up.", command_name)
    word = args[0]
    if _JWT.fullmatch(word):
        raise Usage(
            "That is a whole JWT, not its ID: give its `jti` claim. Nothing was looked up. "
            "A JWT is a credential: one pasted in chat should be revoked.",
            command_name,
        )
    if len(word) > MAX_ID:
        raise Usage(
            f"A token ID is at most {MAX_ID} characters; that one has {len(word):,}. Nothing was looked up.",
            command_name,
        )
    if not _TOKEN_ID.fullmatch(word):
        bad = sorted({c for c in word if not (c.isascii() and (c.isalnum() or c in "._-"))})
        what = " ".join(_char(c) for c in bad[:5])
        glob = " (no wildcards: `check` looks up one exact token)" if _GLOB & set(bad) else ""
        raise Usage(
            f"A token ID holds only letters, digits, `.`, `_` and `-`; that one has {what}{glob}. "
            "Nothing was looked up.",
            command_name,
        )
    return word


def _char(c: str) -> str:
    """A refused character; beyond ASCII with its code point: `і` (U+0456) alone looks like `i`."""
    return f"`{shown(c)}`" if c.isascii() else f"`{shown(c)}` (U+{ord(c):04X})"


def _parse_check(args: list[str], catalog: Catalog) -> TokenCheck:
    ident = token_id(args, "tokens check")
    pattern = catalog.data.redis.blacklist_pattern
    prefix = key_prefix(pattern)
    if prefix is None:
        raise Usage(
            f"The catalog's data.redis.blacklist_pattern `{shown(pattern)}` is not a key prefix followed by "
            "one `*`, so one token's key cannot be built from it. Nothing was looked up."
        )
    return TokenCheck(ident, prefix + ident)


def id_shown(ident: str) -> str:
    return ident if len(ident) <= SHOWN_PREFIX else ident[:SHOWN_PREFIX] + "…"


def span(ms: int) -> str:
    """3_725_000 → `1h 2m`: the two largest units."""
    secs = max(ms // 1000, 0)
    parts = [(secs // 86400, "d"), (secs % 86400 // 3600, "h"), (secs % 3600 // 60, "m"), (secs % 60, "s")]
    used = [f"{n}{u}" for n, u in parts if n]
    return " ".join(used[:2]) or f"{ms} ms"


def _not_configured(setting: str) -> Reply:
    text = (
        f"PayFlow's Redis is not configured: set `{setting}` to the auth service's Redis "
        "(`redis://:password@redis:6379/0`; the bot only reads it; README: Token blacklist)."
    )
    return Reply(Notice(text, Tone.WARNING), outcome="failed", detail=f"{setting} not set")


def _gateway(ctx: Context) -> PayflowRedis | None:
    return ctx.deps.payflow_redis


def count_report(found: KeyCount, budget: float) -> Report:
    if found.complete:
        headline = f"{found.count:,} blacklisted tokens"
    else:
        headline = f"at least {found.count:,} blacklisted tokens; stopped after {budget:g} s"
    spread = found.spread
    items = [
        # Not the pattern itself: `token:…` reads as a credential to the redaction, which is right
        # to err that way, so the answer names where the pattern is set.
        ("Keys", "matching the catalog's data.redis.blacklist_pattern"),
        ("Blacklisted", headline),
        ("Read", f"{found.calls:,} SCAN steps in {found.seconds:.2f} s (never KEYS)"),
    ]
    parts: list[Facts | Text] = []
    if spread.min_ms is not None and spread.median_ms is not None and spread.max_ms is not None:
        ttl = f"{span(spread.min_ms)} / {span(spread.median_ms)} / {span(spread.max_ms)}"
        items.append((f"TTL min / median / max ({spread.sampled:,} sampled)", ttl))
    if spread.sampled:
        items.append(("Without expiry", f"{spread.no_expiry:,} of {spread.sampled:,} sampled"))
    parts.append(Facts(tuple(items)))
    if not found.complete:
        parts.append(
            Text(
                f"The count is partial: the scan stopped at its {budget:g} s budget "
                "(catalog data.redis.scan_budget_seconds) so Redis stays responsive.",
                Tone.WARNING,
            )
        )
    if spread.no_expiry:
        parts.append(
            Text(
                f"{spread.no_expiry:,} sampled blacklist entries have no TTL: they are never removed "
                "(a leak in the auth service's revocation); a blacklist entry should expire with its token.",
                Tone.ERROR,
            )
        )
    tone = Tone.ERROR if spread.no_expiry else Tone.INFO if found.complete else Tone.WARNING
    return Report(f"Token blacklist: {headline}", tuple(parts), tone=tone)


@command(
    "tokens",
    summary="The JWT blacklist in PayFlow's Redis: how many tokens, their TTL spread (SCAN, never KEYS).",
    role=Role.OPERATOR,
    examples=("/payflow tokens",),
    parse=takes_nothing("tokens", Tokens()),
)
async def tokens(cmd: Tokens, ctx: Context) -> Reply:
    conf = ctx.catalog.data.redis
    redis = _gateway(ctx)
    if redis is None:
        return _not_configured(conf.url_setting)
    try:
        found = await redis.count(
            conf.blacklist_pattern, scan_count=conf.scan_count, budget_seconds=conf.scan_budget_seconds
        )
    except PayflowRedisError as exc:
        return Reply(Notice(f"{exc}.", Tone.ERROR), outcome="failed", detail=str(exc))
    report = count_report(found, conf.scan_budget_seconds)
    return Reply(report, public=True, detail=report.title.removeprefix("Token blacklist: "))


@command(
    "tokens check <token-id>",
    summary="Is this token ID blacklisted, and until when.",
    role=Role.OPERATOR,
    examples=("/payflow tokens check jti-00000042",),
    parse=_parse_check,
)
async def tokens_check(cmd: TokenCheck, ctx: Context) -> Reply:
    conf = ctx.catalog.data.redis
    redis = _gateway(ctx)
    if redis is None:
        return _not_configured(conf.url_setting)
    label = f"`{id_shown(cmd.token_id)}`"
    try:
        state = await redis.lookup(cmd.key)
    except PayflowRedisError as exc:
        return Reply(Notice(f"{exc}.", Tone.ERROR), outcome="failed", detail=str(exc))
    if not state.exists:
        facts = Facts((("Token ID", label), ("Blacklisted", "no")))
        return Reply(Report("Token is not blacklisted", (facts,)), detail=f"{id_shown(cmd.token_id)}: no")
    if state.pttl_ms is None:
        facts = Facts((("Token ID", label), ("Blacklisted", "yes, with no expiry")))
        leak = Text("This entry has no TTL, so it is never removed: a leak in the auth service.", Tone.ERROR)
        report = Report("Token is blacklisted, without expiry", (facts, leak), tone=Tone.ERROR)
        return Reply(report, detail=f"{id_shown(cmd.token_id)}: yes, no expiry")
    until = datetime.now(UTC) + timedelta(milliseconds=state.pttl_ms)
    when = f"yes, until {slack_date(until)} (in {span(state.pttl_ms)})"
    facts = Facts((("Token ID", label), ("Blacklisted", when)))
    report = Report("Token is blacklisted", (facts,), tone=Tone.WARNING)
    return Reply(report, detail=f"{id_shown(cmd.token_id)}: yes, {span(state.pttl_ms)} left")
