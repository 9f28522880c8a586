"""What the tests share: the template, moto built from it, the real handlers loaded in-process, sample events."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from connector_sla.alerts.records import shard_of
from devstack.functions import FunctionSpec, LambdaContext, handler_module_path, read_functions
from devstack.gateway import Gateway
from devstack.resources import create_resources
from devstack.template import REGION, Template

ROOT = Path(__file__).resolve().parent.parent
EVENTS_DIR = ROOT / "events"
FUNCTIONS_DIR = ROOT / "functions"
_import_counter = itertools.count()


def unacked_page(
    notification_id: str, *, incident_id: str, connector_id: str, at: str = "2026-12-03T19:00:00.000Z", **extra: Any
) -> dict[str, Any]:
    """An L1 on-call page as escalation stores it after a sent delivery, still unacknowledged (docs/design.md)."""
    return {
        "notification_id": notification_id,
        "incident_id": incident_id,
        "connector_id": connector_id,
        "level": "L1",
        "kind": "alert",
        "channel": "oncall",
        "target": "generic",
        "provider": "generic",
        "ack_state": "unacked",
        "unacked_shard": shard_of(notification_id),
        "delivery_status": "sent",
        "created_at": at,
        "updated_at": at,
        "day": at[:10],
        "version": 1,
        **extra,
    }


def load_template(**parameters: str) -> Template:
    return Template.load(ROOT / "template.yaml", parameters)


def load_event(name: str) -> dict[str, Any]:
    """A sample event from ``events/`` (the same files ``sam local invoke -e`` takes)."""
    return json.loads((EVENTS_DIR / name).read_text())


def function_environment(functions: dict[str, FunctionSpec]) -> dict[str, str]:
    """The union of every function's environment; names are shared so the values must agree."""
    merged: dict[str, str] = {}
    for spec in functions.values():
        for key, value in spec.environment.items():
            if key in merged and merged[key] != value:
                raise AssertionError(f"environment variable {key} differs between functions")
            merged[key] = value
    return merged


@dataclass
class Aws:
    """moto (in-process) with every resource of the template, and the functions ready to load."""

    template: Template
    functions: dict[str, FunctionSpec]
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = boto3.client(service, region_name=REGION)
        return self._clients[service]

    def name(self, logical_id: str) -> str:
        """Physical name (table name, queue URL, bus name...) of a template resource."""
        return str(self.template.attribute(logical_id, "Ref"))

    def arn(self, logical_id: str) -> str:
        return str(self.template.attribute(logical_id, "Arn"))

    def load_handler(self, logical_id: str) -> Any:
        """Import the function's handler module fresh (its module-level clients are created inside moto)."""
        spec = self.functions[logical_id]
        path, _ = handler_module_path(spec)
        name = f"fn_{spec.code_dir.name}_{next(_import_counter)}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
        return module

    def context(self, logical_id: str) -> LambdaContext:
        spec = self.functions[logical_id]
        return LambdaContext(spec, deadline=float("inf"))


@contextmanager
def moto_stack(**parameters: str) -> Iterator[Aws]:
    """moto in-process with the template's resources and the functions' environment applied."""
    from moto import mock_aws

    from connector_sla.config import settings
    from connector_sla.storage.aws import client

    template = load_template(**parameters)
    saved = dict(os.environ)
    with mock_aws():
        aws = Aws(template=template, functions={})
        create_resources(template, aws.client)
        aws.functions = read_functions(template)
        os.environ.update(function_environment(aws.functions))
        os.environ["POWERTOOLS_TRACE_DISABLED"] = "true"
        settings.cache_clear()
        client.cache_clear()
        try:
            yield aws
        finally:
            os.environ.clear()
            os.environ.update(saved)
            settings.cache_clear()
            client.cache_clear()


def api_event(
    method: str,
    path: str,
    *,
    body: Any = None,
    query: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    raw_body: bytes | None = None,
    functions: dict[str, FunctionSpec] | None = None,
) -> dict[str, Any]:
    """An API Gateway proxy event built exactly as the local gateway builds it."""
    functions = functions or read_functions(load_template())
    routes = [route for spec in functions.values() for route in spec.routes]
    gateway = Gateway(routes, invoke=lambda *_: None, stage="dev", log=lambda _: None)
    data = raw_body if raw_body is not None else (json.dumps(body).encode() if body is not None else b"")
    builder = EnvironBuilder(
        path=path,
        method=method,
        query_string=query,
        data=data,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    request = Request(builder.get_environ())
    found = gateway.match(method, request.path)
    if found is None:
        raise AssertionError(f"no route for {method} {path}")
    route, params = found
    return gateway.build_event(request, route, params, data)


def call_api(aws: Aws, handler: Any, logical_id: str, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    """Invoke an API handler as the gateway would; returns the status and the decoded JSON body."""
    event = api_event(method, path, functions=aws.functions, **kwargs)
    response = handler.lambda_handler(event, aws.context(logical_id))
    body = response.get("body") or ""
    content_type = (response.get("headers") or {}).get("Content-Type", "") or ",".join(
        (response.get("multiValueHeaders") or {}).get("Content-Type", [])
    )
    if "json" in content_type and body:
        return response["statusCode"], json.loads(body)
    return response["statusCode"], body
