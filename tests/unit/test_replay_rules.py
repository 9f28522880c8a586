"""The life of a dead-letter row: statuses, counters, history, replay decisions, listing ranges and jobs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector_sla.errors import Conflict, ValidationFailed
from connector_sla.replay.rules import (
    EVENTS,
    MAX_REPLAY_ATTEMPTS,
    PENDING_STATUSES,
    STATUSES,
    ConnectorConfig,
    CounterDelta,
    IllegalTransition,
    ReplayTarget,
    claim_fields,
    counter_delta,
    cursor_position,
    failed_again_fields,
    failed_again_outcome,
    lease_is_free,
    list_plan,
    new_failure_row,
    next_status,
    parse_replay_key,
    patch_fields,
    replay_decision,
    replay_key,
    replayed_fields,
    resolve_target,
    truncate_error_message,
)
from connector_sla.timeutil import to_iso

NOW = datetime(2026, 12, 3, 19, 22, tzinfo=UTC)
FAILURE_ID = "flr_01JEXAMPLE0000000000000001"


def a_row(**overrides):
    row = new_failure_row(
        failure_id=FAILURE_ID,
        connector_id="orders",
        source_id="pg",
        error_kind="parse",
        error_message="bad amount",
        retry_count=2,
        payload_json='{"amount":"12,50"}',
        payload_hash="a" * 64,
        now=NOW,
        actor="arn:aws:iam::1:user/connector",
    )
    row.update(overrides)
    return row


def apply(row, event, updates, entry):
    return {**row, **updates, "history": [*row["history"], entry]}


# ------------------------------------------------------------------------------------------------ statuses


@pytest.mark.parametrize(
    ("event", "current", "expected"),
    [
        ("reported", None, "dead"),
        ("patched", "dead", "patched"),
        ("patched", "patched", "patched"),
        ("replay_started", "dead", "replaying"),
        ("replay_started", "patched", "replaying"),
        ("replayed", "replaying", "replayed"),
        ("failed_again", "replayed", "dead"),
        ("failed_again", "replaying", "dead"),
    ],
)
def test_allowed_events_move_a_row_to_the_expected_status(event, current, expected):
    assert next_status(event, current) == expected


@pytest.mark.parametrize(
    ("event", "current"),
    [
        ("patched", "replaying"),
        ("patched", "replayed"),
        ("replay_started", "replayed"),
        ("replayed", "dead"),
        ("failed_again", "dead"),
        ("reported", "dead"),
    ],
)
def test_other_events_are_refused(event, current):
    with pytest.raises(IllegalTransition, match=f"{event} is not allowed"):
        next_status(event, current)


@given(st.lists(st.tuples(st.integers(min_value=0, max_value=4), st.sampled_from(EVENTS)), max_size=80))
def test_counters_always_equal_a_count_of_the_rows_and_no_row_is_ever_lost(steps):
    # Given five rows and any sequence of events, of which only the allowed ones are applied
    statuses: list[str | None] = [None] * 5
    history: list[list[str]] = [[] for _ in statuses]
    totals = CounterDelta()
    landings = replays = 0
    for index, event in steps:
        try:
            after = next_status(event, statuses[index])
        except IllegalTransition:
            continue
        totals += counter_delta(event, statuses[index])
        statuses[index] = after
        history[index].append(after)
        landings += event in ("reported", "failed_again")
        replays += event == "replayed"

    # Then the counters match what a counting scan would find, and every reported row has a status and history
    assert totals.pending_replay == sum(status in PENDING_STATUSES for status in statuses)
    assert totals.dead_letter_total == landings
    assert totals.replayed_total == replays
    for status, entries in zip(statuses, history, strict=True):
        assert status is None or (status in STATUSES and entries[-1] == status)


def test_a_new_row_is_dead_with_its_first_history_entry():
    row = a_row()
    assert row["status"] == "dead"
    assert row["failed_at"] == row["first_failed_at"] == to_iso(NOW)
    assert row["day"] == "2026-12-03"
    assert row["history"] == [
        {
            "at": to_iso(NOW),
            "event": "reported",
            "to_status": "dead",
            "by": "arn:aws:iam::1:user/connector",
            "source_id": "pg",
            "error_kind": "parse",
            "retry_count": 2,
            "payload_sha256": "a" * 64,
        }
    ]


def test_a_long_error_message_is_kept_truncated_rather_than_refused():
    message, truncated = truncate_error_message("x" * 5000)
    assert truncated and len(message) == 4000
    assert truncate_error_message("short") == ("short", False)


# ------------------------------------------------------------------------------------------------ patches


def test_a_patch_records_who_when_and_both_hashes():
    row = a_row()
    updates, patch, entry = patch_fields(
        row, new_payload_json="{}", new_hash="b" * 64, operations_json="[]", comment="fix", actor="sre", now=NOW
    )
    assert updates["status"] == "patched" and updates["version"] == 2 and updates["patch_count"] == 1
    assert patch == {
        "patch_no": 1,
        "at": to_iso(NOW),
        "by": "sre",
        "before_sha256": "a" * 64,
        "after_sha256": "b" * 64,
        "operations": "[]",
        "comment": "fix",
    }
    assert (entry["from_status"], entry["to_status"], entry["by"]) == ("dead", "patched", "sre")


@pytest.mark.parametrize(("status", "fragment"), [("replaying", "being replayed"), ("replayed", "already replayed")])
def test_a_row_being_or_already_replayed_cannot_be_patched(status, fragment):
    with pytest.raises(Conflict, match=fragment):
        patch_fields(
            a_row(status=status),
            new_payload_json="{}",
            new_hash="b",
            operations_json="[]",
            comment=None,
            actor="sre",
            now=NOW,
        )


# ------------------------------------------------------------------------------------------------ replay


@given(st.integers(min_value=1, max_value=999_999))
def test_a_replay_key_names_its_row_and_attempt(attempt):
    assert parse_replay_key(replay_key(FAILURE_ID, attempt)) == (FAILURE_ID, attempt)


@pytest.mark.parametrize("key", ["flr_x:1", f"{FAILURE_ID}:0", f"{FAILURE_ID}", f"{FAILURE_ID}:1:2"])
def test_anything_else_is_not_a_replay_key(key):
    with pytest.raises(ValueError, match="not a replay key"):
        parse_replay_key(key)


def claimed(row, replay_id="rpl_A"):
    updates, entry = claim_fields(row, replay_id=replay_id, actor="sre", now=NOW)
    return apply(row, "replay_started", updates, entry)


def test_claiming_gives_the_row_its_next_attempt_and_replay_key():
    row = claimed(a_row(replay_attempts=1))
    assert row["status"] == "replaying"
    assert row["replay_key"] == f"{FAILURE_ID}:2"
    assert row["status_before_replay"] == "dead"
    assert row["history"][-1]["replay_key"] == f"{FAILURE_ID}:2"


@pytest.mark.parametrize(
    ("row", "replay_id", "action", "reason"),
    [
        (None, None, "skip", "not_found"),
        (a_row(connector_id="billing"), None, "skip", "other_connector"),
        (a_row(), None, "replay", None),
        (a_row(status="patched"), "rpl_A", "replay", None),
        (a_row(status="replaying", replay_id="rpl_B"), "rpl_A", "skip", "replay_in_progress"),
        (a_row(status="replaying", replay_id="rpl_A"), "rpl_A", "resume", None),
        (a_row(status="replayed", replay_id="rpl_B"), None, "skip", "already_replayed"),
        (a_row(status="replayed", replay_id="rpl_A"), "rpl_A", "done", None),
        (a_row(status="dead", replay_id="rpl_A"), "rpl_A", "skip", "failed_again_in_this_replay"),
        (a_row(replay_attempts=MAX_REPLAY_ATTEMPTS), None, "skip", "attempt_limit_reached"),
    ],
)
def test_each_selected_row_gets_a_decision_and_skips_say_why(row, replay_id, action, reason):
    decision = replay_decision(row, failure_id=FAILURE_ID, connector_id="orders", replay_id=replay_id)
    assert (decision.action, decision.reason) == (action, reason)
    assert (decision.detail is not None) == (action == "skip")


def test_a_replayed_row_that_fails_again_returns_to_dead_with_one_more_retry_and_its_history():
    # Given a row that was claimed and replayed
    row = claimed(a_row())
    updates, entry = replayed_fields(row, target_arn="arn:aws:sqs:us-east-1:1:q", actor="sre", now=NOW)
    row = apply(row, "replayed", updates, entry)

    # When its consumer reports that it failed again
    assert failed_again_outcome(row, reported_key=row["replay_key"]) == "apply"
    updates, entry = failed_again_fields(
        row,
        source_id="pg",
        error_kind="mapping",
        error_message="still bad",
        reported_retry_count=None,
        actor="consumer",
        now=NOW + timedelta(minutes=1),
    )
    row = apply(row, "failed_again", updates, entry)

    # Then it is dead, its retry count went up by one, and its history shows every step
    assert row["status"] == "dead" and row["retry_count"] == 3 and row["error_kind"] == "mapping"
    assert [item["event"] for item in row["history"]] == ["reported", "replay_started", "replayed", "failed_again"]
    assert row["last_failed_replay_key"] == f"{FAILURE_ID}:1"
    assert row["failed_at"] == to_iso(NOW + timedelta(minutes=1)) and row["first_failed_at"] == to_iso(NOW)

    # And the same report again is recognized as a duplicate
    assert failed_again_outcome(row, reported_key=f"{FAILURE_ID}:1") == "duplicate"


def test_a_failed_again_report_for_a_row_that_was_not_replayed_or_for_an_old_attempt_is_refused():
    with pytest.raises(Conflict, match="only a replayed row can fail again"):
        failed_again_outcome(a_row(), reported_key=None)
    replayed = a_row(status="replayed", replay_key=f"{FAILURE_ID}:3")
    with pytest.raises(Conflict, match="not the latest replay"):
        failed_again_outcome(replayed, reported_key=f"{FAILURE_ID}:2")


def config(target):
    return ConnectorConfig("orders", "Orders", ("pg",), target, None)


ALLOWED = ("arn:aws:events:us-east-1:1:event-bus/replay", "arn:aws:sqs:us-east-1:1:replay")


@pytest.mark.parametrize(
    ("target", "fragment"),
    [
        (None, "has no replay_target"),
        (ReplayTarget("sqs", "arn:aws:sqs:us-east-1:1:elsewhere"), "is not an allowed replay target"),
        (ReplayTarget("eventbridge", "arn:aws:sqs:us-east-1:1:replay"), "says kind eventbridge"),
    ],
)
def test_a_replay_target_is_refused_unless_allowed_and_consistent(target, fragment):
    with pytest.raises(ValidationFailed, match=fragment):
        resolve_target(config(target), ALLOWED)


def test_an_allowed_target_is_used():
    target = ReplayTarget("eventbridge", ALLOWED[0])
    assert resolve_target(config(target), ALLOWED) == target


# ------------------------------------------------------------------------------------------------ listing


def test_with_a_connector_the_list_reads_its_index_over_any_range():
    plan = list_plan(connector_id="orders", since=None, until=None, now=NOW)
    assert (plan.index, plan.since, plan.until) == ("ByConnector", None, None)


def test_without_a_connector_the_list_reads_the_last_seven_days_newest_first():
    plan = list_plan(connector_id=None, since=None, until=None, now=NOW)
    assert plan.index == "ByDay"
    assert plan.days[0] == "2026-12-03" and plan.days[-1] == "2026-11-26"


def test_an_inverted_or_too_long_range_is_a_400():
    with pytest.raises(ValidationFailed, match=r"since .* is after until"):
        list_plan(connector_id=None, since=NOW, until=NOW - timedelta(hours=1), now=NOW)
    with pytest.raises(ValidationFailed, match="at most 31 days"):
        list_plan(connector_id=None, since=NOW - timedelta(days=40), until=NOW, now=NOW)


def test_a_cursor_must_belong_to_the_query():
    plan = list_plan(connector_id="orders", since=NOW - timedelta(days=1), until=NOW, now=NOW)
    good = {"connector_id": "orders", "failed_at": to_iso(NOW - timedelta(hours=1)), "failure_id": FAILURE_ID}
    assert cursor_position(plan, {"day": "", "after": good}) == (0, good)
    for tampered in (
        {"day": "2026-12-03", "after": good},
        {"day": "", "after": {**good, "connector_id": "billing"}},
        {"day": "", "after": {**good, "failed_at": to_iso(NOW - timedelta(days=3))}},
        {"day": "", "after": {"failure_id": FAILURE_ID}},
        {"day": "", "after": {**good, "failed_at": 5}},
    ):
        with pytest.raises(ValidationFailed, match="cursor does not belong"):
            cursor_position(plan, tampered)


# ------------------------------------------------------------------------------------------------ jobs


def test_a_job_is_free_to_take_unless_finished_or_held_by_a_live_worker():
    assert lease_is_free({"status": "queued"}, NOW)
    assert lease_is_free({"status": "interrupted"}, NOW)
    assert not lease_is_free({"status": "succeeded"}, NOW)
    assert not lease_is_free({"status": "running", "lease_until": to_iso(NOW + timedelta(seconds=1))}, NOW)
    assert lease_is_free({"status": "running", "lease_until": to_iso(NOW - timedelta(seconds=1))}, NOW)
