"""The dashboard's panels from plain records, and the page's sign-in settings and security headers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector_sla.dashboard.data import (
    DashboardInputs,
    build_dashboard,
    callback_timeline,
    connectors_panel,
    escalation_timeline,
    open_incidents_panel,
)
from connector_sla.dashboard.models import DashboardData
from connector_sla.dashboard.page import SignIn, page_headers, parse_sign_in, render_page
from connector_sla.timeutil import to_iso
from tests.known_scenario import KnownScenario

NOW = datetime(2026, 12, 3, 19, 0, tzinfo=UTC)


def scenario_inputs() -> tuple[KnownScenario, DashboardInputs]:
    tables: dict[str, list[dict]] = {}
    scenario = KnownScenario(base=NOW - timedelta(hours=2)).seed(
        lambda table, item: tables.setdefault(table, []).append(item)
    )

    def newest(table: str, field: str) -> list[dict]:
        return sorted(tables.get(table, []), key=lambda item: item[field], reverse=True)

    inputs = DashboardInputs(
        connector_rows=tables["ConnectorsTable"],
        transitions=newest("TransitionsTable", "at"),
        notifications=newest("NotificationsTable", "created_at"),
        deliveries=newest("DeliveriesTable", "at"),
        callbacks=newest("CallbacksTable", "received_at"),
        job_runs=newest("JobsTable", "created_at"),
    )
    return scenario, inputs


def test_the_document_matches_its_published_model():
    _, inputs = scenario_inputs()
    document = build_dashboard(inputs, now=NOW, window_hours=24)
    DashboardData.model_validate(document)
    assert document["summary"] == {
        "connectors": 4,
        "critical": 1,
        "warning": 1,
        "ok": 1,
        "not_evaluated": 1,
        "open_incidents": 2,
        "unacked_alerts": 3,
        "failed_deliveries": 1,
    }


def test_connectors_are_listed_worst_first_and_unevaluated_ones_are_shown():
    scenario, inputs = scenario_inputs()
    panel = connectors_panel(inputs.connector_rows)
    assert [item["connector_id"] for item in panel] == [
        scenario.orders,
        scenario.billing,
        scenario.crm,
        scenario.inventory,
    ]
    assert panel[0]["incident_id"] == scenario.orders_incident
    assert panel[2]["incident_id"] is None  # its incident is closed
    assert panel[3]["evaluated"] is False and panel[3]["name"] == "Inventory (Kafka)"
    assert [signal["name"] for signal in panel[0]["signals"]] == [
        "freshness_lag",
        "pending_replay",
        "dead_letter_growth",
    ]


def test_open_incidents_show_level_age_eta_and_unacked_alerts():
    scenario, inputs = scenario_inputs()
    incidents = open_incidents_panel(inputs.connector_rows, inputs.notifications, NOW)
    assert [item["incident_id"] for item in incidents] == [scenario.orders_incident, scenario.billing_incident]
    orders = incidents[0]
    assert (orders["level"], orders["age_seconds"], orders["recovery_eta"]) == ("L3", 7200, scenario.iso(180))
    assert orders["eta_seconds_left"] == 3600 and not orders["eta_overdue"] and not orders["eta_missing"]
    assert orders["unacked_alerts"] == 2
    later = open_incidents_panel(inputs.connector_rows, inputs.notifications, NOW + timedelta(hours=2))
    assert later[0]["eta_overdue"] and later[0]["eta_seconds_left"] == -3600


def test_an_l3_incident_without_eta_is_flagged():
    state = {"pk": "c", "sk": "STATE", "incident_status": "open", "incident_id": "inc_1", "level": "L3"}
    assert open_incidents_panel([state], [], NOW)[0]["eta_missing"] is True
    assert open_incidents_panel([{**state, "level": "L2"}], [], NOW)[0]["eta_missing"] is False


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=150))
def test_the_escalation_timeline_is_newest_first_and_bounded(minutes):
    transitions = [{"at": to_iso(NOW - timedelta(minutes=value)), "kind": "escalated"} for value in minutes]
    timeline = escalation_timeline(transitions, [])
    stamps = [event["at"] for event in timeline]
    assert stamps == sorted(stamps, reverse=True)
    assert len(timeline) == min(len(minutes), 100)


def test_callbacks_and_reconcile_runs_are_grouped_per_incident():
    scenario, inputs = scenario_inputs()
    groups = {group["incident_id"]: group for group in callback_timeline(inputs.callbacks, inputs.job_runs)}
    assert set(groups) == {scenario.orders_incident, scenario.crm_incident, None}
    crm = groups[scenario.crm_incident]
    runs = [event for event in crm["events"] if event["type"] == "reconcile_run"]
    # The applied run is linked through its callback, the dry run through the change it would make
    assert {run["run_id"] for run in runs} == {scenario.reconcile_run_id, scenario.dry_run_id}
    assert [event["at"] for event in crm["events"]] == sorted((event["at"] for event in crm["events"]), reverse=True)
    assert groups[None]["events"][0]["matched"] is False


def test_sign_in_settings_are_checked_before_the_page_trusts_them():
    cognito = {"mode": "COGNITO", "domain": "https://ops-123.auth.eu-west-1.amazoncognito.com", "client_id": "abc1"}
    assert parse_sign_in(json.dumps(cognito)) == SignIn(
        "COGNITO", "https://ops-123.auth.eu-west-1.amazoncognito.com", "abc1"
    )
    assert parse_sign_in(json.dumps({"mode": "IAM"})) == SignIn("IAM")
    assert parse_sign_in(None).problem and parse_sign_in(None).mode == "IAM"
    assert parse_sign_in("{not json").problem
    for domain in ("http://evil.example.com", "https://x.example.com/path", "javascript:alert(1)", ""):
        assert parse_sign_in(json.dumps({**cognito, "domain": domain})).problem, domain
    assert parse_sign_in(json.dumps({**cognito, "client_id": "a b"})).problem
    assert parse_sign_in(json.dumps({**cognito, "domain": "http://127.0.0.1:8765"})).domain == "http://127.0.0.1:8765"


def test_the_page_is_self_contained_and_bound_to_its_nonce():
    sign_in = SignIn("COGNITO", "https://ops.auth.example.com", "abc1")
    html = render_page(sign_in, nonce="N0nce")
    headers = page_headers(sign_in, nonce="N0nce")
    # Nothing is loaded from elsewhere: no external script, style, font or image
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    style = html.split("<style", 1)[1].split("</style>", 1)[0]
    assert "@import" not in style and "url(" not in style
    # Only the nonce-bound inline style and script run; data may come only from this API and the hosted UI
    assert html.count('nonce="N0nce"') == 2
    policy = headers["Content-Security-Policy"]
    assert "script-src 'nonce-N0nce'" in policy and "default-src 'none'" in policy
    assert "connect-src 'self' https://ops.auth.example.com" in policy
    assert headers["Referrer-Policy"] == "no-referrer"


def test_embedded_settings_cannot_close_the_script_element():
    html = render_page(SignIn("IAM", problem="</script><script>alert(1)</script>"), nonce="n")
    config = html.split('id="dashboard-config">', 1)[1].split("</script>", 1)[0]
    assert "<" not in config
    assert json.loads(config)["problem"] == "</script><script>alert(1)</script>"


def test_without_chromium_the_browser_test_skips_and_says_how_to_enable_it(tmp_path):
    # Given a machine where the named Chromium does not exist
    root = Path(__file__).resolve().parents[2]
    missing = tmp_path / "no-chromium"
    environment = {**os.environ, "CHROMIUM_PATH": str(missing)}
    environment.pop("REQUIRE_BROWSER", None)  # a developer's machine, not CI (where a missing browser fails)
    # When the browser test runs, Then every test is skipped (none passes or fails silently) with the reason
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/e2e/test_dashboard_browser.py", "-q", "-rs", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        check=False,
        cwd=root,
        env=environment,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert re.search(r"\b\d+ skipped\b", completed.stdout) and " passed" not in completed.stdout
    assert f"needs Chromium at {missing}" in completed.stdout
    assert "apt-get install -y chromium" in completed.stdout and "CHROMIUM_PATH" in completed.stdout


def test_in_ci_a_missing_chromium_fails_the_browser_test_instead_of_skipping_it(tmp_path):
    # Given CI (REQUIRE_BROWSER=1, as .ci/run sets it) on a machine where the named Chromium does not exist
    root = Path(__file__).resolve().parents[2]
    missing = tmp_path / "no-chromium"
    environment = {**os.environ, "CHROMIUM_PATH": str(missing), "REQUIRE_BROWSER": "1"}
    # When the browser test runs
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/e2e/test_dashboard_browser.py", "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        check=False,
        cwd=root,
        env=environment,
    )
    # Then the run fails, saying what is missing and how to install it
    assert completed.returncode != 0
    assert f"needs Chromium at {missing}" in completed.stdout and "skipped" not in completed.stdout
