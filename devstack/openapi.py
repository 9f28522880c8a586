"""Generate the OpenAPI document from the routes every API function declares, or check the committed copy.

``python -m devstack.openapi --write`` (``make openapi``) rewrites ``layers/core/connector_sla/openapi.json``;
``--check`` exits 1 when the committed copy differs from what the code declares. The ops function serves the
committed copy at ``GET /openapi.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from typing import Any

from connector_sla.web.openapi import build_document
from connector_sla.web.spec import RouteSpec
from devstack.functions import ROOT, handler_module_path, read_functions
from devstack.template import Template

COMMITTED = ROOT / "layers" / "core" / "connector_sla" / "openapi.json"


def declared_routes() -> list[RouteSpec]:
    """Every RouteSpec of every API function, importing each handler module under its own name."""
    template = Template.load(ROOT / "template.yaml")
    functions = read_functions(template)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    for spec in functions.values():
        for key, value in spec.environment.items():
            os.environ.setdefault(key, value)
    specs: list[RouteSpec] = []
    for spec in functions.values():
        if not spec.routes:
            continue
        path, _ = handler_module_path(spec)
        name = f"openapi_{spec.code_dir.name}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
        declared: Any = getattr(module, "routes", None)
        specs.extend(getattr(declared, "specs", None) or getattr(module, "openapi_routes", []))
    return specs


def render() -> str:
    return json.dumps(build_document(declared_routes()), indent=2, sort_keys=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true")
    action.add_argument("--check", action="store_true")
    args = parser.parse_args()
    document = render()
    if args.write:
        COMMITTED.write_text(document)
        print(f"wrote {COMMITTED.relative_to(ROOT)}")
        return 0
    if COMMITTED.exists() and COMMITTED.read_text() == document:
        print("openapi.json is up to date")
        return 0
    print("openapi.json differs from the routes the functions declare; run `make openapi`", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
