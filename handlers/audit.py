"""`/payflow audit [service] [N]`: the newest entries of the append-only audit stream."""

from __future__ import annotations

from dataclasses import dataclass

from bot.base.roles import Role
from bot.config.catalog import Catalog
from bot.domain.views import AuditPage, Reply
from handlers.base import Context
from handlers.registry import Usage, at_most, command, service_arg, whole_number

MAX_AUDIT = 50
DEFAULT_AUDIT = 10


@dataclass(frozen=True)
class Audit:
    service: str | None = None
    limit: int = DEFAULT_AUDIT


def _parse(args: list[str], catalog: Catalog) -> Audit:
    at_most(args, 2, "audit")
    service, limit = None, DEFAULT_AUDIT
    rest = list(args)
    if rest and not rest[0].isdigit():
        service = service_arg(rest.pop(0), catalog, "audit")
    if rest:
        limit = whole_number(rest.pop(0), "N", "audit")
        if not 1 <= limit <= MAX_AUDIT:
            raise Usage(f"N must be between 1 and {MAX_AUDIT}, got {limit}.", "audit")
    if rest:
        at_most(args, len(args) - len(rest), "audit")
    return Audit(service, limit)


@command(
    "audit [service] [N]",
    summary=f"The last N audit entries (default {DEFAULT_AUDIT}, at most {MAX_AUDIT}): "
    "who, what, when, result.",
    role=Role.VIEWER,
    examples=("/payflow audit", "/payflow audit api-gateway 20"),
    parse=_parse,
)
async def show_audit(cmd: Audit, ctx: Context) -> Reply:
    entries = await ctx.store.audit(target=cmd.service, limit=cmd.limit)
    return Reply(AuditPage(tuple(entries), cmd.service, cmd.limit))
