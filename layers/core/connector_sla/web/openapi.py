"""The OpenAPI 3.1 document of the whole API, generated from the routes the functions declare.

``python -m connector_sla.web.openapi`` is not how it is run: ``devstack.openapi`` loads every function and calls
:func:`build_document`; the committed copy lives in ``connector_sla/openapi.json`` and a test fails on drift.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from connector_sla import __version__
from connector_sla.web.spec import RouteSpec

_REF = "#/components/schemas/{model}"

_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "Machine-readable error code, e.g. validation_error."},
        "message": {"type": "string", "description": "What was wrong and what is expected."},
        "details": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "problem": {"type": "string"}},
            },
        },
    },
}

_STATUS_TEXT = {
    400: "The request is invalid; the message says what was wrong.",
    401: "The signature or credentials were refused.",
    404: "No such resource.",
    409: "The resource is in a state that does not allow this.",
    413: "The body is too large.",
}


def _model(ref: Any) -> type[BaseModel] | None:
    if ref is None or isinstance(ref, type):
        return ref
    module, _, name = str(ref).partition(":")
    return getattr(importlib.import_module(module), name)


def build_document(specs: Iterable[RouteSpec]) -> dict[str, Any]:
    """The OpenAPI document for ``specs``; deterministic, so a committed copy can be compared."""
    specs = sorted(specs, key=lambda spec: (spec.path, spec.method))
    models = {}
    for spec in specs:
        for ref in (spec.body, spec.response):
            model = _model(ref)
            if model is not None:
                models[model.__name__] = model
    _, schemas = models_json_schema(
        [(model, "validation") for model in models.values()], ref_template=_REF, title="components"
    )
    components = dict(sorted(schemas.get("$defs", {}).items()))
    components["Error"] = _ERROR_SCHEMA

    paths: dict[str, dict[str, Any]] = {}
    for spec in specs:
        paths.setdefault(spec.path, {})[spec.method.lower()] = _operation(spec)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Connector SLA escalation API",
            "version": __version__,
            "description": (
                "Connector SLA evaluation, escalation, on-call callbacks, replay, jobs and compliance evidence. "
                "Operator routes need IAM (SigV4) or, when deployed with OperatorAuth=COGNITO, a Cognito ID token. "
                "POST /alerts/oncall/callback is open at the gateway and verifies the provider's signature."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "sigv4": {
                    "type": "apiKey",
                    "name": "Authorization",
                    "in": "header",
                    "description": "AWS Signature Version 4 (execute-api).",
                },
                "cognito": {
                    "type": "apiKey",
                    "name": "Authorization",
                    "in": "header",
                    "description": "Cognito ID token of an operator (deployments with OperatorAuth=COGNITO).",
                },
            },
        },
    }


def _operation(spec: RouteSpec) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": spec.operation_id,
        "summary": spec.summary,
        "tags": [spec.tag],
        "security": [] if spec.auth == "none" else [{"sigv4": []}, {"cognito": []}],
    }
    if spec.description:
        operation["description"] = spec.description
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", spec.path)
    ]
    query = _model(spec.query)
    if query is not None:
        schema = query.model_json_schema(ref_template=_REF)
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            parameter = {"name": name, "in": "query", "required": name in required, "schema": prop}
            if "description" in prop:
                parameter["description"] = prop["description"]
            parameters.append(parameter)
    if parameters:
        operation["parameters"] = parameters
    body = _model(spec.body)
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": _REF.format(model=body.__name__)}}},
        }
    response = _model(spec.response)
    success: dict[str, Any] = {"description": "Success."}
    if response is not None:
        success["content"] = {spec.response_content_type: {"schema": {"$ref": _REF.format(model=response.__name__)}}}
    elif spec.response_content_type != "application/json":
        success["content"] = {spec.response_content_type: {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {str(spec.status): success}
    for status in sorted(set(spec.errors)):
        responses[str(status)] = {
            "description": _STATUS_TEXT.get(status, "Refused."),
            "content": {"application/json": {"schema": {"$ref": _REF.format(model="Error")}}},
        }
    operation["responses"] = responses
    return operation
