"""The callback function's cold start stays lean: its import path never loads pydantic or the API resolver."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from devstack.functions import read_functions
from tests.support import ROOT, function_environment, load_template

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


@pytest.mark.parametrize("folder", sorted(path.name for path in (ROOT / "functions").glob("*_api")))
def test_no_api_function_imports_the_powertools_resolver(folder):
    # Given a fresh interpreter with one API function's environment
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "functions" / folder), str(ROOT / "layers" / "core")]),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        **function_environment(read_functions(load_template())),
    }

    # When it imports the handler
    loaded = "print('aws_lambda_powertools.event_handler' in sys.modules)"
    probe = f"import runpy, sys; runpy.run_path(sys.argv[1]); {loaded}"
    handler = ROOT / "functions" / folder / "app.py"
    command = [sys.executable, "-c", probe, str(handler)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)

    # Then it started without loading aws_lambda_powertools.event_handler (its own router serves the routes)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "False"
