"""Dispatching API Gateway (REST, proxy integration) events to the operations of one function.

The API functions need little of a resolver: match the method and the path, hand the operation its path
parameters, and turn its result or its refusal into a proxy response. Powertools' resolver does this too, but
importing it loads every event source's data classes and asyncio, which here costs about a quarter of the cold
start floor (boto3 and one client) of the API functions; this module uses the standard library only.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple
from urllib.parse import unquote

Endpoint = Callable[..., "Response"]
ErrorHandler = Callable[["ApiRequest", Exception], "Response"]
NotFoundHandler = Callable[["ApiRequest"], "Response"]

_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class Response(NamedTuple):
    """What an operation answers: a status, a body (text, or bytes sent base64-encoded), its type and headers."""

    status_code: int
    body: str | bytes | None = None
    content_type: str | None = None
    headers: Mapping[str, str] = _NO_HEADERS

    def to_proxy(self) -> dict[str, Any]:
        """The proxy integration's response shape."""
        headers = dict(self.headers)
        if self.content_type and not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = self.content_type
        if isinstance(self.body, bytes):
            return {
                "statusCode": self.status_code,
                "headers": headers,
                "body": base64.b64encode(self.body).decode(),
                "isBase64Encoded": True,
            }
        return {"statusCode": self.status_code, "headers": headers, "body": self.body or "", "isBase64Encoded": False}


class ApiRequest:
    """The proxy event of the request being handled, read the way the operations need it."""

    def __init__(self, event: Mapping[str, Any]) -> None:
        self.raw_event = event
        self.http_method = str(event.get("httpMethod") or "").upper()
        self.path = str(event.get("path") or "/")
        self.body: str | None = event.get("body")
        self.is_base64_encoded = bool(event.get("isBase64Encoded"))
        self.query_string_parameters: dict[str, str] = dict(event.get("queryStringParameters") or {})
        self.multi_value_query_string_parameters: dict[str, list[str]] = dict(
            event.get("multiValueQueryStringParameters") or {}
        )
        self.headers: dict[str, str] = {
            str(name).lower(): value for name, value in (event.get("headers") or {}).items()
        }

    def header(self, name: str) -> str | None:
        """A request header, whatever the case the client wrote it in."""
        return self.headers.get(name.lower())


class _Route(NamedTuple):
    method: str
    # One (text, is_parameter) per path segment: a literal segment's text, or the name of a {parameter}, which
    # takes any non-empty segment.
    parts: tuple[tuple[str, bool], ...]
    endpoint: Endpoint

    def match(self, method: str, segments: list[str]) -> dict[str, str] | None:
        """The path parameters when the route serves ``method`` and these path segments, else None."""
        if method != self.method or len(segments) != len(self.parts):
            return None
        found: dict[str, str] = {}
        for segment, (text, is_parameter) in zip(segments, self.parts, strict=True):
            if is_parameter and segment:
                found[text] = unquote(segment)
            elif is_parameter or segment != text:
                return None
        return found

    def literal_segments(self) -> int:
        return sum(not is_parameter for _, is_parameter in self.parts)


class Router:
    """Routes of one function, most specific first (literal segments win over parameters, as API Gateway does)."""

    def __init__(self, *, on_error: ErrorHandler, on_not_found: NotFoundHandler) -> None:
        self._routes: list[_Route] = []
        self._on_error = on_error
        self._on_not_found = on_not_found
        self.current_request: ApiRequest | None = None

    def add(self, method: str, path: str, endpoint: Endpoint) -> None:
        """Serve ``method path``; ``{name}`` segments become keyword arguments of ``endpoint``."""
        segments = path[1:].split("/") if path.startswith("/") else path.split("/")
        self._routes.append(_Route(method.upper(), tuple(_part(segment) for segment in segments), endpoint))
        self._routes.sort(key=lambda route: -route.literal_segments())

    def resolve(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Run the operation the event asks for; every outcome, a crash included, is a proxy response."""
        request = ApiRequest(event)
        self.current_request = request
        try:
            # "/a/b/" is not "/a/b", and a path that does not start with "/" matches nothing.
            segments = request.path[1:].split("/") if request.path.startswith("/") else []
            for route in self._routes:
                params = route.match(request.http_method, segments)
                if params is not None:
                    return route.endpoint(**params).to_proxy()
            return self._on_not_found(request).to_proxy()
        except Exception as error:  # noqa: BLE001 - every refusal and crash becomes a response in one place
            return self._on_error(request, error).to_proxy()
        finally:
            self.current_request = None


def _part(segment: str) -> tuple[str, bool]:
    """``(name, True)`` for a ``{name}`` segment of a route's path, ``(segment, False)`` for a literal one."""
    if len(segment) > 2 and segment[0] == "{" and segment[-1] == "}" and segment[1:-1].isidentifier():
        return segment[1:-1], True
    return segment, False
