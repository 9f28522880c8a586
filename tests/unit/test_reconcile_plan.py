"""The reconcile rules: which ACK changes a page of remote incidents asks for, and how a run reports them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from connector_sla.alerts.ack import ACK_STATES, ack_rank
from connector_sla.jobs.mapping import MappedIncident, MappingProblem
from connector_sla.jobs.reconcile import RunReport, notification_id_of, plan_page

REMOTE = ("triggered", "acknowledged", "resolved", "closed")


def incident(notification_id, status, *, position=0, incident_id=None, delivery_id=None, remote_id="P"):
    return MappedIncident(position, remote_id, notification_id, delivery_id, incident_id, status, status.upper())


def local(notification_id, ack_state="unacked", incident_id="inc_1"):
    return {"notification_id": notification_id, "ack_state": ack_state, "incident_id": incident_id}


def test_an_acknowledged_remote_incident_moves_an_unacked_notification_forward():
    # Given a notification still unacked locally and acknowledged at the provider
    plan = plan_page([incident("ntf_A", "acknowledged")], {"ntf_A": local("ntf_A")}, {})

    # Then the plan has exactly that change
    assert [(c.notification_id, c.ack_state_before, c.ack_state_after, c.raw_status) for c in plan.changes] == [
        ("ntf_A", "unacked", "acknowledged", "ACKNOWLEDGED")
    ]
    assert (plan.matched, plan.unchanged, plan.unmatched, plan.problems) == (1, 0, (), ())


def test_a_late_acknowledged_never_moves_a_resolved_notification_back():
    plan = plan_page([incident("ntf_A", "acknowledged")], {"ntf_A": local("ntf_A", "resolved")}, {})

    assert plan.changes == ()
    assert (plan.matched, plan.unchanged) == (1, 1)


def test_a_delivery_id_alone_names_its_notification():
    only_delivery = incident(None, "resolved", delivery_id="dlv_01ABC_2")
    assert notification_id_of(only_delivery) == "ntf_01ABC"
    assert notification_id_of(incident(None, "resolved", delivery_id="not-a-delivery")) is None

    plan = plan_page([only_delivery], {"ntf_01ABC": local("ntf_01ABC")}, {})

    assert [c.notification_id for c in plan.changes] == ["ntf_01ABC"]


def test_unknown_notifications_and_other_incidents_are_unmatched_with_a_reason():
    items = [
        incident("ntf_missing", "acknowledged"),
        incident("ntf_A", "acknowledged", incident_id="inc_other"),
        incident(None, "acknowledged", delivery_id="garbage"),
    ]
    plan = plan_page(items, {"ntf_A": local("ntf_A", incident_id="inc_1")}, {})

    assert plan.changes == ()
    reasons = [item.reason for item in plan.unmatched]
    assert reasons[0].startswith("no local notification")
    assert reasons[1] == "the notification belongs to incident inc_1"
    assert reasons[2].startswith("no local notification")


def test_several_incidents_naming_one_notification_collapse_into_the_furthest_change():
    items = [incident("ntf_A", "acknowledged", position=0), incident("ntf_A", "resolved", position=1)]

    plan = plan_page(items, {"ntf_A": local("ntf_A")}, {})

    assert [(c.ack_state_before, c.ack_state_after) for c in plan.changes] == [("unacked", "resolved")]
    assert (plan.matched, plan.unchanged) == (2, 1)


def test_a_change_planned_on_an_earlier_page_is_not_planned_again():
    first = plan_page([incident("ntf_A", "acknowledged")], {"ntf_A": local("ntf_A")}, {})
    second = plan_page([incident("ntf_A", "acknowledged")], {"ntf_A": local("ntf_A")}, first.ack_view)

    assert len(first.changes) == 1
    assert second.changes == ()


notification_ids = st.sampled_from(["ntf_A", "ntf_B", "ntf_C", "ntf_D"])
mapped = st.builds(
    incident, notification_ids, st.sampled_from(REMOTE), incident_id=st.sampled_from([None, "inc_1", "inc_2"])
)
problems = st.builds(MappingProblem, st.integers(0, 9), st.none(), st.just("unreadable"))
pages = st.lists(st.one_of(mapped, mapped, problems), max_size=12)
local_states = st.dictionaries(notification_ids, st.sampled_from(ACK_STATES).map(lambda state: state), max_size=4).map(
    lambda states: {key: local(key, state) for key, state in states.items()}
)


@given(items=pages, notifications=local_states)
def test_every_incident_is_counted_once_and_changes_only_move_forward(items, notifications):
    plan = plan_page(items, notifications, {})

    # Every incident is a problem, unmatched or matched; matched ones either caused a change or are unchanged
    assert len(plan.problems) + len(plan.unmatched) + plan.matched == len(items)
    assert plan.unchanged + len(plan.changes) == plan.matched
    # Each change moves forward from the local state, once per notification
    assert len({change.notification_id for change in plan.changes}) == len(plan.changes)
    for change in plan.changes:
        assert change.ack_state_before == notifications[change.notification_id]["ack_state"]
        assert ack_rank(change.ack_state_after) > ack_rank(change.ack_state_before)


@given(items=pages, notifications=local_states)
def test_planning_again_after_the_changes_were_applied_finds_nothing_to_do(items, notifications):
    # Given the changes of a first run applied to the local notifications
    first = plan_page(items, notifications, {})
    applied = {key: dict(value) for key, value in notifications.items()}
    for change in first.changes:
        applied[change.notification_id]["ack_state"] = change.ack_state_after

    # When the same remote list is reconciled again, Then nothing is left to change (runs are idempotent)
    assert plan_page(items, applied, {}).changes == ()


def test_a_report_counts_a_dry_run_as_would_update_and_a_real_run_as_updated():
    plan = plan_page(
        [incident("ntf_A", "acknowledged"), incident("ntf_X", "resolved"), MappingProblem(2, "P9", "bad status")],
        {"ntf_A": local("ntf_A")},
        {},
    )
    dry = RunReport(dry_run=True)
    dry.add_plan(plan, fetched=3)
    dry.add_change(plan.changes[0], "would_update")

    assert dry.counts() == {
        "fetched": 3,
        "matched": 1,
        "would_update": 1,
        "unchanged": 0,
        "unmatched": 1,
        "errors": 1,
    }
    assert dry.status() == "partial"
    assert dry.as_record()["changes"][0]["outcome"] == "would_update"
    assert dry.as_record()["error_details"] == [{"stage": "map", "message": "bad status", "remote_id": "P9"}]

    real = RunReport(dry_run=False)
    real.add_plan(plan_page([incident("ntf_A", "acknowledged")], {"ntf_A": local("ntf_A")}, {}), fetched=1)
    assert "updated" in real.counts() and "would_update" not in real.counts()
    assert real.status() == "succeeded"
    assert RunReport(dry_run=False).status() == "succeeded"
    nothing_read = RunReport(dry_run=False)
    nothing_read.add_error("fetch", "HTTP 500")
    assert nothing_read.status() == "failed"
