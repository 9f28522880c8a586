"""The overview's predicted time to breach: the first signal to reach its critical threshold at its growth rate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connector_sla.sla.models import SlaPolicy
from connector_sla.sla.rules import ConnectorInputs, SourceProgress
from connector_sla.sla.views import lag_growth_rate, predict_breach
from connector_sla.timeutil import to_iso

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
POLICY = SlaPolicy(freshness_warning_seconds=300, freshness_critical_seconds=900, pending_replay_critical=5000)


def inputs(lag: int, pending: int = 0) -> ConnectorInputs:
    return ConnectorInputs(
        connector_id="orders",
        name="Orders",
        owner_team="payments",
        sources=("primary",),
        policy=POLICY,
        registered_at=NOW - timedelta(days=1),
        progress={"primary": SourceProgress(last_event_at=NOW - timedelta(seconds=lag))},
        pending_replay=pending,
    )


def reports(*, event_advanced: int, interval: int, lag: int, reported_ago: int = 0) -> dict:
    """Two checkpoint reports ``interval`` seconds apart, whose event time moved ``event_advanced`` seconds."""
    reported = NOW - timedelta(seconds=reported_ago)
    event = NOW - timedelta(seconds=lag)
    return {
        "last_event_at": to_iso(event),
        "reported_at": to_iso(reported),
        "prev_last_event_at": to_iso(event - timedelta(seconds=event_advanced)),
        "prev_reported_at": to_iso(reported - timedelta(seconds=interval)),
    }


def test_a_source_that_keeps_pace_gains_no_lag_and_one_that_stalled_gains_a_second_per_second():
    assert lag_growth_rate(reports(event_advanced=60, interval=60, lag=10), 10, 300, NOW) == 0.0
    assert lag_growth_rate(reports(event_advanced=0, interval=60, lag=120), 120, 300, NOW) == 1.0
    assert lag_growth_rate(reports(event_advanced=30, interval=60, lag=120), 120, 300, NOW) == 0.5


def test_without_recent_reports_a_lag_at_risk_is_assumed_to_grow_with_the_clock():
    assert lag_growth_rate(None, 400, 300, NOW) == 1.0
    assert lag_growth_rate(None, 100, 300, NOW) == 0.0
    stale_reports = reports(event_advanced=60, interval=60, lag=400, reported_ago=600)
    assert lag_growth_rate(stale_reports, 400, 300, NOW) == 1.0


def test_a_stalled_source_breaches_when_its_lag_reaches_the_critical_threshold():
    # Given a lag of 600 s growing at half a second per second (critical at 900 s)
    entry = reports(event_advanced=30, interval=60, lag=600)

    # When the breach is predicted
    breach = predict_breach(inputs(600), entry, {}, NOW)

    # Then it is the freshness lag, in (900 - 600) / 0.5 = 600 seconds
    assert breach is not None
    assert (breach.signal, breach.seconds, breach.at) == ("freshness_lag", 600, to_iso(NOW + timedelta(seconds=600)))


def test_the_backlog_wins_when_it_reaches_its_threshold_first():
    # Given a healthy lag and a pending backlog that grew from 1000 to 3000 in the last 100 s (critical at 5000)
    state = {"pending_replay_baseline": 1000, "pending_replay_baseline_at": to_iso(NOW - timedelta(seconds=100))}
    entry = reports(event_advanced=60, interval=60, lag=5)

    breach = predict_breach(inputs(5, pending=3000), entry, state, NOW)

    # Then at 20 rows a second the remaining 2000 rows take 100 s
    assert breach is not None and (breach.signal, breach.seconds) == ("pending_replay", 100)


def test_nothing_growing_predicts_no_breach():
    state = {"pending_replay_baseline": 50, "pending_replay_baseline_at": to_iso(NOW - timedelta(seconds=100))}
    assert predict_breach(inputs(5, pending=40), reports(event_advanced=60, interval=60, lag=5), state, NOW) is None
