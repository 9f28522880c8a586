"""The API functions' router: the most specific route wins, every outcome is a proxy response, bodies survive."""

from __future__ import annotations

import base64

import pytest

from connector_sla.errors import DomainError
from connector_sla.web.router import ApiRequest, Response, Router


def router_with(*routes: tuple[str, str]) -> tuple[Router, list[tuple[str, dict]]]:
    calls: list[tuple[str, dict]] = []
    router = Router(
        on_error=lambda request, error: Response(599, f"{type(error).__name__}: {error}", "text/plain"),
        on_not_found=lambda request: Response(404, f"no {request.http_method} {request.path}", "text/plain"),
    )
    for method, path in routes:

        def endpoint(_name: str = f"{method} {path}", **params: str) -> Response:
            calls.append((_name, params))
            return Response(200, "{}", "application/json")

        router.add(method, path, endpoint)
    return router, calls


def event(method: str, path: str, **extra) -> dict:
    return {"httpMethod": method, "path": path, "headers": {}, **extra}


def test_a_literal_segment_wins_over_a_parameter_whatever_the_registration_order():
    # Given a parameter route registered before a literal sibling
    router, calls = router_with(("GET", "/events/connectors/{connector_id}"), ("GET", "/events/connectors/overview"))

    # When both are requested
    router.resolve(event("GET", "/events/connectors/overview"))
    router.resolve(event("GET", "/events/connectors/orders-db"))

    # Then each reaches its own operation, the parameter decoded and named
    assert calls == [
        ("GET /events/connectors/overview", {}),
        ("GET /events/connectors/{connector_id}", {"connector_id": "orders-db"}),
    ]


def test_path_parameters_are_percent_decoded_and_never_span_segments():
    router, calls = router_with(("GET", "/alerts/chains/{scope}/{scope_id}"))

    assert router.resolve(event("GET", "/alerts/chains/team/payments%20data"))["statusCode"] == 200
    assert calls == [("GET /alerts/chains/{scope}/{scope_id}", {"scope": "team", "scope_id": "payments data"})]
    assert router.resolve(event("GET", "/alerts/chains/team/a/b"))["statusCode"] == 404


def test_a_trailing_slash_an_empty_parameter_or_a_relative_path_matches_no_route():
    router, calls = router_with(("GET", "/ops/jobs"), ("GET", "/ops/jobs/{job_id}"))

    for path in ("/ops/jobs/", "/ops/jobs//", "ops/jobs", "//ops/jobs", "/ops/jobs/a/"):
        assert router.resolve(event("GET", path))["statusCode"] == 404, path
    assert router.resolve(event("GET", "/ops/jobs/a%2Fb"))["statusCode"] == 200
    assert calls == [("GET /ops/jobs/{job_id}", {"job_id": "a/b"})]


def test_an_unknown_path_or_method_goes_to_the_not_found_answer():
    router, calls = router_with(("POST", "/ops/jobs"))

    assert router.resolve(event("GET", "/ops/jobs"))["body"] == "no GET /ops/jobs"
    assert router.resolve(event("POST", "/ops/jobs/x"))["statusCode"] == 404
    assert calls == []


def test_a_refusal_or_a_crash_becomes_the_error_answer_and_the_request_is_cleared():
    # Given operations that refuse and crash
    router = Router(
        on_error=lambda request, error: Response(599, f"{request.path}: {type(error).__name__}", "text/plain"),
        on_not_found=lambda request: Response(404),
    )

    def refuse() -> Response:
        raise DomainError("nope")

    def crash() -> Response:
        raise KeyError("boom")

    router.add("GET", "/refuse", refuse)
    router.add("GET", "/crash", crash)

    # When they are called, Then each outcome is a response and no request stays current
    assert router.resolve(event("GET", "/refuse"))["body"] == "/refuse: DomainError"
    assert router.resolve(event("GET", "/crash"))["body"] == "/crash: KeyError"
    assert router.current_request is None


def test_responses_carry_their_type_and_headers_and_bytes_are_sent_base64_encoded():
    text = Response(201, "hi", "text/plain", {"Cache-Control": "no-store"}).to_proxy()
    assert text == {
        "statusCode": 201,
        "headers": {"Cache-Control": "no-store", "Content-Type": "text/plain"},
        "body": "hi",
        "isBase64Encoded": False,
    }
    binary = Response(200, b"\x00\xff", "application/zip").to_proxy()
    assert binary["isBase64Encoded"] is True and base64.b64decode(binary["body"]) == b"\x00\xff"
    # A Content-Type the operation set itself is kept, whatever its case
    assert Response(204, None, "application/json", {"content-type": "text/html"}).to_proxy()["headers"] == {
        "content-type": "text/html"
    }


@pytest.mark.parametrize("name", ["Content-Type", "content-type", "CONTENT-TYPE"])
def test_request_headers_are_read_whatever_their_case(name):
    request = ApiRequest(event("POST", "/x", headers={"Content-Type": "application/json"}, body=None))
    assert request.header(name) == "application/json"
    assert request.query_string_parameters == {} and request.multi_value_query_string_parameters == {}
