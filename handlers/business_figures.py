"""The business figures — completed transactions, their value, active users: platform totals from
the catalog's `business` templates — against the same figures a day earlier. The daily digest
always shows them; `/payflow metrics` adds them when the templates are set. Each is optional:
an empty template is not shown, a figure without data says "no data", never an error; they are
"info" figures (no objective), so they never change a verdict.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.config.catalog import Catalog
from bot.domain.views import Figure
from bot.gateways.prom import Pair, Prom

DAY = timedelta(days=1)
LABELS = {"transactions": "transactions", "transaction_value": "value", "active_users": "active users"}


def configured(catalog: Catalog) -> bool:
    b = catalog.business
    return any(t.strip() for t in (b.transactions, b.transaction_value, b.active_users))


def change(now: float, before: float | None) -> str:
    """ "+3.2 %" against the earlier figure; said in words when there is nothing to divide by."""
    if before is None:
        return "no figure to compare"
    if before == 0:
        return "none before" if now else "no change"
    return f"{(now - before) / before * 100:+.1f} %"


def amount(name: str, value: float, currency: str) -> str:
    return f"{value:,.0f} {currency}" if name == "transaction_value" else f"{value:,.0f}"


def business_figure(name: str, pair: Pair, currency: str, earlier: str) -> Figure:
    label = LABELS[name]
    if pair.now.value is None:
        return Figure(label, pair.now.problem or "no data", "", "info")
    shown = amount(name, pair.now.value, currency)
    if pair.before.value is None:
        return Figure(label, f"{shown} ({earlier}: {pair.before.problem or 'no data'})", "", "info")
    return Figure(label, f"{shown} ({change(pair.now.value, pair.before.value)} on {earlier})", "", "info")


async def business_figures(
    prom: Prom | None, window: str, earlier: str = "the day before", at: datetime | None = None
) -> tuple[Figure, ...]:
    """The figures over `window` now, each against the same window a day earlier (one query each)."""
    if prom is None or not configured(prom.catalog):
        return ()
    pairs = await prom.business(window, DAY, at)  # a figure whose query failed says why in its own line
    currency = prom.catalog.business.currency
    return tuple(business_figure(name, pair, currency, earlier) for name, pair in pairs.items())
