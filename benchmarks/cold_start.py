"""Cold start of every function, as a ratio to the floor measured in the same run.

For each function: a fresh process imports its handler module (which creates its boto3 clients at module level,
as warm reuse needs) and reports how long the import took. The floor is a fresh process that imports boto3 and
creates the same clients (recorded from the handler's own import). Each is measured several times, interleaved,
and the median is compared. Goals: at most 1.3 for the callback function, at most 1.6 for every other.

Run: ``.venv/bin/python benchmarks/cold_start.py [--runs 9]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "core")]

from devstack.functions import handler_module_path, read_functions  # noqa: E402
from devstack.template import Template  # noqa: E402

GOALS = {"OncallCallbackFunction": 1.3}
DEFAULT_GOAL = 1.6


_TIMED_IMPORT = """
import importlib.util, json, sys, time
started = time.perf_counter()
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules["app"] = module
spec.loader.exec_module(module)
print(json.dumps({"seconds": time.perf_counter() - started}))
""".strip()

_RECORD_CLIENTS = """
import importlib.util, json, sys
import botocore.session
services = []
_create = botocore.session.Session.create_client
def _record(self, service_name, *args, **kwargs):
    services.append(service_name)
    return _create(self, service_name, *args, **kwargs)
botocore.session.Session.create_client = _record
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules["app"] = module
spec.loader.exec_module(module)
print(json.dumps({"services": services}))
""".strip()

_FLOOR = """
import json, sys, time
started = time.perf_counter()
import boto3
for service in json.loads(sys.argv[1]):
    boto3.client(service)
print(json.dumps({"seconds": time.perf_counter() - started}))
""".strip()


def run(code: str, argument: str, env: dict[str, str], cwd: Path) -> dict:
    output = subprocess.run(
        [sys.executable, "-c", code, argument], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    if output.returncode != 0:
        raise RuntimeError(output.stderr[-2000:])
    return json.loads(output.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--only", default="", help="comma-separated logical ids")
    args = parser.parse_args()

    functions = read_functions(Template.load(ROOT / "template.yaml"))
    selected = [name for name in functions if not args.only or name in args.only.split(",")]
    print(f"python {platform.python_version()} on {platform.machine()}, {args.runs} runs each, median seconds")
    print(f"{'function':28s} {'clients':28s} {'init':>7s} {'floor':>7s} {'ratio':>6s} {'goal':>5s}")
    failures = 0
    for name in selected:
        spec = functions[name]
        module_path, _ = handler_module_path(spec)
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": os.pathsep.join([str(spec.code_dir), str(ROOT / "layers" / "core")]),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "POWERTOOLS_TRACE_DISABLED": "true",
            **spec.environment,
        }
        services = run(_RECORD_CLIENTS, str(module_path), env, spec.code_dir)["services"]
        inits, floors = [], []
        for _ in range(args.runs):
            inits.append(run(_TIMED_IMPORT, str(module_path), env, spec.code_dir)["seconds"])
            floors.append(run(_FLOOR, json.dumps(services), env, spec.code_dir)["seconds"])
        init, floor = statistics.median(inits), statistics.median(floors)
        ratio = init / floor
        goal = GOALS.get(name, DEFAULT_GOAL)
        verdict = "ok" if ratio <= goal else "OVER"
        failures += verdict != "ok"
        print(f"{name:28s} {','.join(services) or '-':28s} {init:7.3f} {floor:7.3f} {ratio:6.2f} {goal:5.1f} {verdict}")
    print(f"{len(selected) - failures} of {len(selected)} functions within their goal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
