"""`/payflow db sizes [N]`: which tables take the disk, before it runs out. The guide checks the
database only with `SELECT 1`; a full volume is how a payments database actually stops."""

from __future__ import annotations

from dataclasses import dataclass

from bot.base.mrkdwn import escape
from bot.base.roles import Role
from bot.config.catalog import Catalog
from bot.domain.views import Reply, Report, Table
from bot.gateways.postgres import TableSizes
from handlers.base import Context
from handlers.db import read, size_text
from handlers.registry import command, count_arg

SIZES_DEFAULT, SIZES_MOST = 10, 50


@dataclass(frozen=True)
class DbSizes:
    limit: int = SIZES_DEFAULT


def _parse(args: list[str], catalog: Catalog) -> DbSizes:
    return DbSizes(count_arg(args, "db sizes", default=SIZES_DEFAULT, most=SIZES_MOST))


def sizes_report(found: TableSizes) -> Report:
    rows = tuple(
        (
            f"{t.schema}.{t.name}" + ("" if t.kind == "table" else f" ({t.kind})"),
            size_text(t.total_bytes),
            size_text(t.table_bytes),
            size_text(t.index_bytes),
        )
        for t in found.tables
    )
    shown = f"the {len(rows)} largest" if len(rows) < found.count else f"all {len(rows)}"
    note = (
        f"{shown} of {found.count} tables, partitioned tables and materialized views in "
        f"{escape(found.database)}; total = table + indexes + TOAST"
    )
    return Report(
        f"Largest tables · {found.database}",
        (
            Table(
                ("table", "total", "table", "indexes"),
                rows,
                empty="no tables outside the system schemas",
                noun="tables",
                note=note,
            ),
        ),
        filename="table-sizes.txt",
    )


@command(
    "db sizes [N]",
    summary=f"The N largest tables of PayFlow's database (default {SIZES_DEFAULT}, at most "
    f"{SIZES_MOST}): total, table and index size.",
    role=Role.VIEWER,
    examples=("/payflow db sizes", "/payflow db sizes 25"),
    parse=_parse,
)
async def db_sizes(cmd: DbSizes, ctx: Context) -> Reply:
    found = await read(ctx, lambda pg: pg.table_sizes(cmd.limit))
    return Reply(sizes_report(found), public=True, detail=f"{len(found.tables)} of {found.count} tables")
