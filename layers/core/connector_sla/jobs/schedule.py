"""EventBridge schedule expressions: ``rate(...)``, ``cron(...)`` and ``at(...)``, validated as AWS validates them.

Used to refuse a bad schedule before anything is created, and by the local stack to fire schedules that moto
stores but never runs.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((.+)\)$")
_AT = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = {name: index for index, name in enumerate(calendar.month_abbr) if name}
_MONTHS_UPPER = {name.upper(): index for name, index in _MONTHS.items()}
_WEEKDAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
_HORIZON_DAYS = 366 * 5


class ScheduleError(ValueError):
    """The expression is not a valid EventBridge schedule; the message says why and shows the expected form."""


@dataclass(frozen=True)
class _Field:
    values: frozenset[int]
    any: bool = False
    last: bool = False  # "L" in day-of-month
    weekday_near: int | None = None  # "15W" in day-of-month
    last_weekday: int | None = None  # "6L" in day-of-week
    nth_weekday: tuple[int, int] | None = None  # "3#2" in day-of-week: (weekday, n)
    question: bool = False


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule expression."""

    expression: str
    kind: str
    interval: timedelta | None = None
    at: datetime | None = None
    cron: tuple[_Field, ...] | None = None

    def next_after(self, moment: datetime, *, anchor: datetime | None = None) -> datetime | None:
        """The first firing strictly after ``moment`` (UTC), or ``None`` when the schedule never fires again.

        Rates count from ``anchor`` (when the schedule was created); cron fires on whole minutes.
        """
        moment = moment.astimezone(UTC)
        if self.kind == "at":
            assert self.at is not None
            return self.at if self.at > moment else None
        if self.kind == "rate":
            assert self.interval is not None
            start = (anchor or moment).astimezone(UTC)
            if start > moment:
                return start
            elapsed = (moment - start) // self.interval
            return start + (elapsed + 1) * self.interval
        return _next_cron(self.cron or (), moment)


def parse_schedule(expression: str) -> Schedule:
    """Parse and validate ``expression``; raises :class:`ScheduleError` with what is expected."""
    text = (expression or "").strip()
    rate = _RATE.match(text)
    if rate:
        value, unit = int(rate.group(1)), rate.group(2)
        if value < 1:
            raise ScheduleError(f"{text!r}: the rate must be a positive whole number, e.g. rate(5 minutes)")
        if (value == 1) == unit.endswith("s"):
            expected = "singular (rate(1 minute))" if value == 1 else f"plural (rate({value} {unit.rstrip('s')}s))"
            raise ScheduleError(f"{text!r}: the unit must be {expected}")
        return Schedule(text, "rate", interval=timedelta(seconds=value * _UNIT_SECONDS[unit.rstrip("s")]))
    at = _AT.match(text)
    if at:
        try:
            moment = datetime.fromisoformat(at.group(1)).replace(tzinfo=UTC)
        except ValueError as error:
            raise ScheduleError(f"{text!r}: not a valid date and time, e.g. at(2026-12-31T23:00:00)") from error
        return Schedule(text, "at", at=moment)
    cron = _CRON.match(text)
    if cron:
        return Schedule(text, "cron", cron=_parse_cron(text, cron.group(1)))
    raise ScheduleError(
        f"{text!r} is not a schedule expression; expected rate(5 minutes), cron(0/15 * * * ? *) "
        "or at(2026-12-31T23:00:00)"
    )


def _parse_cron(text: str, body: str) -> tuple[_Field, ...]:
    parts = body.split()
    if len(parts) != 6:
        raise ScheduleError(
            f"{text!r}: cron needs 6 fields (minutes hours day-of-month month day-of-week year), got {len(parts)}"
        )
    minutes = _parse_field(text, "minutes", parts[0], 0, 59)
    hours = _parse_field(text, "hours", parts[1], 0, 23)
    dom = _parse_field(text, "day-of-month", parts[2], 1, 31, day_of_month=True)
    months = _parse_field(text, "month", parts[3], 1, 12, names=_MONTHS_UPPER)
    dow = _parse_field(text, "day-of-week", parts[4], 1, 7, names=_WEEKDAYS, day_of_week=True)
    years = _parse_field(text, "year", parts[5], 1970, 2199)
    if dom.question == dow.question:
        raise ScheduleError(f"{text!r}: exactly one of day-of-month and day-of-week must be '?'")
    return (minutes, hours, dom, months, dow, years)


def _parse_field(
    text: str,
    label: str,
    raw: str,
    low: int,
    high: int,
    *,
    names: dict[str, int] | None = None,
    day_of_month: bool = False,
    day_of_week: bool = False,
) -> _Field:
    def number(token: str) -> int:
        token = token.upper()
        if names and token in names:
            return names[token]
        if not token.isdigit():
            raise ScheduleError(f"{text!r}: {label} value {token!r} is not valid")
        value = int(token)
        if not low <= value <= high:
            raise ScheduleError(f"{text!r}: {label} value {value} is outside {low}-{high}")
        return value

    if raw == "?":
        if not (day_of_month or day_of_week):
            raise ScheduleError(f"{text!r}: '?' is only allowed in day-of-month or day-of-week")
        return _Field(frozenset(), question=True)
    if raw == "*":
        return _Field(frozenset(range(low, high + 1)), any=True)
    if day_of_month and raw.upper() == "L":
        return _Field(frozenset(), last=True)
    if day_of_month and raw.upper().endswith("W"):
        return _Field(frozenset(), weekday_near=number(raw[:-1]))
    if day_of_week and raw.upper().endswith("L") and len(raw) > 1:
        return _Field(frozenset(), last_weekday=number(raw[:-1]))
    if day_of_week and "#" in raw:
        weekday, _, nth = raw.partition("#")
        if not nth.isdigit() or not 1 <= int(nth) <= 5:
            raise ScheduleError(f"{text!r}: {label} '{raw}' needs an occurrence 1-5 after '#'")
        return _Field(frozenset(), nth_weekday=(number(weekday), int(nth)))
    values: set[int] = set()
    for item in raw.split(","):
        base, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) < 1:
                raise ScheduleError(f"{text!r}: {label} step '{step_text}' must be a positive number")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = number(first), number(last)
            if start > end:
                raise ScheduleError(f"{text!r}: {label} range '{base}' runs backwards")
        else:
            start = number(base)
            end = high if step_text else start
        values.update(range(start, end + 1, step))
    return _Field(frozenset(values))


def _day_matches(dom: _Field, dow: _Field, day: datetime) -> bool:
    days_in_month = calendar.monthrange(day.year, day.month)[1]
    aws_weekday = (day.isoweekday() % 7) + 1  # SUN=1 ... SAT=7
    if not dom.question:
        if dom.last:
            return day.day == days_in_month
        if dom.weekday_near is not None:
            return day.day == _nearest_weekday(day.year, day.month, dom.weekday_near)
        return day.day in dom.values
    if dow.last_weekday is not None:
        return aws_weekday == dow.last_weekday and day.day + 7 > days_in_month
    if dow.nth_weekday is not None:
        weekday, nth = dow.nth_weekday
        return aws_weekday == weekday and (day.day - 1) // 7 + 1 == nth
    return aws_weekday in dow.values


def _nearest_weekday(year: int, month: int, target: int) -> int:
    days_in_month = calendar.monthrange(year, month)[1]
    target = min(target, days_in_month)
    weekday = calendar.weekday(year, month, target)  # MON=0 ... SUN=6
    if weekday == 5:
        return target - 1 if target > 1 else target + 2
    if weekday == 6:
        return target + 1 if target < days_in_month else target - 2
    return target


def _next_cron(fields: tuple[_Field, ...], moment: datetime) -> datetime | None:
    minutes, hours, dom, months, dow, years = fields
    start = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
    day = start.replace(hour=0, minute=0)
    for _ in range(_HORIZON_DAYS):
        if day.year in years.values and day.month in months.values and _day_matches(dom, dow, day):
            for hour in sorted(hours.values):
                for minute in sorted(minutes.values):
                    candidate = day.replace(hour=hour, minute=minute)
                    if candidate >= start:
                        return candidate
        day += timedelta(days=1)
    return None
