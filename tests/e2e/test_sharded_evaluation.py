"""The evaluation fan-out, end to end in the local stack: the evaluator dispatches one asynchronous invocation per
scan segment to the shard evaluator (through the emulated Lambda Invoke API), and every connector is evaluated by
exactly one segment."""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest

from connector_sla.timeutil import to_iso
from devstack.stack import LocalStack
from tests.e2e.support import stack_options

pytestmark = pytest.mark.e2e

CONNECTORS = [f"shard-test-{index:02d}" for index in range(9)]
SHARDS = 3


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    options = stack_options(tmp_path_factory.mktemp("devstack"), speed=60, parameters={"EvaluatorShards": str(SHARDS)})
    lines: list[str] = []
    local = LocalStack(options, log=lines.append)
    local.start()
    local.wait_until_ready()
    local.lines = lines
    yield local
    local.stop()


def call(stack, method: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{stack.api_url}{path}", data=data, method=method)
    with urllib.request.urlopen(request, timeout=15) as response:
        return json.loads(response.read())


def test_a_sharded_pass_opens_one_incident_per_stale_connector(stack):
    # Given nine connectors whose only source went quiet a minute ago, with a 10 s freshness warning
    stale = to_iso(datetime.now(UTC) - timedelta(minutes=1))
    for connector_id in CONNECTORS:
        body = {
            "name": connector_id,
            "owner_team": "shards",
            "sources": [{"source_id": "primary", "name": "primary"}],
            "policy": {"freshness_warning_seconds": 10, "freshness_critical_seconds": 3600},
        }
        call(stack, "PUT", f"/events/connectors/{connector_id}", body)
        checkpoint = {"sources": [{"source_id": "primary", "last_event_at": stale, "status": "up"}]}
        call(stack, "POST", f"/events/connectors/{connector_id}/checkpoints", checkpoint)

    # When the evaluator's schedule fires a few times with EvaluatorShards=3
    deadline = time.monotonic() + 60
    states: dict[str, dict] = {}
    while time.monotonic() < deadline and len(states) < len(CONNECTORS):
        page = call(stack, "GET", "/events/connectors/sla/states?limit=100")
        states = {item["connector_id"]: item for item in page["states"] if item.get("incident_status") == "open"}
        time.sleep(0.5)

    # Then every connector has an open incident, opened by exactly one transition
    assert sorted(states) == CONNECTORS
    for connector_id in CONNECTORS:
        history = call(stack, "GET", f"/events/connectors/sla/states?view=transitions&connector_id={connector_id}")
        assert [item["kind"] for item in history["transitions"]] == ["opened"], connector_id
    # And the work went through the fan-out: the shard function ran, one invocation per segment per tick
    shard_worker = stack.workers["SlaShardEvaluatorFunction"]
    assert shard_worker.invocations >= SHARDS
    assert any("SlaEvaluatorFunction.Tick fired -> ok" in line and '"shards": 3' in line for line in stack.lines)
