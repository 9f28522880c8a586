"""Declaring API routes once: the function serves them through its router, the OpenAPI tool reads them.

Each route validates its path, query and body against pydantic models before the domain code runs. Refusals are
mapped to HTTP in one place: a :class:`~connector_sla.errors.DomainError` keeps its status, a pydantic error is a
400 naming each bad field, and anything else is a logged 500 that reveals nothing.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ValidationError

from connector_sla.errors import DomainError, ValidationFailed
from connector_sla.web.router import ApiRequest, Response, Router
from connector_sla.web.spec import RouteSpec

logger = Logger(child=True)

JSON = "application/json"


def json_response(status: int, body: Any) -> Response:
    """A JSON response; pydantic models are dumped in JSON mode."""
    if isinstance(body, BaseModel):
        body = body.model_dump(mode="json")
    return Response(status_code=status, content_type=JSON, body=json.dumps(body, separators=(",", ":")))


def describe_validation_error(error: ValidationError, *, where: str) -> tuple[str, list[dict[str, Any]]]:
    """A one-line message and per-field details for a pydantic error, without echoing the input back."""
    details = []
    for problem in error.errors(include_url=False, include_input=False, include_context=False):
        location = ".".join(str(part) for part in problem["loc"])
        field = f"{where}.{location}" if location else where
        details.append({"field": field, "problem": problem["msg"]})
    shown = "; ".join(f"{item['field']}: {item['problem']}" for item in details[:3])
    more = f" (and {len(details) - 3} more)" if len(details) > 3 else ""
    return f"request {where} is invalid: {shown}{more}", details


def raw_body(request: ApiRequest) -> bytes:
    """The request body byte for byte, whether or not the gateway base64-encoded it."""
    body = request.body or ""
    if request.is_base64_encoded:
        return base64.b64decode(body)
    return body.encode()


def request_actor(request: ApiRequest) -> str:
    """Who made the request: the IAM principal, the Cognito user, or ``anonymous``."""
    context = request.raw_event.get("requestContext") or {}
    claims = (context.get("authorizer") or {}).get("claims") or {}
    identity = context.get("identity") or {}
    return claims.get("email") or claims.get("cognito:username") or identity.get("userArn") or "anonymous"


class ApiRoutes:
    """Route decorators that validate input, call the domain function and shape its result.

    ``resolve(event)`` serves an API Gateway proxy event; the function's ``lambda_handler`` hands it the event.
    """

    def __init__(self, *, tag: str) -> None:
        self.tag = tag
        self.specs: list[RouteSpec] = []
        self.router = Router(on_error=_error_response, on_not_found=_not_found)

    def resolve(self, event: dict[str, Any]) -> dict[str, Any]:
        """The proxy response to one API Gateway event."""
        return self.router.resolve(event)

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        errors: tuple[int, ...] = (400,),
        response_content_type: str = JSON,
        description: str = "",
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register ``method path`` (``{name}`` path parameters, as in the template) with its models."""

        def decorator(operation: Callable[..., Any]) -> Callable[..., Any]:
            self.specs.append(
                RouteSpec(
                    method=method.upper(),
                    path=path,
                    operation_id=operation.__name__,
                    summary=summary,
                    tag=self.tag,
                    status=status,
                    body=body,
                    query=query,
                    response=response,
                    response_content_type=response_content_type,
                    errors=errors,
                    description=description or (operation.__doc__ or "").strip(),
                )
            )

            def endpoint(**path_params: str) -> Response:
                kwargs: dict[str, Any] = dict(path_params)
                if query is not None:
                    kwargs["query"] = self._parse_query(query)
                if body is not None:
                    kwargs["body"] = self._parse_body(body)
                result = operation(**kwargs)
                if isinstance(result, Response):
                    return result
                return json_response(status, result)

            self.router.add(method, path, endpoint)
            return operation

        return decorator

    def get(self, path: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self.route("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self.route("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self.route("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self.route("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self.route("DELETE", path, **kwargs)

    def actor(self) -> str:
        """Who made the current request (for audit fields such as ``patched_by``)."""
        return request_actor(self._request())

    def _request(self) -> ApiRequest:
        request = self.router.current_request
        if request is None:
            raise RuntimeError("no request is being handled")
        return request

    def _parse_query(self, model: type[BaseModel]) -> BaseModel:
        request = self._request()
        multi = request.multi_value_query_string_parameters
        single = request.query_string_parameters
        params: dict[str, Any] = {}
        for name in set(multi) | set(single):
            values = multi.get(name) or [single[name]]
            annotation = model.model_fields[name].annotation if name in model.model_fields else None
            wants_list = annotation is not None and getattr(annotation, "__origin__", None) is list
            params[name] = values if wants_list else values[-1]
        try:
            return model.model_validate(params)
        except ValidationError as error:
            message, details = describe_validation_error(error, where="query")
            raise ValidationFailed(message, details=details) from error

    def _parse_body(self, model: type[BaseModel]) -> BaseModel:
        data = raw_body(self._request())
        if not data.strip():
            raise ValidationFailed("request body is empty: send a JSON object (Content-Type: application/json)")
        try:
            return model.model_validate_json(data)
        except ValidationError as error:
            if any(problem["type"] == "json_invalid" for problem in error.errors()):
                raise ValidationFailed("request body is not valid JSON: send a JSON object") from error
            message, details = describe_validation_error(error, where="body")
            raise ValidationFailed(message, details=details) from error


def _error_response(request: ApiRequest, error: Exception) -> Response:
    if isinstance(error, DomainError):
        logger.info("request refused", status=error.status, error_code=error.code, reason=error.message)
        return json_response(error.status, error.to_body())
    logger.error("request failed", exc_info=error)
    request_id = (request.raw_event.get("requestContext") or {}).get("requestId")
    body = {"error": "internal_error", "message": "the request failed; retry later", "request_id": request_id}
    return json_response(500, body)


def _not_found(request: ApiRequest) -> Response:
    message = f"no route {request.http_method} {request.path}; see GET /openapi.json for the routes of this API"
    return json_response(404, {"error": "not_found", "message": message})
