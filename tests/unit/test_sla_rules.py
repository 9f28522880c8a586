"""The SLA state machine, without AWS: signals, levels, recovery, hysteresis, failover, exactly-once per window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector_sla.sla.models import SlaPolicy
from connector_sla.sla.rules import ConnectorInputs, SourceProgress, Tick, decide, signal_status, source_health

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
POLICY = SlaPolicy(poll_window_seconds=60)


def inputs(lag: int = 0, *, now: datetime = T0, pending: int = 0, dead: int = 0, sources=None, policy=POLICY):
    fresh = {"primary": SourceProgress(last_event_at=now - timedelta(seconds=lag))}
    progress = sources if sources is not None else fresh
    return ConnectorInputs(
        connector_id="orders",
        name="Orders",
        owner_team="payments",
        sources=("primary", "backup"),
        policy=policy,
        registered_at=T0 - timedelta(days=1),
        progress=progress,
        pending_replay=pending,
        dead_letter_total=dead,
    )


class Fleet:
    """Drives one connector through consecutive poll windows, keeping the state the ledger would store."""

    def __init__(self) -> None:
        self.state = None
        self.window = 0
        self.transitions: list[dict] = []

    def poll(self, **kwargs) -> list[dict]:
        now = T0 + timedelta(seconds=60 * self.window)
        self.window += 1
        decision = decide(inputs(now=now, **kwargs), self.state, Tick(now.isoformat(), now), now)
        if decision.changed:
            self.state = {**decision.state, "version": (self.state or {}).get("version", 0) + 1}
        self.transitions.extend(decision.transitions)
        return [transition["kind"] for transition in decision.transitions]


def test_signal_status_uses_warning_and_critical_thresholds_inclusively():
    assert [signal_status(value, 10, 20) for value in (9, 10, 19, 20, 99)] == [
        "ok",
        "warning",
        "warning",
        "critical",
        "critical",
    ]


def test_a_healthy_connector_records_its_first_state_then_writes_nothing():
    fleet = Fleet()
    assert fleet.poll(lag=5) == []
    assert fleet.state["severity"] == "ok" and fleet.state["level"] == "none"
    # When nothing changes in later windows, the decision is "unchanged" (the evaluator writes nothing)
    now = T0 + timedelta(minutes=5)
    decision = decide(inputs(lag=5, now=now), fleet.state, Tick("t5", now), now)
    assert decision.changed is False and decision.transitions == []


def test_warning_opens_an_incident_at_l1_with_an_id_that_lasts_until_recovery():
    fleet = Fleet()
    assert fleet.poll(lag=400) == ["opened"]
    incident = fleet.state["incident_id"]
    assert fleet.state["level"] == "L1" and fleet.state["severity"] == "warning" and incident.startswith("inc_")
    fleet.poll(lag=500)
    assert fleet.state["incident_id"] == incident
    opened = fleet.transitions[0]
    assert opened["from_level"] == "none" and opened["to_level"] == "L1"
    assert opened["signals"]["freshness_lag"] == {"status": "warning", "value": 400, "warning": 300, "critical": 900}


def test_critical_on_consecutive_polls_escalates_to_l2_then_persisting_l2_escalates_to_l3():
    fleet = Fleet()
    assert fleet.poll(lag=1000) == ["opened"]  # critical streak 1
    assert fleet.poll(lag=1100) == ["escalated"]  # critical on 2 consecutive polls
    assert fleet.state["level"] == "L2"
    kinds = [fleet.poll(lag=1200) for _ in range(POLICY.escalate_after_l2_polls)]
    assert kinds[-1] == ["escalated"] and all(kind == [] for kind in kinds[:-1])
    assert fleet.state["level"] == "L3"
    levels = [(t["from_level"], t["to_level"]) for t in fleet.transitions if t["kind"] == "escalated"]
    assert levels == [("L1", "L2"), ("L2", "L3")]


def test_critical_that_does_not_repeat_stays_at_l1():
    fleet = Fleet()
    fleet.poll(lag=1000)
    fleet.poll(lag=400)  # warning: the critical streak breaks
    assert fleet.poll(lag=1000) == ["severity_changed"]
    assert fleet.state["level"] == "L1"


def test_recovery_needs_every_criterion_for_the_configured_clean_windows():
    fleet = Fleet()
    fleet.poll(lag=400, pending=50, dead=0)
    # Freshness is back, but the backlog is above the policy range (100): still open, and the API says why
    assert fleet.poll(lag=10, pending=500, dead=0) == ["severity_changed"]
    assert fleet.state["incident_status"] == "open"
    assert fleet.state["unmet_recovery"] == ["pending_replay"]
    # Backlog drained, but dead letters grew in this window
    assert fleet.poll(lag=10, pending=50, dead=3) == []
    assert fleet.state["unmet_recovery"] == ["dead_letter_growth"]
    # Two clean windows close it
    assert fleet.poll(lag=10, pending=50, dead=3) == []
    assert fleet.state["clean_windows"] == 1
    assert fleet.poll(lag=10, pending=50, dead=3) == ["recovered"]
    recovered = fleet.transitions[-1]
    assert fleet.state["level"] == "none" and fleet.state["incident_status"] == "closed"
    assert recovered["duration_seconds"] == 4 * 60 and recovered["from_level"] == "L1"


def test_a_connector_oscillating_around_the_threshold_keeps_one_incident_open():
    fleet = Fleet()
    for poll in range(12):
        fleet.poll(lag=310 if poll % 2 == 0 else 290)
    kinds = [transition["kind"] for transition in fleet.transitions]
    assert kinds.count("opened") == 1 and "recovered" not in kinds
    assert fleet.state["incident_status"] == "open"


def test_a_redelivered_tick_in_the_same_window_decides_nothing_new():
    fleet = Fleet()
    fleet.poll(lag=400)
    recorded_window = fleet.state["window"]
    same_tick = T0 + timedelta(seconds=5)
    decision = decide(inputs(lag=1000, now=same_tick), fleet.state, Tick("again", same_tick), same_tick)
    assert fleet.state["window"] == recorded_window
    assert decision.changed is False and decision.transitions == []


def test_an_outage_of_the_active_source_fails_over_to_the_first_healthy_backup_and_back():
    fleet = Fleet()
    healthy = {"primary": SourceProgress(T0), "backup": SourceProgress(T0)}
    fleet.poll(sources=healthy)
    assert fleet.state["active_source"] == "primary"
    now = T0 + timedelta(seconds=60)
    down = {"primary": SourceProgress(now, status="down"), "backup": SourceProgress(now)}
    assert fleet.poll(sources=down) == ["failover"]
    assert fleet.state["active_source"] == "backup"
    assert fleet.state["last_failover"]["from_source"] == "primary"
    # The primary must stay healthy for failback_healthy_windows before the service fails back
    kinds = []
    for _ in range(POLICY.failback_healthy_windows):
        now = T0 + timedelta(seconds=60 * fleet.window)
        kinds.append(fleet.poll(sources={"primary": SourceProgress(now), "backup": SourceProgress(now)}))
    assert kinds[:-1] == [[]] * (POLICY.failback_healthy_windows - 1) and kinds[-1] == ["failback"]
    assert fleet.state["active_source"] == "primary"


def test_no_failover_when_no_backup_is_healthy():
    fleet = Fleet()
    stale = {"primary": SourceProgress(T0 - timedelta(hours=1)), "backup": SourceProgress(T0 - timedelta(hours=1))}
    assert fleet.poll(sources=stale) == ["opened"]
    assert fleet.state["active_source"] == "primary"


def test_source_health_distinguishes_down_stale_lagging_unknown_and_healthy():
    data = inputs(
        sources={
            "primary": SourceProgress(T0 - timedelta(seconds=1000)),
            "backup": SourceProgress(T0, status="down"),
        }
    )
    assert source_health(data, "primary", T0) == "stale"
    assert source_health(data, "backup", T0) == "down"
    assert source_health(inputs(lag=400), "primary", T0) == "lagging"
    assert source_health(inputs(lag=1), "backup", T0) == "unknown"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 8000), st.integers(0, 300)), min_size=1, max_size=25))
def test_invariants_hold_for_any_sequence_of_readings(readings):
    # Given any sequence of polls, Then: levels only rise within an incident, an incident id is stable while open,
    # every transition is well-formed, and a closed incident never keeps a level.
    fleet = Fleet()
    dead = 0
    order = {"none": 0, "L1": 1, "L2": 2, "L3": 3}
    incident = None
    for lag, pending, new_dead in readings:
        dead += new_dead
        level_before = fleet.state["level"] if fleet.state else "none"
        kinds = fleet.poll(lag=lag, pending=pending, dead=dead)
        state = fleet.state
        if "recovered" in kinds:
            assert state["level"] == "none" and state["incident_status"] == "closed"
            incident = None
        elif state.get("incident_status") == "open":
            assert order[state["level"]] >= order[level_before] or "opened" in kinds
            if incident is not None and "opened" not in kinds:
                assert state["incident_id"] == incident
            incident = state["incident_id"]
        else:
            assert state["level"] == "none"
    for transition in fleet.transitions:
        assert transition["transition_id"].startswith("trn_") and transition["kind"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"freshness_warning_seconds": 900, "freshness_critical_seconds": 300}, "freshness_warning_seconds"),
        ({"pending_replay_warning": 10, "pending_replay_critical": 5}, "pending_replay_warning"),
        ({"dead_letter_growth_warning": 50, "dead_letter_growth_critical": 5}, "dead_letter_growth_warning"),
        ({"pending_replay_recovery_max": 2000}, "recovery range"),
    ],
)
def test_a_policy_whose_warning_is_above_its_critical_is_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        SlaPolicy(**overrides)
