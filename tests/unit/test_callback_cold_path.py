"""The callback function's cold start stays lean: its import path never loads pydantic or the API resolver."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.support import ROOT

_PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
heavy = ["pydantic", "aws_lambda_powertools.event_handler", "connector_sla.web.routes"]
heavy.append("connector_sla.callbacks.models")
print(json.dumps({name: name in sys.modules for name in heavy}))
"""


def test_importing_the_callback_handler_loads_neither_pydantic_nor_the_resolver():
    # Given a fresh interpreter, as a Lambda cold start
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "functions" / "oncall_callback"), str(ROOT / "layers" / "core")]),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }

    # When it imports the callback handler
    handler = ROOT / "functions" / "oncall_callback" / "app.py"
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, str(handler)], env=env, capture_output=True, text=True, check=True
    )

    # Then none of the heavy modules was loaded
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == dict.fromkeys(loaded, False), loaded
