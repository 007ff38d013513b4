"""`/payflow audit [service] [N]`: the newest entries of the append-only audit stream."""

from __future__ import annotations

from bot.domain.views import AuditPage, Reply
from handlers.base import Context
from handlers.commands import Audit


async def show_audit(cmd: Audit, ctx: Context) -> Reply:
    entries = await ctx.store.audit(target=cmd.service, limit=cmd.limit)
    return Reply(AuditPage(tuple(entries), cmd.service, cmd.limit))
