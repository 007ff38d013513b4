"""Five-field cron expressions (`minute hour day-of-month month day-of-week`) in a timezone.

Small on purpose: digests need "which slots fall between two instants" and "when is the next
one", evaluated in the schedule's own timezone so 09:00 stays 09:00 across DST. Rules follow
Vixie cron: `*`, lists, ranges, steps (`*/15`, `1-5/2`), names (`mon`, `jan`); when both
day-of-month and day-of-week are restricted a day matching either fires. A local time that
does not exist (the hour skipped in spring) fires at the same wall-clock offset after the jump;
an ambiguous one (autumn) fires once, at its first occurrence.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_MONTHS = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
_HORIZON_DAYS = 366 * 5  # a schedule that does not fire within five years is refused


class CronError(ValueError):
    """`str()` says which field is wrong and why."""


def _value(text: str, lo: int, hi: int, names: dict[str, int], field: str) -> int:
    key = text.lower()
    if key in names:
        return names[key]
    if not text.isascii() or not text.isdigit():
        raise CronError(f"{field}: {text!r} is not a number{' or a name' if names else ''}")
    value = int(text)
    if not lo <= value <= hi:
        raise CronError(f"{field}: {value} is outside {lo}-{hi}")
    return value


def _field(text: str, lo: int, hi: int, names: dict[str, int], field: str) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"{field}: empty list item in {text!r}")
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            step = _value(step_text, 1, hi - lo + 1, {}, f"{field} step")
        if base == "*":
            start, end = lo, hi
        elif "-" in base:
            a, _, b = base.partition("-")
            start, end = _value(a, lo, hi, names, field), _value(b, lo, hi, names, field)
            if start > end:
                raise CronError(f"{field}: range {base!r} runs backwards")
        else:
            start = _value(base, lo, hi, names, field)
            end = hi if step_text else start
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    expression: str
    timezone: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, expression: str, timezone: str = "UTC") -> Cron:
        parts = expression.split()
        if len(parts) != 5:
            raise CronError(f"needs 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise CronError(f"unknown timezone {timezone!r} (use an IANA name like Europe/London)") from None
        sets = [
            _field(p, lo, hi, names, name) for p, (name, lo, hi, names) in zip(parts, _FIELDS, strict=True)
        ]
        weekdays = frozenset(d % 7 for d in sets[4])
        cron = cls(
            expression,
            timezone,
            sets[0],
            sets[1],
            sets[2],
            sets[3],
            weekdays,
            any_day=parts[2] == "*",
            any_weekday=parts[4] == "*",
        )
        if cron.next_after(datetime(2000, 1, 1, tzinfo=UTC)) is None:
            raise CronError(f"{expression!r} never fires (no such date)")
        return cron

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def _day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.any_day and self.any_weekday:
            return True
        if self.any_day:
            return dow
        if self.any_weekday:
            return dom
        return dom or dow

    def _fires_on(self, day: date) -> Iterator[datetime]:
        """The instants (UTC) this day fires at, ascending."""
        zone = self.zone
        seen: set[datetime] = set()
        for hour in sorted(self.hours):
            for minute in sorted(self.minutes):
                local = datetime.combine(day, time(hour, minute), tzinfo=zone)  # fold=0
                instant = local.astimezone(UTC)
                if instant not in seen:
                    seen.add(instant)
                    yield instant

    def slots(self, start: datetime, end: datetime) -> list[datetime]:
        """Every firing instant in (start, end], ascending, as UTC datetimes."""
        zone = self.zone
        day = start.astimezone(zone).date() - timedelta(days=1)
        last = end.astimezone(zone).date() + timedelta(days=1)
        out: list[datetime] = []
        while day <= last:
            if self._day_matches(day):
                out += [t for t in self._fires_on(day) if start < t <= end]
            day += timedelta(days=1)
        return sorted(set(out))

    def next_after(self, after: datetime) -> datetime | None:
        """The first firing instant strictly after `after` (None if none within five years)."""
        zone = self.zone
        day = after.astimezone(zone).date() - timedelta(days=1)
        for _ in range(_HORIZON_DAYS):
            if self._day_matches(day):
                for t in self._fires_on(day):
                    if t > after:
                        return t
            day += timedelta(days=1)
        return None

    def latest_at_or_before(self, at: datetime, lookback: timedelta) -> datetime | None:
        found = self.slots(at - lookback, at)
        return found[-1] if found else None
