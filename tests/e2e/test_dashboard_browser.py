"""The operations dashboard in a real headless Chromium, against the local stack with a known scenario seeded.

Chromium comes from Debian (`apt-get install -y chromium`; `.ci/run` installs it when run as root) and is driven by
Playwright for Python; CHROMIUM_PATH names another Chromium binary. Without Chromium every test here is skipped
with a message that says how to enable them. Screenshots go to tests/artifacts/; with UPDATE_DOC_SCREENSHOTS=1 they
also replace the ones the documentation shows (docs/images/).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from connector_sla.storage.dynamo import to_item
from connector_sla.timeutil import utcnow
from devstack.stack import LocalStack
from tests.e2e.support import free_port, stack_options
from tests.known_scenario import KnownScenario

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH") or "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
DOC_IMAGES = ROOT / "docs" / "images"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

NO_CHROMIUM = (
    f"the dashboard browser test needs Chromium at {CHROMIUM}: install it with "
    "`apt-get install -y chromium` (Debian; .ci/run does it when run as root) or point CHROMIUM_PATH at a "
    "Chromium binary, then run `.venv/bin/pytest -m browser`"
)
# CI sets REQUIRE_BROWSER=1: there a missing Chromium fails the run instead of skipping the test.
if not CHROMIUM.exists() and os.environ.get("REQUIRE_BROWSER") == "1":
    pytest.fail(NO_CHROMIUM, pytrace=False)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=NO_CHROMIUM),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    options = stack_options(tmp_path_factory.mktemp("devstack"), speed=1, prewarm=False)
    local = LocalStack(options, log=lambda _: None)
    local.start()
    # A known scenario means nothing else writes: pause the schedules and the stream consumers (the escalation
    # function would otherwise notify about the seeded states and add its own records).
    assert local.scheduler is not None
    local.scheduler.stop()
    for pump in local.pumps:
        pump.stop()
    local.wait_until_ready("/ops/dashboard/data", timeout=60)
    yield local
    local.stop()


@pytest.fixture(scope="module")
def scenario(stack):
    dynamodb = stack.client("dynamodb")

    def put(logical_id: str, item: dict[str, Any]) -> None:
        dynamodb.put_item(TableName=stack.template.attribute(logical_id, "Ref"), Item=to_item(item))

    return KnownScenario(base=utcnow() - timedelta(hours=2)).seed(put)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="the browser test drives Chromium with Playwright: `.venv/bin/pip install -r requirements/dev.txt`",
    )
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    yield page
    context.close()


def keep_screenshot(page_or_element: Any, name: str, **options: Any) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page_or_element.screenshot(path=str(path), **options)
    if os.environ.get("UPDATE_DOC_SCREENSHOTS") == "1":
        DOC_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOC_IMAGES / name)
    return path


def open_dashboard(page, stack) -> None:
    page.goto(f"{stack.api_url}/ops/dashboard?refresh=2")
    page.wait_for_selector("body[data-loaded]", timeout=20_000)


def test_the_panels_show_the_known_scenario(stack, scenario, page):
    # Given the local stack holding the known scenario, When an operator opens the dashboard
    open_dashboard(page, stack)

    # Then every connector is shown, the worst first, with its level and signals
    cards = page.locator("[data-panel=connectors] .card")
    assert cards.count() == 4
    assert cards.nth(0).get_attribute("data-connector-id") == scenario.orders
    orders = page.locator(f"[data-connector-id={scenario.orders}]")
    assert "critical" in orders.inner_text() and "L3" in orders.inner_text()
    assert "1860" in orders.locator("[data-signal=freshness_lag]").inner_text()
    assert "not evaluated" in page.locator(f"[data-connector-id={scenario.inventory}]").inner_text()

    # And the open incidents with their level, age and recovery ETA (the closed one is not listed)
    incidents = page.locator("[data-panel=incidents] tbody tr")
    assert incidents.count() == 2
    orders_incident = page.locator(f"[data-panel=incidents] tr[data-incident-id={scenario.orders_incident}]")
    assert "L3" in orders_incident.inner_text()
    assert orders_incident.locator("td[data-eta]").get_attribute("data-eta") == scenario.iso(180)
    assert "duty.manager" in orders_incident.inner_text()
    assert int(orders_incident.locator("td[data-age]").get_attribute("data-age")) >= 2 * 3600 - 60
    assert page.locator(f"[data-panel=incidents] tr[data-incident-id={scenario.crm_incident}]").count() == 0

    # And the escalation timeline: every transition and every notification of the scenario
    timeline = page.locator("[data-panel=escalations] li")
    assert page.locator("[data-panel=escalations] li[data-type=transition]").count() == len(
        scenario.written["TransitionsTable"]
    )
    assert page.locator("[data-panel=escalations] li[data-type=notification]").count() == len(
        scenario.written["NotificationsTable"]
    )
    assert any("escalated" in text for text in timeline.all_inner_texts())

    # And the callback timeline per incident, with the reconcile runs that touched the crm incident
    crm_group = page.locator(f"[data-panel=callbacks] .group[data-incident-id={scenario.crm_incident}]")
    assert crm_group.locator("li[data-type=reconcile_run]").count() == 2
    assert "dry run" in crm_group.inner_text()
    orders_group = page.locator(f"[data-panel=callbacks] .group[data-incident-id={scenario.orders_incident}]")
    assert "unacked → acknowledged" in orders_group.inner_text()
    assert page.locator("[data-panel=callbacks] .group[data-incident-id=unmatched]").count() == 1

    # And the recent job runs and deliveries, the failed bridge attempt included
    for run_id in (scenario.dry_run_id, scenario.reconcile_run_id):
        assert page.locator(f"[data-panel=job-runs] tr[data-run-id={run_id}]").count() == 1
    deliveries = page.locator("[data-panel=deliveries] tbody tr")
    assert deliveries.count() == len(scenario.written["DeliveriesTable"])
    assert "503" in page.locator("[data-panel=deliveries]").inner_text()
    assert page.locator("[data-summary=failed_deliveries] b").inner_text() == "1"

    keep_screenshot(page, "dashboard.png", full_page=True)


def test_the_page_refreshes_itself(stack, scenario, page):
    # Given the dashboard open, When a new connector is registered
    open_dashboard(page, stack)
    first = page.get_attribute("body", "data-loaded")
    stack.client("dynamodb").put_item(
        TableName=stack.template.attribute("ConnectorsTable", "Ref"),
        Item=to_item({"pk": "refresh-probe", "sk": "CONFIG", "name": "Refresh probe", "owner_team": "qa"}),
    )
    # Then it appears without a reload, on the page's next refresh
    page.wait_for_selector("[data-connector-id=refresh-probe]", timeout=15_000)
    assert page.get_attribute("body", "data-loaded") != first
    stack.client("dynamodb").delete_item(
        TableName=stack.template.attribute("ConnectorsTable", "Ref"),
        Key=to_item({"pk": "refresh-probe", "sk": "CONFIG"}),
    )


def test_an_auditor_exports_evidence_from_the_page_and_the_bundle_verifies(stack, scenario, page, tmp_path):
    # Given the dashboard, When an export of the orders connector is requested from the page
    open_dashboard(page, stack)
    form = page.locator("#export-form")
    form.locator("input[name=connector_id]").fill(scenario.orders)
    form.locator("button[type=submit]").click()

    # Then the export runs asynchronously (the emulated Lambda Invoke API starts the export function) and succeeds
    row = page.locator("[data-panel=exports] tbody tr").first
    page.wait_for_function(
        "() => { const r = document.querySelector('[data-panel=exports] tbody tr');"
        " return r && r.innerText.includes('succeeded'); }",
        timeout=60_000,
    )
    assert "verified" in row.inner_text()
    export_id = row.get_attribute("data-export-id")
    keep_screenshot(page.locator("[data-panel=exports]"), "evidence-exports.png")

    # And Download fetches the presigned URL, and the bundle verifies offline
    with page.expect_download(timeout=30_000) as download_info:
        row.locator("button[data-download]").click()
    bundle = tmp_path / "bundle.zip"
    download_info.value.save_as(str(bundle))
    from connector_sla.evidence.verify import verify_bundle

    result = verify_bundle(bundle)
    assert result.verified, result.lines
    manifest = json.loads(zipfile.ZipFile(bundle).read("manifest.json"))
    assert manifest["export_id"] == export_id
    assert manifest["query"]["connector_id"] == scenario.orders
    transitions = next(entry for entry in manifest["files"] if entry["name"] == "transitions.jsonl")
    expected = [item for item in scenario.written["TransitionsTable"] if item["connector_id"] == scenario.orders]
    assert transitions["records"] == len(expected)

    # And the offline verifier, run as an auditor runs it (standard library only), says so: keep its output as a
    # picture for the auditors' documentation
    completed = subprocess.run(
        [sys.executable, "-S", "-m", "connector_sla.evidence.verify", str(bundle)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT / "layers" / "core",
    )
    assert completed.returncode == 0 and "result    VERIFIED" in completed.stdout, completed.stdout
    terminal = (
        "<body style='margin:0'><pre style='margin:0;padding:14px 18px;background:#16202a;color:#e6edf3;"
        "font:13px/1.45 ui-monospace,Menlo,Consolas,monospace'>"
        f"$ python -m connector_sla.evidence.verify {export_id}.zip\n{html.escape(completed.stdout)}</pre></body>"
    )
    page.set_viewport_size({"width": 1180, "height": 300})
    page.goto("about:blank")  # leave the dashboard: its Content-Security-Policy would block these inline styles
    page.set_content(terminal)
    keep_screenshot(page.locator("pre"), "evidence-verify.png")


def test_a_refused_data_request_in_iam_mode_explains_sigv4(stack, scenario, page):
    # Given a deployment with OperatorAuth=IAM whose API refuses the browser's unsigned data request
    page.route("**/ops/dashboard/data*", lambda route: route.fulfill(status=403, body='{"message":"Forbidden"}'))
    # When the page loads
    page.goto(f"{stack.api_url}/ops/dashboard")
    # Then it says why and what to do instead
    status = page.locator("#status")
    status.wait_for(state="visible")
    page.wait_for_function("() => document.getElementById('status').classList.contains('error')", timeout=10_000)
    assert "SigV4-signed" in status.inner_text()
    assert "OperatorAuth=COGNITO" in status.inner_text()


class FakeHostedUi:
    """The two endpoints of a Cognito hosted UI the page uses, checking PKCE (S256) as Cognito does."""

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.codes: dict[str, dict[str, str]] = {}
        self.token_requests: list[dict[str, str]] = []
        exp = int(time.time()) + 3600
        claims = base64.urlsafe_b64encode(json.dumps({"email": "op@example.com", "exp": exp}).encode()).decode()
        self.id_token = "eyJhbGciOiJub25lIn0." + claims.rstrip("=") + ".sig"

    def __call__(self, environ, start_response):
        from werkzeug.wrappers import Request, Response

        request = Request(environ)
        cors = {"Access-Control-Allow-Origin": request.headers.get("Origin", "*")}
        if request.path == "/oauth2/authorize":
            params = request.args.to_dict()
            code = f"code-{len(self.codes)}"
            self.codes[code] = params
            target = params["redirect_uri"] + "?" + urlencode({"code": code, "state": params["state"]})
            return Response(status=302, headers={"Location": target})(environ, start_response)
        if request.path == "/oauth2/token" and request.method == "OPTIONS":
            headers = {**cors, "Access-Control-Allow-Headers": "Content-Type", "Access-Control-Allow-Methods": "POST"}
            return Response(status=204, headers=headers)(environ, start_response)
        if request.path == "/oauth2/token":
            form = request.form.to_dict()
            self.token_requests.append(form)
            asked = self.codes.pop(form.get("code", ""), None)
            challenge = base64.urlsafe_b64encode(hashlib.sha256(form.get("code_verifier", "").encode()).digest())
            valid = (
                asked is not None
                and asked.get("code_challenge_method") == "S256"
                and asked.get("code_challenge") == challenge.decode().rstrip("=")
                and form.get("redirect_uri") == asked.get("redirect_uri")
                and form.get("client_id") == self.client_id
            )
            if not valid:
                return Response('{"error":"invalid_grant"}', status=400, headers=cors)(environ, start_response)
            body = json.dumps({"id_token": self.id_token, "access_token": "a", "token_type": "Bearer"})
            return Response(body, content_type="application/json", headers=cors)(environ, start_response)
        return Response(status=404)(environ, start_response)


def test_with_cognito_the_page_signs_in_with_pkce_and_sends_the_id_token(stack, scenario, page):
    from werkzeug.serving import make_server

    # Given a deployment with OperatorAuth=COGNITO whose hosted UI is reachable
    hosted_ui = FakeHostedUi(client_id="abc123client")
    port = free_port()
    server = make_server("127.0.0.1", port, hosted_ui, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ssm = stack.client("ssm")
    name = stack.functions["OpsApiFunction"].environment["DASHBOARD_AUTH_PARAMETER"]
    original = ssm.get_parameter(Name=name)["Parameter"]["Value"]
    settings = {"mode": "COGNITO", "domain": f"http://127.0.0.1:{port}", "client_id": hosted_ui.client_id}
    ssm.put_parameter(Name=name, Value=json.dumps(settings), Type="String", Overwrite=True)
    sent: list[dict[str, str]] = []
    page.on("request", lambda request: sent.append(request.headers) if "/ops/dashboard/data" in request.url else None)
    try:
        # When an operator opens the page, Then it asks them to sign in
        page.goto(f"{stack.api_url}/ops/dashboard")
        page.locator("#sign-in").wait_for(state="visible")
        keep_screenshot(page, "dashboard-sign-in.png")

        # When they sign in, Then the hosted UI gets an S256 challenge, the code is exchanged with its verifier,
        # the address bar no longer shows the code, and the data requests carry the ID token
        page.locator("#sign-in").click()
        page.wait_for_selector("body[data-loaded]", timeout=20_000)
        assert len(hosted_ui.token_requests) == 1
        assert hosted_ui.token_requests[0]["grant_type"] == "authorization_code"
        assert "code=" not in page.url
        assert urlsplit(page.url).path == "/ops/dashboard"
        assert sent and sent[-1].get("authorization") == hosted_ui.id_token
        assert page.locator("#sign-out").is_visible()
        assert page.locator(f"[data-connector-id={scenario.orders}]").count() == 1

        # And a replayed sign-in answer (a code this tab did not ask for) is refused
        page.goto(f"{stack.api_url}/ops/dashboard?" + urlencode({"code": "code-x", "state": "forged"}))
        page.wait_for_function("() => document.getElementById('status').classList.contains('error')")
        assert "does not match" in page.locator("#status").inner_text()
        assert parse_qs(urlsplit(page.url).query) == {}
    finally:
        ssm.put_parameter(Name=name, Value=original, Type="String", Overwrite=True)
        server.shutdown()
