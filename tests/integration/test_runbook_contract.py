"""docs/runbook.md is the contract: every endpoint, query field, event name, job type, payload field, ACK status and
recovery rule it names exists in this service as the runbook says. The runbook is read as written, so a line
added to it that the service does not honour fails here."""

from __future__ import annotations

import json
import re

import pytest

from connector_sla.alerts.ack import ACK_LIKE
from connector_sla.config import Settings
from connector_sla.escalation.chains import environment_chain
from connector_sla.jobs.models import RECONCILE_JOB, ReconcilePayload
from connector_sla.sla.events import DETAIL_TYPES
from connector_sla.sla.models import SlaPolicy
from devstack.functions import read_functions
from tests.support import ROOT, load_template

RUNBOOK = (ROOT / "docs" / "runbook.md").read_text()
OPENAPI = json.loads((ROOT / "layers" / "core" / "connector_sla" / "openapi.json").read_text())
ROUTES = [route for spec in read_functions(load_template()).values() for route in spec.routes]

# `POST /alerts/oncall/callback`, `/events/connectors/overview`, `/alerts/oncall/events?incident_id=<id>` ...
_ENDPOINT = re.compile(r"`(?:(GET|POST|PUT|PATCH|DELETE) )?(/[a-z][a-z0-9/_{}\-]*)(?:\?([^`]*))?`")
# Reads are GETs unless the runbook names a method; the export is started with a POST.
ENDPOINTS = [
    (method or ("POST" if path.endswith("/export") else "GET"), path, query)
    for method, path, query in _ENDPOINT.findall(RUNBOOK)
]


def test_the_runbook_names_endpoints_to_check():
    assert len(ENDPOINTS) >= 10, ENDPOINTS


@pytest.mark.parametrize(("method", "path", "query"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in ENDPOINTS])
def test_every_endpoint_of_the_runbook_is_a_route_with_the_query_fields_it_uses(method, path, query):
    # Given the endpoint as the runbook writes it
    # Then the template routes it to a function, and the published API declares it
    assert any(route.method == method and route.path == path for route in ROUTES), f"{method} {path}"
    operation = OPENAPI["paths"][path][method.lower()]
    # And every query field the runbook passes is a declared parameter of that operation
    declared = {parameter["name"] for parameter in operation.get("parameters", []) if parameter["in"] == "query"}
    for pair in filter(None, query.split("&")):
        assert pair.split("=", 1)[0] in declared, (path, pair, declared)


def test_the_trigger_event_names_are_the_detail_types_the_evaluator_publishes():
    named = set(re.findall(r"`(event_connector_sla\w*)`", RUNBOOK))
    assert named == {"event_connector_sla", "event_connector_sla_escalation", "event_connector_sla_recovery"}
    assert named <= set(DETAIL_TYPES.values())
    assert DETAIL_TYPES["opened"] == "event_connector_sla"
    assert DETAIL_TYPES["escalated"] == "event_connector_sla_escalation"
    assert DETAIL_TYPES["recovered"] == "event_connector_sla_recovery"


def test_the_default_chain_is_the_runbooks_example():
    # L1 the on-call IM group; L2 the risk owner and the data platform owner by email; L3 the duty manager, a bridge
    config = Settings(
        oncall_provider="generic",
        risk_owner_email="risk@example.com",
        platform_owner_email="platform@example.com",
        duty_manager_email="duty@example.com",
        bridge_webhook_url="https://bridge.example.com/open",
    )
    chain = {level.level: level for level in environment_chain(config).levels}
    assert [(t.channel, t.target) for t in chain["L1"].targets] == [("oncall", "generic")]
    assert [(t.channel, t.target) for t in chain["L2"].targets] == [
        ("email", "risk@example.com"),
        ("email", "platform@example.com"),
    ]
    assert [t.channel for t in chain["L3"].targets] == ["email", "bridge"]
    assert chain["L3"].eta_required_within_seconds  # "recovery ETA required"
    for level in ("L1", "L2", "L3"):
        assert f"`{level}`" in RUNBOOK


def test_the_ack_like_statuses_are_the_ones_that_move_the_ack_state():
    line = next(line for line in RUNBOOK.splitlines() if "ACK-like status" in line)
    assert set(re.findall(r"`(\w+)`", line)) == set(ACK_LIKE) == {"acknowledged", "resolved", "closed"}


def test_the_signature_format_and_correlation_keys_are_the_ones_the_callback_reads():
    assert "`sha256=<hmac_hex>`" in RUNBOOK
    assert "sha256=<hex HMAC" in OPENAPI["paths"]["/alerts/oncall/callback"]["post"]["description"]
    # The callback is open at the gateway (its function checks the signature) and reads both correlation keys
    callback = [route for route in ROUTES if route.path == "/alerts/oncall/callback"]
    assert [(route.method, route.open_route) for route in callback] == [("POST", True)]
    body = OPENAPI["components"]["schemas"]["CallbackPayload"]["properties"]
    assert {"notification_id", "delivery_id"} <= set(body)


def test_the_reconcile_job_type_and_payload_fields_are_the_runbooks():
    assert f"`{RECONCILE_JOB}`" in RUNBOOK
    section = RUNBOOK.split("## Incident Reconcile Job", 1)[1].split("##", 1)[0]
    fields = set(re.findall(r"- `(\w+)`", section)) | {"dry_run"}
    assert fields == {"provider", "endpoint", "mapping_template", "limit", "dry_run"}
    assert fields <= set(ReconcilePayload.model_fields)
    assert ReconcilePayload.model_fields["dry_run"].default is True  # "Dry-run first"


def test_recovery_needs_two_clean_poll_windows_by_default():
    assert "No new dead-letter growth for two poll windows" in RUNBOOK
    assert SlaPolicy().recovery_clean_windows == 2
