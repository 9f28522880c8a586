"""Chains as configuration: the environment's default, overrides per team and per connector, and refusals that
say why."""

from __future__ import annotations

import copy

from tests.integration.test_escalation_support import scenario
from tests.support import call_api

__all__ = ["scenario"]


def chain(l1=None, l2=None, l3=None, **l3_extra):
    l1 = [{"channel": "oncall", "target": "generic"}] if l1 is None else l1
    l2 = [{"channel": "email", "target": "l2@example.com"}] if l2 is None else l2
    l3 = [{"channel": "email", "target": "l3@example.com", "name": "duty manager"}] if l3 is None else l3
    return {
        "levels": [
            {"level": "L1", "targets": l1, "ack_timeout_seconds": 300},
            {"level": "L2", "targets": l2, "ack_timeout_seconds": 600},
            {
                "level": "L3",
                "targets": l3,
                "ack_timeout_seconds": 900,
                "eta_required_within_seconds": 600,
                **l3_extra,
            },
        ]
    }


def api(scenario, method, path, **kwargs):
    return call_api(scenario.aws, scenario.escalation_api, "EscalationApiFunction", method, path, **kwargs)


def test_the_default_chain_comes_from_the_environment(scenario):
    # When the default chain is read before anything is saved
    status, view = api(scenario, "GET", "/alerts/chains/default/default")

    # Then it is the runbook's chain: on-call at L1, risk and platform owners at L2, duty manager and bridge at L3
    assert status == 200 and view["configured"] is False and view["source"] == "environment"
    targets = {level["level"]: [(t["channel"], t["name"]) for t in level["targets"]] for level in view["levels"]}
    assert targets == {
        "L1": [("oncall", "on-call IM group")],
        "L2": [("email", "risk owner"), ("email", "data platform owner")],
        "L3": [("email", "duty manager"), ("bridge", "duty manager bridge")],
    }
    assert [level["ack_timeout_seconds"] for level in view["levels"]] == [900, 1800, 1800]
    assert view["levels"][2]["eta_required_within_seconds"] == 900


def test_a_team_chain_applies_to_its_connectors_and_a_connector_chain_wins_over_it(scenario):
    # Given a team chain emailing team-l2@ at L2, and a connector chain for orders-db emailing orders-l2@
    scenario.register_connector("orders-db")
    scenario.register_connector("billing-db")
    team = chain(l2=[{"channel": "email", "target": "team-l2@example.com"}])
    own = chain(l2=[{"channel": "email", "target": "orders-l2@example.com"}])
    assert api(scenario, "PUT", "/alerts/chains/team/payments-data", body=team)[0] == 200
    status, saved = api(scenario, "PUT", "/alerts/chains/connector/orders-db", body=own)
    assert status == 200 and saved["configured"] is True and saved["updated_by"].endswith("local-operator")

    # When both connectors of the team escalate to L2
    for connector_id in ("orders-db", "billing-db"):
        scenario.open_incident(connector_id)
        scenario.commit(connector_id, "escalated", level="L2", severity="critical")
    scenario.deliver_stream()

    # Then orders-db followed its own chain and billing-db its team's
    recipients = sorted(address for message in scenario.emails() for address in message.destinations["ToAddresses"])
    assert recipients == ["orders-l2@example.com", "team-l2@example.com"]
    # And reading billing-db's scope shows nothing saved there, with the team's chain in effect
    status, view = api(scenario, "GET", "/alerts/chains/connector/billing-db")
    assert view["configured"] is False and view["effective_scope"] == "team"


def test_invalid_chains_are_refused_with_the_reason_and_nothing_is_saved(scenario):
    scenario.register_connector("orders-db")
    no_l3 = chain()
    no_l3["levels"] = no_l3["levels"][:2]
    cases = [
        (no_l3, "levels must be L1, L2 and L3"),
        (chain(l2=[{"channel": "email", "target": "not-an-address"}]), "is not an email address"),
        (chain(l1=[{"channel": "oncall", "target": "opsgenie"}]), "provider 'opsgenie' is not configured"),
        (chain(l3=[{"channel": "bridge", "target": "http://bridge.example.com/open"}]), "only HTTPS"),
        (chain(l3=[{"channel": "bridge", "target": "https://10.0.0.8/open"}]), "non-public address"),
        (chain(l2=[{"channel": "email", "target": "a@example.com"}] * 2), "twice"),
        (chain(l2=[]), "level L2 has no targets"),
        (chain(eta_required_within_seconds=None), "eta_required_within_seconds is required"),
        (chain(l1=[{"channel": "pager", "target": "x"}]), "body.levels.0.targets.0.channel"),
        ({"levels": [], "owner": "me"}, "body.owner"),
    ]
    timeout = copy.deepcopy(chain())
    timeout["levels"][0]["ack_timeout_seconds"] = 5
    cases.append((timeout, "ack_timeout_seconds must be between 60 and 86400"))
    for body, expected in cases:
        # When an invalid chain is saved
        status, error = api(scenario, "PUT", "/alerts/chains/connector/orders-db", body=body)
        # Then it is a 400 whose message says why
        assert status == 400 and expected in error["message"], (body, error)
    # And nothing was saved
    status, view = api(scenario, "GET", "/alerts/chains/connector/orders-db")
    assert view["configured"] is False


def test_scopes_are_checked(scenario):
    cases = [
        ("PUT", "/alerts/chains/region/eu", 400, "scope must be one of"),
        ("PUT", "/alerts/chains/default/other", 400, "/alerts/chains/default/default"),
        ("PUT", "/alerts/chains/connector/unknown-db", 404, "not registered"),
        ("GET", "/alerts/chains/team/Payments", 400, "team id must match"),
        ("DELETE", "/alerts/chains/team/payments-data", 404, "no chain is saved"),
    ]
    for method, path, expected_status, expected in cases:
        status, error = api(scenario, method, path, body=chain() if method == "PUT" else None)
        assert status == expected_status and expected in error["message"], (path, error)


def test_deleting_a_chain_falls_back_to_the_broader_one(scenario):
    # Given a saved default chain
    assert api(scenario, "PUT", "/alerts/chains/default/default", body=chain())[0] == 200
    assert api(scenario, "GET", "/alerts/chains/default/default")[1]["source"] == "stored"

    # When it is removed
    status, body = api(scenario, "DELETE", "/alerts/chains/default/default")

    # Then the environment's chain applies again
    assert status == 204 and body == ""
    assert api(scenario, "GET", "/alerts/chains/default/default")[1]["source"] == "environment"
