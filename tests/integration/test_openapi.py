"""The published OpenAPI document is generated from the route models; the committed copy must not drift."""

from __future__ import annotations

import json

from openapi_spec_validator import validate

from devstack.openapi import COMMITTED, render


def test_the_committed_document_matches_the_routes_the_functions_declare():
    assert COMMITTED.read_text() == render(), "run `make openapi` and commit layers/core/connector_sla/openapi.json"


def test_the_document_is_valid_openapi_3_1():
    validate(json.loads(COMMITTED.read_text()))
