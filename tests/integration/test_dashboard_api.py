"""The ops function through its real handler on moto: the dashboard page, its data for a known scenario, and the
published OpenAPI document."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest

from connector_sla.dashboard.models import DashboardData
from connector_sla.timeutil import utcnow
from tests.known_scenario import KnownScenario, dynamodb_put
from tests.support import Aws, api_event, call_api, load_event, load_template, moto_stack

OPENAPI = Path(__file__).resolve().parents[2] / "layers" / "core" / "connector_sla" / "openapi.json"


class Ops:
    def __init__(self, aws: Aws) -> None:
        self.aws = aws
        self.handler = aws.load_handler("OpsApiFunction")

    def call(self, method: str, path: str, **kwargs):
        return call_api(self.aws, self.handler, "OpsApiFunction", method, path, **kwargs)

    def raw(self, path: str, **kwargs) -> dict:
        event = api_event("GET", path, functions=self.aws.functions, **kwargs)
        return self.handler.lambda_handler(event, self.aws.context("OpsApiFunction"))


@pytest.fixture
def ops(aws) -> Ops:
    return Ops(aws)


@pytest.fixture
def scenario(aws) -> KnownScenario:
    return KnownScenario(base=utcnow() - timedelta(hours=2)).seed(dynamodb_put(aws.client("dynamodb"), aws.name))


def header(response: dict, name: str) -> str:
    headers = {**(response.get("headers") or {})}
    for key, values in (response.get("multiValueHeaders") or {}).items():
        headers[key] = ",".join(values)
    return headers.get(name, "")


def test_the_data_holds_every_panel_of_the_known_scenario(ops, scenario):
    # Given the known scenario, When the page asks for its data
    status, data = ops.call("GET", "/ops/dashboard/data")
    # Then it validates against the published model and shows the scenario's state, incidents and records
    assert status == 200
    DashboardData.model_validate(data)
    assert data["summary"]["connectors"] == 4 and data["summary"]["open_incidents"] == 2
    assert data["connectors"][0]["connector_id"] == scenario.orders
    orders = data["open_incidents"][0]
    assert (orders["incident_id"], orders["level"], orders["recovery_eta"]) == (
        scenario.orders_incident,
        "L3",
        scenario.iso(180),
    )
    assert 7100 <= orders["age_seconds"] <= 7300
    timeline_types = [event["type"] for event in data["escalation_timeline"]]
    assert timeline_types.count("transition") == len(scenario.written["TransitionsTable"])
    assert timeline_types.count("notification") == len(scenario.written["NotificationsTable"])
    groups = {group["incident_id"] for group in data["callback_timeline"]}
    assert groups == {scenario.orders_incident, scenario.crm_incident, None}
    assert [run["run_id"] for run in data["job_runs"]] == [scenario.reconcile_run_id, scenario.dry_run_id]
    assert len(data["deliveries"]) == len(scenario.written["DeliveriesTable"])
    assert [delivery["at"] for delivery in data["deliveries"]] == sorted(
        (delivery["at"] for delivery in data["deliveries"]), reverse=True
    )


def test_the_window_limits_the_timelines(ops, scenario):
    # When the page asks for the last hour only, Then older records are left out of the timelines
    status, data = ops.call("GET", "/ops/dashboard/data", query={"hours": "1"})
    assert status == 200 and data["window_hours"] == 1
    assert {event["connector_id"] for event in data["escalation_timeline"]} == {scenario.billing}
    assert all(delivery["connector_id"] == scenario.billing for delivery in data["deliveries"])
    # The connectors' state and the open incidents do not depend on the window
    assert len(data["connectors"]) == 4 and len(data["open_incidents"]) == 2


@pytest.mark.parametrize(
    ("query", "expected"), [({"hours": "0"}, "query.hours"), ({"hours": "x"}, "query.hours"), ({"days": "1"}, "days")]
)
def test_bad_data_queries_are_refused(ops, query, expected):
    status, answer = ops.call("GET", "/ops/dashboard/data", query=query)
    assert status == 400 and expected in answer["message"]


def test_an_empty_service_still_renders_every_panel(ops):
    status, data = ops.call("GET", "/ops/dashboard/data")
    assert status == 200
    assert data["connectors"] == [] and data["summary"]["connectors"] == 0
    DashboardData.model_validate(data)


def test_the_page_is_served_with_its_security_headers(ops):
    # When a browser loads the page (also when it comes back from the sign-in with ?code=&state=)
    for query in (None, {"code": "abc", "state": "xyz"}):
        response = ops.raw("/ops/dashboard", query=query)
        # Then it gets the HTML, whose inline script and style are the only ones allowed to run
        assert response["statusCode"] == 200
        assert header(response, "Content-Type").startswith("text/html")
        html = response["body"]
        nonce = re.search(r"script-src 'nonce-([^']+)'", header(response, "Content-Security-Policy")).group(1)
        assert f'<script nonce="{nonce}">' in html
        assert header(response, "Cache-Control") == "no-store"
        config = json.loads(html.split('id="dashboard-config">', 1)[1].split("</script>", 1)[0])
        assert config["mode"] == "IAM" and config["problem"] is None


def test_the_page_follows_the_sign_in_settings_parameter(ops, aws):
    # Given the deployment switched to Cognito (the parameter the template writes for OperatorAuth=COGNITO)
    name = aws.functions["OpsApiFunction"].environment["DASHBOARD_AUTH_PARAMETER"]
    settings = {"mode": "COGNITO", "domain": "https://ops-1.auth.us-east-1.amazoncognito.com", "client_id": "c1ient"}
    aws.client("ssm").put_parameter(Name=name, Value=json.dumps(settings), Type="String", Overwrite=True)
    # When the page is loaded, Then it signs in with that hosted UI, which the page may also fetch tokens from
    response = ops.raw("/ops/dashboard")
    config = json.loads(response["body"].split('id="dashboard-config">', 1)[1].split("</script>", 1)[0])
    assert (config["mode"], config["domain"], config["client_id"]) == ("COGNITO", settings["domain"], "c1ient")
    assert f"connect-src 'self' {settings['domain']}" in header(response, "Content-Security-Policy")

    # And when the parameter is unreadable, the page still loads and says so
    aws.client("ssm").delete_parameter(Name=name)
    response = ops.raw("/ops/dashboard")
    assert response["statusCode"] == 200
    assert "could not be read" in response["body"]


def test_the_published_openapi_document_is_the_committed_one(ops):
    status, document = ops.call("GET", "/openapi.json")
    assert status == 200
    assert document == json.loads(OPENAPI.read_text())


def test_the_sample_event_runs_through_the_handler(ops):
    response = ops.handler.lambda_handler(load_event("ops_api_dashboard.json"), ops.aws.context("OpsApiFunction"))
    assert response["statusCode"] == 200 and '<main id="dashboard">' in response["body"]
    response = ops.handler.lambda_handler(load_event("ops_api_dashboard_data.json"), ops.aws.context("OpsApiFunction"))
    assert response["statusCode"] == 200 and "open_incidents" in json.loads(response["body"])


def operator_route_authorizers(operator_auth: str) -> tuple[str, dict[tuple[str, str], str]]:
    """The API's default authorizer and each route's own, with the template resolved for ``OperatorAuth``."""
    template = load_template(OperatorAuth=operator_auth)
    api = template.resolve(template.body["Resources"]["OperationsApi"]["Properties"]["Auth"])
    routes = {}
    for resource in template.of_type("AWS::Serverless::Function").values():
        for event in resource["Properties"].get("Events", {}).values():
            if event["Type"] == "Api":
                properties = template.resolve(event["Properties"])
                own = properties.get("Auth", {}).get("Authorizer", "default")
                routes[(properties["Method"].upper(), properties["Path"])] = own
    return api["DefaultAuthorizer"], routes


def test_the_operator_auth_parameter_switches_the_operator_routes_to_cognito():
    # Given the template deployed with OperatorAuth=COGNITO, Then every operator route uses the user pool
    # authorizer; only the page itself (which holds no data and must load to sign in) and the provider's signed
    # callback are open
    default, routes = operator_route_authorizers("COGNITO")
    assert default == "OperatorCognito"
    assert routes[("GET", "/ops/dashboard")] == "NONE"
    assert routes[("POST", "/alerts/oncall/callback")] == "NONE"
    for route in (("GET", "/ops/dashboard/data"), ("POST", "/compliance/evidence/export")):
        assert routes[route] == "default", route
    assert sorted(route for route, own in routes.items() if own != "default") == [
        ("GET", "/ops/dashboard"),
        ("POST", "/alerts/oncall/callback"),
    ]
    # And with the default OperatorAuth=IAM every operator route, the page included, needs SigV4
    default, routes = operator_route_authorizers("IAM")
    assert default == "AWS_IAM" and routes[("GET", "/ops/dashboard")] == "AWS_IAM"


def test_with_cognito_deployed_the_page_signs_in_with_the_stacks_user_pool():
    # Given a stack deployed with OperatorAuth=COGNITO (the template writes the sign-in settings parameter)
    with moto_stack(OperatorAuth="COGNITO") as aws:
        response = Ops(aws).raw("/ops/dashboard")
    # Then the page signs operators in with the stack's hosted UI and app client, and may fetch tokens from it
    assert response["statusCode"] == 200
    config = json.loads(response["body"].split('id="dashboard-config">', 1)[1].split("</script>", 1)[0])
    assert config["mode"] == "COGNITO" and config["problem"] is None
    assert re.fullmatch(r"https://[a-z0-9-]+-ops\.auth\.us-east-1\.amazoncognito\.com", config["domain"])
    assert config["client_id"] == aws.name("OperatorUserPoolClient")
    assert f"connect-src 'self' {config['domain']}" in header(response, "Content-Security-Policy")
