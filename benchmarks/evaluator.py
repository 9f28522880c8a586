"""One SLA evaluation pass against moto, compared with a bare paginated scan of the table it reads.

For 1,000 and 10,000 connectors whose state is already recorded and does not change (the steady state of a
healthy fleet), it prints the DynamoDB requests of one pass, per connector, and the pass's time as a ratio to a
bare paginated Scan of ConnectorsTable measured in the same run (median of several runs, interleaved).
Goals: at most 1.3 times the bare scan; at most 0.02 requests per unchanged connector.

moto keeps a copy of every item a Scan returns (measured here: 400 new item objects per 100 connectors per scan,
never freed; a 10,000-connector run of three passes was killed at 24 GB), so sizes above 2,000 connectors are
measured once instead of ``--runs`` times.

Run: ``.venv/bin/python benchmarks/evaluator.py [--sizes 1000,10000] [--runs 3]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "core")]
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_ACCOUNT_ID_ENDPOINT_MODE="disabled",
    POWERTOOLS_LOG_LEVEL="WARNING",
    POWERTOOLS_TRACE_DISABLED="true",
)

from connector_sla.sla.evaluator import Evaluator, inputs_from_rows  # noqa: E402
from connector_sla.sla.models import SlaPolicy  # noqa: E402
from connector_sla.sla.rules import Tick, decide  # noqa: E402
from connector_sla.sla.store import ConnectorRows  # noqa: E402
from connector_sla.storage.dynamo import to_item  # noqa: E402
from tests.support import moto_stack  # noqa: E402

NOW = datetime.now(UTC)
MOTO_LEAK_SAFE_SIZE = 2000


def seed(aws, count: int) -> None:
    """Connectors with their progress, counters and an already recorded, unchanging state."""
    dynamodb = aws.client("dynamodb")
    table = aws.name("ConnectorsTable")
    policy = SlaPolicy().model_dump()
    tick = Tick("seed", NOW - timedelta(minutes=5))
    batch = []
    for index in range(count):
        connector_id = f"connector-{index:06d}"
        config = {
            "pk": connector_id,
            "sk": "CONFIG",
            "connector_id": connector_id,
            "name": f"Connector {index}",
            "owner_team": f"team-{index % 20}",
            "sources": [{"source_id": "primary", "name": ""}, {"source_id": "backup", "name": ""}],
            "policy": policy,
            "created_at": "2026-01-01T00:00:00.000Z",
            "updated_at": "2026-01-01T00:00:00.000Z",
            "config_version": 1,
        }
        progress = {
            "pk": connector_id,
            "sk": "PROGRESS",
            "revision": 1,
            "sources": {
                "primary": {
                    "last_event_at": (NOW - timedelta(seconds=5)).isoformat(),
                    "status": "up",
                    "checkpoint": f"lsn/{index}",
                    "reported_at": NOW.isoformat(),
                }
            },
            "reported_pending_replay": 3,
            "reported_dead_letter_total": 2,
        }
        counters = {
            "pk": connector_id,
            "sk": "COUNTERS",
            "dead_letter_total": 0,
            "pending_replay": 0,
            "replayed_total": 0,
        }
        rows = ConnectorRows(connector_id, config=config, progress=progress, counters=counters)
        decision = decide(inputs_from_rows(rows), None, tick, NOW)
        state = {**decision.state, "pk": connector_id, "sk": "STATE", "connector_id": connector_id, "version": 1}
        batch.extend({"PutRequest": {"Item": to_item(item)}} for item in (config, progress, counters, state))
        if len(batch) >= 25:
            dynamodb.batch_write_item(RequestItems={table: batch[:25]})
            batch = batch[25:]
    while batch:
        dynamodb.batch_write_item(RequestItems={table: batch[:25]})
        batch = batch[25:]


def measure(count: int, runs: int) -> dict:
    with moto_stack() as aws:
        seed(aws, count)
        evaluator = Evaluator.from_settings()
        dynamodb = evaluator.store.table.dynamodb
        requests: Counter[str] = Counter()
        dynamodb.meta.events.register("before-call.dynamodb.*", lambda model, **_: requests.update([model.name]))
        scans, passes, reports = [], [], []
        for run in range(runs):
            started = time.perf_counter()
            for _page in evaluator.store.table.scan_pages(raw=True):
                pass
            scans.append(time.perf_counter() - started)
            requests.clear()
            tick_at = NOW + timedelta(minutes=run + 1)
            report = evaluator.run_pass(Tick(tick_at.isoformat(), tick_at), lambda: datetime.now(UTC))
            passes.append(report.seconds)
            reports.append((report, dict(requests)))
        report, counted = reports[-1]
        total_requests = sum(counted.values())
        return {
            "connectors": count,
            "changed": report.changed,
            "requests": counted,
            "per_connector": total_requests / count,
            "scan": statistics.median(scans),
            "pass": statistics.median(passes),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(
        f"{'connectors':>10s} {'changed':>7s} {'requests/pass':>24s} {'req/connector':>13s} "
        f"{'bare scan s':>11s} {'pass s':>7s} {'ratio':>6s}"
    )
    for size in (int(value) for value in args.sizes.split(",")):
        result = measure(size, args.runs if size <= MOTO_LEAK_SAFE_SIZE else 1)
        ratio = result["pass"] / result["scan"]
        requests = ", ".join(f"{name} {count}" for name, count in sorted(result["requests"].items()))
        print(
            f"{size:>10d} {result['changed']:>7d} {requests:>24s} {result['per_connector']:>13.4f} "
            f"{result['scan']:>11.3f} {result['pass']:>7.3f} {ratio:>6.2f}"
        )
    print("goals: ratio <= 1.3, requests per unchanged connector <= 0.02")
    return 0


if __name__ == "__main__":
    sys.exit(main())
