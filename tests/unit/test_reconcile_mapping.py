"""The reconcile mapping template: JMESPath only, compiled and checked before any run."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector_sla.jobs.mapping import (
    DEFAULT_STATUS_MAP,
    MappedIncident,
    MappingError,
    MappingProblem,
    compile_expression,
    compile_mapping,
)


def fake_provider_incident(status="acknowledged", **details):
    return {
        "id": "P1",
        "incident_key": "ntf_A",
        "status": status,
        "custom_details": {"notification_id": "ntf_A", "delivery_id": "dlv_A_1", "incident_id": "inc_1", **details},
    }


def test_the_default_template_reads_the_fake_providers_incident_list():
    # Given the default template and a page shaped like the fake provider's (and PagerDuty's) incident list
    mapping = compile_mapping({})
    page = {"incidents": [fake_provider_incident()], "more": False}

    # When the page is read
    incidents = mapping.incidents_of(page)
    mapped = mapping.read(incidents[0], 0)

    # Then the incident maps to its correlation keys and a normalized status
    assert mapped == MappedIncident(0, "P1", "ntf_A", "dlv_A_1", "inc_1", "acknowledged", "acknowledged")


def test_a_status_map_turns_provider_values_into_normalized_statuses():
    mapping = compile_mapping({"status": "state", "status_map": {"ACK": "acknowledged", "DONE": "resolved"}})

    mapped = mapping.read({"state": "DONE", "notification_id": "ntf_B"}, 3)

    assert isinstance(mapped, MappedIncident)
    assert (mapped.status, mapped.raw_status, mapped.notification_id) == ("resolved", "DONE", "ntf_B")


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ({"status": "status["}, "not a valid JMESPath expression"),
        ({"incidents": "incidents[?"}, "not a valid JMESPath expression"),
        ({"notification_id": "eval(custom_details)"}, "unknown JMESPath function eval()"),
        ({"status": "__import__('os')"}, "unknown JMESPath function __import__()"),
        ({"status": "x" * 600}, "longer than 512"),
        ({"status_map": {"ACK": "done"}}, "'done' is not one of"),
        ({"notification_id": None, "delivery_id": None}, "must map notification_id or delivery_id"),
        ({"next_page": {"style": "pages"}}, "next_page.style"),
        ({"next_page": {"has_more": "more[?"}}, "next_page.has_more"),
        ({"status": ""}, "expected a non-empty JMESPath expression"),
    ],
)
def test_a_template_that_does_not_compile_is_refused_with_the_reason(template, message):
    with pytest.raises(MappingError, match=re.escape(message)):
        compile_mapping(template)


def test_only_built_in_functions_exist_so_an_expression_cannot_reach_files_code_or_network():
    # Given expressions naming functions that would do something beyond reading the document
    for name in ("open", "read_file", "http_get", "exec", "system", "env"):
        # Then each is refused at compile time, before any page is read
        with pytest.raises(MappingError, match="unknown JMESPath function"):
            compile_expression("status", f"{name}('x')")
    # And a built-in still works
    assert compile_expression("status", "to_string(length(items))").search({"items": [1, 2]}) == "2"


@pytest.mark.parametrize(
    ("incident", "reason"),
    [
        ({"status": "acknowledged"}, "no notification_id or delivery_id"),
        ({"notification_id": "ntf_A"}, "status expression found nothing"),
        ({"notification_id": "ntf_A", "status": "snoozed"}, "'snoozed' is not in status_map"),
        ({"notification_id": {"nested": 1}, "status": "resolved"}, "expected a string, found a dict"),
        ({"notification_id": "n" * 300, "status": "resolved"}, "longer than 256"),
    ],
)
def test_an_incident_the_template_cannot_read_becomes_a_problem_not_an_exception(incident, reason):
    mapping = compile_mapping({"notification_id": "notification_id", "status": "status"})

    result = mapping.read(incident, 7)

    assert isinstance(result, MappingProblem)
    assert result.position == 7
    assert reason in result.reason


def test_a_page_whose_incident_list_is_not_a_list_is_refused():
    mapping = compile_mapping({"incidents": "data"})
    with pytest.raises(MappingError, match="found a dict, expected a list"):
        mapping.incidents_of({"data": {"x": 1}})
    assert mapping.incidents_of({"other": []}) == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)


@given(incident=json_values)
def test_reading_any_json_value_never_raises(incident):
    # Given any JSON value a provider might send as an incident
    mapping = compile_mapping({"status_map": {"ACK": "acknowledged"}})

    # When it is read, Then the result is a mapped incident or a problem, and a mapped one has a known status
    result = mapping.read(incident, 0)
    assert isinstance(result, MappedIncident | MappingProblem)
    if isinstance(result, MappedIncident):
        assert result.status in set(DEFAULT_STATUS_MAP.values())
        assert result.notification_id or result.delivery_id
