"""Provider mappings: checked when saved, applied to each payload, refusing wrong types with the field's name."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector_sla.alerts.providers import DEFAULT_MAPPING
from connector_sla.callbacks.intake import NORMALIZED_STATUSES
from connector_sla.callbacks.mapping import (
    PAGERDUTY_V3_MAPPING,
    PAGERDUTY_V3_STATUS_MAP,
    MappedCallback,
    MappingRefused,
    apply_mapping,
    check_mapping,
)
from tests.support import load_event


def pagerduty_payload() -> dict:
    """The body of the sample PagerDuty v3 webhook in events/ (an incident.acknowledged event)."""
    return json.loads(load_event("oncall_callback_pagerduty_v3.json")["body"])


def refusal(payload, mapping=DEFAULT_MAPPING, status_map=None) -> MappingRefused:
    with pytest.raises(MappingRefused) as caught:
        apply_mapping(payload, mapping, status_map or {})
    return caught.value


# ---------------------------------------------------------------------------------------------- applying


def test_the_default_mapping_reads_top_level_fields():
    # Given the generic provider's callback
    payload = {
        "event_id": "evt-7f3a",
        "status": "acknowledged",
        "notification_id": "ntf_A",
        "acknowledged_by": "responder@example.com",
        "eta": "2026-12-03T21:00:00+01:00",
    }

    # When the default mapping reads it
    mapped = apply_mapping(payload, DEFAULT_MAPPING, {})

    # Then every field is typed and the ETA is normalized to UTC
    assert mapped == MappedCallback(
        status="acknowledged",
        raw_status="acknowledged",
        notification_id="ntf_A",
        event_id="evt-7f3a",
        actor="responder@example.com",
        eta="2026-12-03T20:00:00.000Z",
    )


def test_the_default_mapping_falls_back_to_custom_details():
    payload = {"status": "resolved", "custom_details": {"delivery_id": "dlv_B_2", "incident_id": "inc_C"}}
    mapped = apply_mapping(payload, DEFAULT_MAPPING, {})
    assert (mapped.delivery_id, mapped.incident_id, mapped.notification_id) == ("dlv_B_2", "inc_C", None)


def test_a_realistic_pagerduty_v3_webhook_is_read_natively():
    # Given PagerDuty's own v3 payload: the incident_key is the dedup_key escalation sent (the notification id)
    payload = pagerduty_payload()

    # When the PagerDuty preset reads it
    mapped = apply_mapping(payload, PAGERDUTY_V3_MAPPING, PAGERDUTY_V3_STATUS_MAP)

    # Then the event type maps to our status, and the ids and responder come out of PagerDuty's own fields
    assert mapped.status == "acknowledged"
    assert mapped.raw_status == "incident.acknowledged"
    assert mapped.notification_id == payload["event"]["data"]["incident_key"]
    assert mapped.event_id == payload["event"]["id"]
    assert mapped.actor == "Dana Okafor"


@pytest.mark.parametrize(
    ("event_type", "status"),
    [("incident.resolved", "resolved"), ("incident.priority_updated", "priority_changed")],
)
def test_pagerduty_event_types_go_through_the_status_map(event_type, status):
    payload = pagerduty_payload()
    payload["event"]["event_type"] = event_type
    assert apply_mapping(payload, PAGERDUTY_V3_MAPPING, PAGERDUTY_V3_STATUS_MAP).status == status


def test_a_status_map_is_matched_case_insensitively_and_our_own_words_need_no_map():
    assert apply_mapping(
        {"status": "ACK", "notification_id": "n"}, DEFAULT_MAPPING, {"ack": "acknowledged"}
    ).status == ("acknowledged")
    assert apply_mapping({"status": "Resolved", "notification_id": "n"}, DEFAULT_MAPPING, {}).status == "resolved"


def test_an_unknown_status_is_refused_naming_the_known_ones():
    problem = refusal({"status": "snoozed", "notification_id": "ntf_A"})
    assert problem.field == "status"
    assert "snoozed" in problem.message and "acknowledged" in problem.message


def test_a_callback_without_a_correlation_key_names_the_accepted_keys():
    problem = refusal({"status": "acknowledged", "incident_id": "inc_A"})
    assert problem.field == "notification_id"
    assert "notification_id" in problem.message and "delivery_id" in problem.message
    assert "custom_details.notification_id" in problem.message


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"status": 3, "notification_id": "ntf_A"}, "status"),
        ({"status": "acknowledged", "notification_id": 12}, "notification_id"),
        ({"status": "acknowledged", "notification_id": ["ntf_A"]}, "notification_id"),
        ({"status": "acknowledged", "notification_id": "ntf_A", "event_id": True}, "event_id"),
        ({"status": "acknowledged", "notification_id": "ntf_A", "eta": "tomorrow"}, "eta"),
        ({"status": "acknowledged", "notification_id": "ntf_A", "eta": "2026-12-03T10:00:00"}, "eta"),
        ({"status": "acknowledged", "notification_id": "x" * 201}, "notification_id"),
        ({"status": "acknowledged", "delivery_id": "dlv\n1"}, "delivery_id"),
        ({"notification_id": "ntf_A"}, "status"),
    ],
)
def test_wrong_types_are_refused_naming_the_field(payload, field):
    assert refusal(payload).field == field


def test_a_pagerduty_callback_without_its_key_says_where_this_provider_reads_it():
    payload = pagerduty_payload()
    del payload["event"]["data"]["incident_key"]
    problem = refusal(payload, PAGERDUTY_V3_MAPPING, PAGERDUTY_V3_STATUS_MAP)
    assert problem.field == "notification_id"
    assert "notification_id or delivery_id" in problem.message
    assert "'event.data.incident_key'" in problem.message and "custom_details" not in problem.message


def test_an_event_id_number_too_long_for_an_id_is_refused_not_stored():
    base = {"status": "closed", "notification_id": "n"}
    assert apply_mapping({**base, "id": 10**198}, DEFAULT_MAPPING, {}).event_id == str(10**198)
    assert refusal({**base, "id": 10**199}).field == "event_id"
    # Larger than Python prints as text (json.loads itself refuses such numbers; a JMESPath sum need not)
    assert refusal({**base, "id": [10**4000] * 3}, {**DEFAULT_MAPPING, "event_id": "sum(id)"}).field == "event_id"


def test_a_numeric_event_id_is_kept_as_text():
    assert apply_mapping({"status": "closed", "notification_id": "n", "id": 42}, DEFAULT_MAPPING, {}).event_id == "42"


def test_a_function_that_fails_on_this_payload_is_refused_not_raised():
    mapping = {**DEFAULT_MAPPING, "actor": "length(actor)"}
    problem = refusal({"status": "acknowledged", "notification_id": "n", "actor": 5}, mapping)
    assert problem.field == "actor"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


# Generation is slow on a loaded two-core machine; the property, not the speed, is what this test checks.
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    payload=st.fixed_dictionaries(
        {},
        optional={
            "status": json_values | st.sampled_from(NORMALIZED_STATUSES),
            "notification_id": json_values,
            "delivery_id": json_values,
            "event_id": json_values,
            "eta": json_values,
            "custom_details": json_values,
            "acknowledged_by": json_values,
        },
    )
)
def test_any_json_payload_is_either_mapped_or_refused_with_a_field(payload):
    # When any JSON object goes through the default mapping
    try:
        mapped = apply_mapping(payload, DEFAULT_MAPPING, {})
    except MappingRefused as problem:
        # Then a refusal names a mappable field and says what is wrong
        assert problem.field in {"status", "notification_id", "delivery_id", "incident_id", "event_id", "eta", "actor"}
        assert problem.message
        return
    # Or the result is fully typed, with a known status and a correlation key
    assert mapped.status in NORMALIZED_STATUSES
    assert mapped.notification_id or mapped.delivery_id
    assert all(isinstance(value, str | None) for value in mapped.__dict__.values())


# ---------------------------------------------------------------------------------------------- saving


def test_the_presets_check_out():
    assert check_mapping(DEFAULT_MAPPING, {}) == []
    assert check_mapping(PAGERDUTY_V3_MAPPING, PAGERDUTY_V3_STATUS_MAP) == []


@pytest.mark.parametrize(
    ("mapping", "field", "words"),
    [
        ({**DEFAULT_MAPPING, "status": "event.[type"}, "mapping.status", "does not compile"),
        ({**DEFAULT_MAPPING, "actor": "exec('rm -rf /')"}, "mapping.actor", "unknown function exec()"),
        ({**DEFAULT_MAPPING, "actor": "length(a, b)"}, "mapping.actor", "takes 1 argument"),
        ({**DEFAULT_MAPPING, "actor": "not_null()"}, "mapping.actor", "takes 1 argument"),
        ({**DEFAULT_MAPPING, "script": "a"}, "mapping.script", "unknown field"),
        ({**DEFAULT_MAPPING, "eta": ""}, "mapping.eta", "non-empty"),
        ({**DEFAULT_MAPPING, "eta": "a" * 513}, "mapping.eta", "longer than"),
        ({"notification_id": "id"}, "mapping.status", "required"),
        ({"status": "status", "incident_id": "incident"}, "mapping", "notification_id or delivery_id"),
    ],
)
def test_a_mapping_that_does_not_check_out_is_refused_with_the_reason(mapping, field, words):
    problems = check_mapping(mapping, {})
    assert any(problem["field"] == field and words in problem["problem"] for problem in problems), problems


def test_variadic_functions_accept_more_arguments():
    assert check_mapping({**DEFAULT_MAPPING, "actor": "not_null(a, b, c)"}, {}) == []


def test_a_status_map_may_only_produce_known_statuses():
    problems = check_mapping(DEFAULT_MAPPING, {"incident.ack": "acked"})
    assert problems == [
        {"field": "status_map.incident.ack", "problem": f"must be one of {', '.join(NORMALIZED_STATUSES)}"}
    ]
