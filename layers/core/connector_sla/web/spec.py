"""What the OpenAPI document needs to know about one route. No pydantic here: the callback function imports it."""

from __future__ import annotations

from typing import Any, NamedTuple

# A model is a pydantic class, or "module:Name" so that a cold start does not have to import pydantic.
ModelRef = Any


class RouteSpec(NamedTuple):
    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    status: int = 200
    body: ModelRef = None
    query: ModelRef = None
    response: ModelRef = None
    response_content_type: str = "application/json"
    auth: str = "operator"  # "operator": IAM (or Cognito, per OperatorAuth); "none": open at the gateway
    errors: tuple[int, ...] = (400,)
    description: str = ""
