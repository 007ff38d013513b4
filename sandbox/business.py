"""PayFlow's business metrics in the synthetic exposition: transactions by outcome, the value
they moved, active users -- the figures a "how is business today vs yesterday" command reads.

    payflow_transactions_total{service="transaction-service",status="completed"|"failed"}  counter
    payflow_transaction_value_total{currency="EUR"}   counter, euros of completed transactions
    payflow_active_users                              gauge

Deterministic functions of wall-clock time with a daily shape (quiet nights, a midday and an
evening peak) scaled by a per-day factor (weekday, plus a fixed pseudo-random ±10 % for each
calendar day), so the same hour on two days differs and day-over-day change is non-trivial.
Activity is linear between hourly knots, so counters are exact integrals (:func:`activity_integral`)
and tests can predict them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

HOUR = 3600.0
DAY = 86400.0
SERVICE = "transaction-service"
CURRENCY = "EUR"
PEAK_TRANSACTIONS_PER_SECOND = 24.0
AVERAGE_TICKET_EUR = 38.4
PEAK_ACTIVE_USERS = 2400
FAILED_SHARE = 0.012  # declines and timeouts of a healthy day
# Share of the peak, hour by hour (UTC): quiet night, lunch peak, evening peak.
HOURLY = (
    0.16, 0.11, 0.08, 0.07, 0.08, 0.13, 0.26, 0.48, 0.70, 0.84, 0.91, 0.97,
    1.00, 0.95, 0.88, 0.86, 0.89, 0.94, 0.99, 0.93, 0.79, 0.61, 0.41, 0.25,
)  # fmt: skip
WEEKDAY = (1.0, 1.02, 1.03, 1.05, 1.12, 0.86, 0.74)  # Monday .. Sunday


def day_factor(day: int) -> float:
    """The scale of calendar day `day` (days since 1970-01-01, a Thursday)."""
    h = int.from_bytes(hashlib.blake2b(f"payflow-day-{day}".encode(), digest_size=4).digest(), "big")
    return WEEKDAY[(day + 3) % 7] * (0.9 + 0.2 * h / 0xFFFFFFFF)


def _knot(hour: int) -> float:
    """Activity at the start of hour number `hour` since the epoch."""
    return HOURLY[hour % 24] * day_factor(hour // 24)


def activity(t: float) -> float:
    """Share of the peak at wall-clock second `t`, linear between the hourly knots."""
    hour = math.floor(t / HOUR)
    frac = t / HOUR - hour
    return _knot(hour) + (_knot(hour + 1) - _knot(hour)) * frac


def activity_integral(t0: float, t1: float) -> float:
    """∫ activity dt from `t0` to `t1` (seconds), exactly: trapezoids of the linear pieces."""
    if t1 <= t0:
        return 0.0
    total, t = 0.0, t0
    while t < t1:
        end = min((math.floor(t / HOUR) + 1) * HOUR, t1)
        total += (activity(t) + activity(end)) / 2 * (end - t)
        t = end
    return total


def transactions_between(t0: float, t1: float) -> float:
    """Transactions attempted between two wall-clock instants."""
    return PEAK_TRANSACTIONS_PER_SECOND * activity_integral(t0, t1)


def active_users(t: float) -> int:
    return round(PEAK_ACTIVE_USERS * activity(t))


@dataclass
class Business:
    """The counters of one sandbox since it started; advanced with the traffic."""

    completed: float = 0.0
    failed: float = 0.0
    value: float = 0.0
    users: int = 0

    def advance(self, t0: float, t1: float, failed_share: float = FAILED_SHARE) -> None:
        """The transactions between wall-clock `t0` and `t1`; `failed_share` of them fail (more
        when transaction-service answers errors or PostgreSQL is down)."""
        count = transactions_between(t0, t1)
        self.failed += count * failed_share
        self.completed += count * (1 - failed_share)
        self.value += count * (1 - failed_share) * AVERAGE_TICKET_EUR
        self.users = active_users(t1)

    def lines(self) -> Iterator[str]:
        yield from exposition_lines(self.completed, self.failed, self.value, self.users)


def exposition_lines(completed: float, failed: float, value: float, users: int) -> Iterator[str]:
    """The three metric families in the text format Prometheus scrapes."""
    statuses: Mapping[str, float] = {"completed": completed, "failed": failed}
    yield "# HELP payflow_transactions_total Payment transactions by outcome.\n"
    yield "# TYPE payflow_transactions_total counter\n"
    for status, count in statuses.items():
        yield f'payflow_transactions_total{{service="{SERVICE}",status="{status}"}} {count!r}\n'
    yield "# HELP payflow_transaction_value_total Value of completed transactions, in currency units.\n"
    yield "# TYPE payflow_transaction_value_total counter\n"
    yield f'payflow_transaction_value_total{{currency="{CURRENCY}"}} {value!r}\n'
    yield "# HELP payflow_active_users Users with a session in the last five minutes.\n"
    yield "# TYPE payflow_active_users gauge\n"
    yield f"payflow_active_users {users}\n"


def history_lines(start: float, end: float, step: float) -> Iterator[str]:
    """OpenMetrics samples of a healthy stretch, counters starting at zero at `start`.

    One family at a time, as OpenMetrics requires; the counters are exact integrals."""
    times = [start + i * step for i in range(int((end - start) // step) + 1)]
    totals = []
    count = 0.0
    for i, t in enumerate(times):
        count += transactions_between(times[i - 1], t) if i else 0.0
        totals.append(count)
    yield "# TYPE payflow_transactions counter\n"
    for status, share in (("completed", 1 - FAILED_SHARE), ("failed", FAILED_SHARE)):
        labels = f'{{service="{SERVICE}",status="{status}"}}'
        for t, n in zip(times, totals, strict=True):
            yield f"payflow_transactions_total{labels} {n * share!r} {t:.3f}\n"
    yield "# TYPE payflow_transaction_value counter\n"
    for t, n in zip(times, totals, strict=True):
        value = n * (1 - FAILED_SHARE) * AVERAGE_TICKET_EUR
        yield f'payflow_transaction_value_total{{currency="{CURRENCY}"}} {value!r} {t:.3f}\n'
    yield "# TYPE payflow_active_users gauge\n"
    for t in times:
        yield f"payflow_active_users {active_users(t)} {t:.3f}\n"
