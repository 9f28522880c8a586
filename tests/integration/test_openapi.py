"""The published OpenAPI document is generated from the route models; the committed copy must not drift."""

from __future__ import annotations

import json
from pathlib import Path

from openapi_spec_validator import validate

from devstack.openapi import COMMITTED, render
from devstack.template import Template

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_document_matches_the_routes_the_functions_declare():
    assert COMMITTED.read_text() == render(), "run `make openapi` and commit layers/core/connector_sla/openapi.json"


def test_the_document_is_valid_openapi_3_1():
    validate(json.loads(COMMITTED.read_text()))


def test_every_gateway_route_in_the_template_is_documented_and_nothing_else():
    template = Template.load(ROOT / "template.yaml")
    declared = set()
    for resource in template.of_type("AWS::Serverless::Function").values():
        for event in (resource["Properties"].get("Events") or {}).values():
            if event["Type"] == "Api":
                declared.add((event["Properties"]["Method"].lower(), event["Properties"]["Path"]))
    documented = {
        (method, path)
        for path, operations in json.loads(COMMITTED.read_text())["paths"].items()
        for method in operations
    }
    assert declared, "the template declares no API routes"
    assert declared == documented
