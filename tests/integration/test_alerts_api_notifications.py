"""GET /alerts/notifications and GET /alerts/deliveries: filters, newest first, cursor pagination, bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connector_sla.alerts.records import ack_changes
from connector_sla.escalation.wiring import notification_store
from connector_sla.timeutil import to_iso
from tests.integration.test_escalation_support import scenario
from tests.support import call_api

__all__ = ["scenario"]


def get(scenario, path, **query):
    return call_api(scenario.aws, scenario.alerts_api, "AlertsApiFunction", "GET", path, query=query or None)


def all_pages(scenario, path, **query):
    items, cursor, pages = [], None, 0
    while True:
        status, page = get(scenario, path, **query, **({"cursor": cursor} if cursor else {}))
        assert status == 200, page
        items.extend(page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            return items, pages


def incidents_at_l1(scenario, names):
    incidents = {name: scenario.open_incident(name) for name in names}
    scenario.deliver_stream()
    return incidents


def acknowledge(scenario, incident_id):
    store = notification_store()
    [notification] = [item for item in scenario.notifications(incident_id) if item["kind"] == "alert"]
    set_, remove = ack_changes(notification, "acknowledged", at=datetime.now(UTC), source="callback")
    store.update(notification, set_=set_, remove=remove, now=datetime.now(UTC))


def test_only_unacked_lists_every_unacknowledged_alert_once_across_pages_newest_first(scenario):
    # Given seven paged incidents, two of them acknowledged
    names = [f"conn-{index}" for index in range(7)]
    incidents = incidents_at_l1(scenario, names)
    acknowledge(scenario, incidents["conn-1"])
    acknowledge(scenario, incidents["conn-4"])

    # When the unacknowledged notifications are listed two at a time
    items, pages = all_pages(scenario, "/alerts/notifications", only_unacked="true", limit="2")

    # Then the five unacknowledged alerts come back once each, newest first, over several pages
    expected = {incidents[name] for name in names if name not in ("conn-1", "conn-4")}
    assert sorted(item["incident_id"] for item in items) == sorted(expected)
    assert [item["created_at"] for item in items] == sorted((item["created_at"] for item in items), reverse=True)
    assert pages >= 3
    assert all(item["ack_state"] == "unacked" and item["kind"] == "alert" for item in items)


def test_notifications_filter_by_incident_connector_and_level(scenario):
    # Given one incident at L2 and another at L1
    incidents = incidents_at_l1(scenario, ["orders-db", "billing-db"])
    scenario.commit("orders-db", "escalated", level="L2", severity="critical")
    scenario.deliver_stream()

    # When filtering by incident and level, by connector, and unacknowledged by connector
    _, by_level = get(scenario, "/alerts/notifications", incident_id=incidents["orders-db"], level="L2")
    _, by_connector = get(scenario, "/alerts/notifications", connector_id="billing-db")
    _, unacked_orders = get(scenario, "/alerts/notifications", connector_id="orders-db", only_unacked="true")

    # Then each returns exactly what matches
    assert sorted(item["target"] for item in by_level["items"]) == [
        "data-platform-owner@example.com",
        "risk-owner@example.com",
    ]
    assert [item["incident_id"] for item in by_connector["items"]] == [incidents["billing-db"]]
    assert len(unacked_orders["items"]) == 3 and by_level["next_cursor"] is None


def test_the_unfiltered_list_walks_the_days_newest_first(scenario):
    # Given three paged incidents
    incidents = incidents_at_l1(scenario, ["a-db", "b-db", "c-db"])

    # When listing without filters, one at a time
    items, _ = all_pages(scenario, "/alerts/notifications", limit="1")

    # Then all three come back, newest first
    assert sorted(item["incident_id"] for item in items) == sorted(incidents.values())
    assert [item["created_at"] for item in items] == sorted((item["created_at"] for item in items), reverse=True)


def test_deliveries_are_filterable_and_paginated(scenario):
    # Given one failed and then successful delivery, and two more sent ones
    scenario.provider.fail_next(1, status=502)
    incidents = incidents_at_l1(scenario, ["orders-db"])
    [failed] = scenario.notifications(incidents["orders-db"])
    scenario.tick(datetime.fromisoformat(failed["next_attempt_at"].replace("Z", "+00:00")) + timedelta(seconds=1))
    incidents.update(incidents_at_l1(scenario, ["billing-db", "users-db"]))

    # When listing failed attempts, the attempts of one notification, and everything two at a time
    _, failures = get(scenario, "/alerts/deliveries", status="failed")
    _, of_notification = get(scenario, "/alerts/deliveries", notification_id=failed["notification_id"])
    everything, _ = all_pages(scenario, "/alerts/deliveries", limit="2")

    # Then the failure shows the response code and error, and pagination returns each attempt once
    [failure] = failures["items"]
    assert failure["response_code"] == 502 and failure["notification_id"] == failed["notification_id"]
    assert [item["attempt"] for item in of_notification["items"]] == [2, 1]
    assert len(everything) == 4 and len({item["delivery_id"] for item in everything}) == 4
    assert all(item["record_hash"] and item["chain_id"].startswith("deliveries:ntf_") for item in everything)


def test_bad_filters_and_cursors_are_refused_with_a_message(scenario):
    cases = [
        ("/alerts/notifications", {"colour": "red"}, "query.colour"),
        ("/alerts/notifications", {"level": "L4"}, "query.level"),
        ("/alerts/notifications", {"limit": "0"}, "query.limit"),
        ("/alerts/notifications", {"cursor": "bm90LWEtY3Vyc29y"}, "cursor is not valid"),
        ("/alerts/notifications", {"since": to_iso(datetime(2020, 1, 1, tzinfo=UTC))}, "at most 92 days"),
        ("/alerts/deliveries", {"status": "lost"}, "query.status"),
        ("/alerts/deliveries", {"notification_id": "dlv_x"}, "query.notification_id"),
        ("/alerts/deliveries", {"cursor": "!!!"}, "cursor is not valid"),
    ]
    for path, query, expected in cases:
        # When a list is asked for with a bad parameter
        status, error = get(scenario, path, **query)
        # Then it is a 400 that names the problem
        assert status == 400 and expected in error["message"], (query, error)


def test_a_cursor_crafted_to_point_elsewhere_is_refused(scenario):
    # Given a real cursor of one list
    incidents_at_l1(scenario, ["a-db", "b-db"])
    _, page = get(scenario, "/alerts/notifications", only_unacked="true", limit="1")
    cursor = page["next_cursor"]

    # When it is used for a different list
    status, error = get(scenario, "/alerts/notifications", connector_id="a-db", cursor=cursor)

    # Then it is refused rather than misread
    assert status == 400 and "cursor is not valid" in error["message"]
