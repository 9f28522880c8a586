from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connector_sla.jobs.schedule import ScheduleError, parse_schedule

NOW = datetime(2026, 12, 3, 19, 22, 30, tzinfo=UTC)  # a Thursday


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [("rate(1 minute)", 60), ("rate(5 minutes)", 300), ("rate(1 hour)", 3600), ("rate(2 days)", 172800)],
)
def test_rates_fire_every_interval_from_their_anchor(expression, seconds):
    schedule = parse_schedule(expression)
    anchor = NOW - timedelta(seconds=10)
    assert schedule.next_after(NOW, anchor=anchor) == anchor + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("cron(0/15 * * * ? *)", datetime(2026, 12, 3, 19, 30, tzinfo=UTC)),
        ("cron(0 8 * * ? *)", datetime(2026, 12, 4, 8, 0, tzinfo=UTC)),
        ("cron(0 9 ? * MON-FRI *)", datetime(2026, 12, 4, 9, 0, tzinfo=UTC)),
        ("cron(0 9 ? * SUN *)", datetime(2026, 12, 6, 9, 0, tzinfo=UTC)),
        ("cron(30 10 L * ? *)", datetime(2026, 12, 31, 10, 30, tzinfo=UTC)),
        ("cron(0 12 ? * 6L *)", datetime(2026, 12, 25, 12, 0, tzinfo=UTC)),
        ("cron(0 12 ? * 2#1 *)", datetime(2026, 12, 7, 12, 0, tzinfo=UTC)),
        ("cron(0 0 1 JAN ? 2027)", datetime(2027, 1, 1, 0, 0, tzinfo=UTC)),
    ],
)
def test_cron_expressions_fire_on_the_next_matching_minute(expression, expected):
    assert parse_schedule(expression).next_after(NOW) == expected


def test_one_time_schedules_fire_once():
    schedule = parse_schedule("at(2026-12-03T20:00:00)")
    assert schedule.next_after(NOW) == datetime(2026, 12, 3, 20, 0, tzinfo=UTC)
    assert schedule.next_after(datetime(2026, 12, 3, 21, 0, tzinfo=UTC)) is None


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("rate(1 minutes)", "singular"),
        ("rate(5 minute)", "plural"),
        ("rate(0 minutes)", "positive"),
        ("every 5 minutes", "not a schedule expression"),
        ("cron(0 8 * * *)", "6 fields"),
        ("cron(0 8 * * * *)", "exactly one of day-of-month and day-of-week"),
        ("cron(61 8 * * ? *)", "outside 0-59"),
        ("cron(0 8 ? * FUNDAY *)", "not valid"),
        ("at(2026-13-03T20:00:00)", "not a valid date"),
    ],
)
def test_invalid_expressions_are_refused_with_the_reason(expression, message):
    with pytest.raises(ScheduleError, match=message):
        parse_schedule(expression)
