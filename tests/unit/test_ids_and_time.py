from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from connector_sla.ids import new_id, stable_id
from connector_sla.timeutil import day_of, days_between, parse_iso, to_iso


def test_new_ids_carry_their_prefix_and_sort_by_creation():
    first, second = new_id("inc"), new_id("inc")
    assert first.startswith("inc_") and len(first) == 30
    assert first[:14] <= second[:14]


def test_stable_ids_are_the_same_for_the_same_parts_only():
    assert stable_id("ntf", "a", "b") == stable_id("ntf", "a", "b")
    assert stable_id("ntf", "a", "b") != stable_id("ntf", "ab", "")


def test_iso_timestamps_are_utc_with_milliseconds_and_parse_back():
    moment = datetime(2026, 12, 3, 20, 22, 0, 123000, tzinfo=timezone(timedelta(hours=1)))
    text = to_iso(moment)
    assert text == "2026-12-03T19:22:00.123Z"
    assert parse_iso(text) == moment


def test_naive_timestamps_are_refused():
    with pytest.raises(ValueError, match="no UTC offset"):
        parse_iso("2026-12-03T19:22:00")


def test_days_between_covers_every_day_touched():
    start = datetime(2026, 12, 30, 23, 0, tzinfo=UTC)
    assert days_between(start, start + timedelta(days=2)) == ["2026-12-30", "2026-12-31", "2027-01-01"]
    assert day_of(start) == "2026-12-30"
    assert days_between(start, start - timedelta(seconds=1)) == []
