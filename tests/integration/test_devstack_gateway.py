from __future__ import annotations

import base64
import json

from werkzeug.test import Client

from devstack.functions import ApiRoute, InvocationError
from devstack.gateway import Gateway

ROUTES = [
    ApiRoute("Connectors", "GET", "/events/connectors/{connector_id}", False),
    ApiRoute("Connectors", "GET", "/events/connectors/overview", False),
    ApiRoute("Callback", "POST", "/alerts/oncall/callback", True),
]


def gateway_with(result=None, error=None):
    calls = []

    def invoke(function, event):
        calls.append((function, event))
        if error:
            raise error
        return result

    return Gateway(ROUTES, invoke, stage="dev", log=lambda _: None), calls


def test_a_literal_route_wins_over_a_path_parameter():
    gateway, _ = gateway_with()
    route, params = gateway.match("GET", "/events/connectors/overview")
    assert route.path == "/events/connectors/overview" and params == {}
    route, params = gateway.match("GET", "/events/connectors/orders")
    assert route.path == "/events/connectors/{connector_id}" and params == {"connector_id": "orders"}


def test_the_proxy_event_carries_path_query_headers_identity_and_the_exact_body():
    gateway, calls = gateway_with({"statusCode": 200, "body": "{}"})
    body = b'{"a": "caf\xc3\xa9"}\r\n  '
    response = Client(gateway).post(
        "/alerts/oncall/callback?provider=generic&x=1&x=2", data=body, headers={"X-Callback-Signature": "sha256=ab"}
    )
    assert response.status_code == 200
    event = calls[0][1]
    assert event["resource"] == "/alerts/oncall/callback"
    assert event["body"].encode() == body and event["isBase64Encoded"] is False
    assert event["multiValueQueryStringParameters"] == {"provider": ["generic"], "x": ["1", "2"]}
    assert event["queryStringParameters"]["x"] == "2"
    assert event["headers"]["X-Callback-Signature"] == "sha256=ab"
    assert event["requestContext"]["identity"]["userArn"] is None  # open route: no caller identity


def test_a_non_utf8_body_arrives_base64_encoded():
    gateway, calls = gateway_with({"statusCode": 204})
    Client(gateway).post("/alerts/oncall/callback", data=b"\xff\xfe\x00")
    event = calls[0][1]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\xff\xfe\x00"


def test_unknown_routes_get_api_gateways_missing_token_answer():
    gateway, calls = gateway_with()
    response = Client(gateway).get("/nowhere")
    assert response.status_code == 403
    assert response.get_json() == {"message": "Missing Authentication Token"}
    assert calls == []


def test_a_failing_or_malformed_integration_is_a_502():
    gateway, _ = gateway_with(error=InvocationError({"errorMessage": "boom"}))
    assert Client(gateway).get("/events/connectors/overview").status_code == 502
    gateway, _ = gateway_with(result={"body": "no status"})
    assert Client(gateway).get("/events/connectors/overview").status_code == 502


def test_multi_value_headers_from_the_handler_are_merged():
    result = {
        "statusCode": 201,
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
        "body": json.dumps({"ok": True}),
    }
    gateway, _ = gateway_with(result)
    response = Client(gateway).get("/events/connectors/overview")
    assert response.status_code == 201
    assert response.headers.getlist("Set-Cookie") == ["a=1", "b=2"]
    assert response.get_json() == {"ok": True}
