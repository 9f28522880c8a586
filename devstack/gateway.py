"""API Gateway (REST, Lambda proxy integration) on 127.0.0.1, as ``sam local start-api`` would serve it.

Each HTTP request becomes a proxy event for the function whose route matches, and the function's response becomes
the HTTP response. Unknown routes get API Gateway's 403 ``Missing Authentication Token``; a handler that fails or
returns something that is not a proxy response gets a 502.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Request, Response

from devstack.functions import ApiRoute

MAX_PAYLOAD = 10 * 1024 * 1024  # API Gateway's request payload limit
LOCAL_OPERATOR_ARN = "arn:aws:iam::123456789012:user/local-operator"

Invoke = Callable[[str, dict[str, Any]], Any]


@dataclass(frozen=True)
class _CompiledRoute:
    route: ApiRoute
    pattern: re.Pattern[str]
    static_segments: int


def _compile(route: ApiRoute) -> _CompiledRoute:
    parts = []
    static = 0
    for segment in route.path.strip("/").split("/"):
        if segment.endswith("+}"):
            parts.append(f"(?P<{segment[1:-2]}>.+)")
        elif segment.startswith("{"):
            parts.append(f"(?P<{segment[1:-1]}>[^/]+)")
        else:
            parts.append(re.escape(segment))
            static += 1
    return _CompiledRoute(route, re.compile("^/" + "/".join(parts) + "$"), static)


# A local-only request header: the demo's polling reads carry it, so the log shows the steps and not every poll.
QUIET_HEADER = "X-Devstack-Quiet"


class Gateway:
    """A WSGI app that routes requests to the functions of the template."""

    def __init__(self, routes: list[ApiRoute], invoke: Invoke, *, stage: str, log: Callable[[str], None]) -> None:
        # API Gateway prefers the most specific route: more literal segments first.
        self.routes = sorted((_compile(route) for route in routes), key=lambda item: -item.static_segments)
        self.invoke = invoke
        self.stage = stage
        self.log = log

    def match(self, method: str, path: str) -> tuple[ApiRoute, dict[str, str]] | None:
        for compiled in self.routes:
            found = compiled.pattern.match(path)
            if found and compiled.route.method in (method, "ANY"):
                return compiled.route, found.groupdict()
        return None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        started = time.perf_counter()
        response = self.handle(request)
        elapsed = (time.perf_counter() - started) * 1000
        if not request.headers.get(QUIET_HEADER):
            path = request.full_path.rstrip("?")
            self.log(f"http      {request.method} {path} -> {response.status_code} ({elapsed:.0f} ms)")
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        if (request.content_length or 0) > MAX_PAYLOAD:
            return _json(413, {"message": "Request Too Long"})
        # Read the body before anything parses it, so the handler sees the exact bytes the client sent.
        body = request.get_data(cache=True, as_text=False, parse_form_data=False)
        found = self.match(request.method, request.path)
        if found is None:
            return _json(403, {"message": "Missing Authentication Token"})
        route, path_parameters = found
        event = self.build_event(request, route, path_parameters, body)
        try:
            result = self.invoke(route.function, event)
        except Exception:  # noqa: BLE001 - API Gateway answers any integration failure with a 502
            return _json(502, {"message": "Internal server error"})
        return _to_http(result)

    def build_event(
        self, request: Request, route: ApiRoute, path_parameters: dict[str, str], body: bytes
    ) -> dict[str, Any]:
        headers: dict[str, str] = {}
        multi_headers: dict[str, list[str]] = {}
        for name, value in request.headers.items():
            headers[name] = value
            multi_headers.setdefault(name, []).append(value)
        multi_query = {name: request.args.getlist(name) for name in request.args}
        try:
            text: str | None = body.decode("utf-8") if body else None
            encoded = False
        except UnicodeDecodeError:
            text, encoded = base64.b64encode(body).decode(), True
        identity = {
            "sourceIp": request.remote_addr or "127.0.0.1",
            "userAgent": request.headers.get("User-Agent"),
            "userArn": None if route.open_route else LOCAL_OPERATOR_ARN,
            "caller": None if route.open_route else "local-operator",
        }
        return {
            "resource": route.path,
            "path": request.path,
            "httpMethod": request.method,
            "headers": headers or None,
            "multiValueHeaders": multi_headers or None,
            "queryStringParameters": {name: values[-1] for name, values in multi_query.items()} or None,
            "multiValueQueryStringParameters": multi_query or None,
            "pathParameters": path_parameters or None,
            "stageVariables": None,
            "requestContext": {
                "resourcePath": route.path,
                "httpMethod": request.method,
                "path": f"/{self.stage}{request.path}",
                "stage": self.stage,
                "requestId": str(uuid.uuid4()),
                "requestTimeEpoch": int(time.time() * 1000),
                "accountId": "123456789012",
                "apiId": "local",
                "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
                "domainName": request.host,
                "identity": identity,
            },
            "body": text,
            "isBase64Encoded": encoded,
        }


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


def _to_http(result: Any) -> Response:
    if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int):
        return _json(502, {"message": "Internal server error"})
    body = result.get("body") or ""
    payload = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
    response = Response(payload, status=result["statusCode"])
    response.headers.clear()
    for name, value in (result.get("headers") or {}).items():
        response.headers[name] = str(value)
    for name, values in (result.get("multiValueHeaders") or {}).items():
        response.headers.remove(name)
        for value in values:
            response.headers.add(name, str(value))
    if "Content-Type" not in response.headers:
        response.headers["Content-Type"] = "application/json"
    return response
