"""Callback handling cost: DynamoDB requests per callback and handler latency as a ratio to a bare UpdateItem.

In one process against in-process moto: 2,000 signed ``acknowledged`` callbacks, each for its own unacked
notification, go through the real handler of OncallCallbackFunction. Every DynamoDB request is counted with a
botocore event hook. The floor is a bare ``UpdateItem`` on the same table with the same client, measured in the
same run (half before, half after the callbacks, so drift is shared). Goal: at most 3 requests per callback.

moto snapshots every table a TransactWriteItems touches (a deep copy, so its cost grows with the table: about
0.7 ms per stored item here), to roll back a refused transaction. That copy is moto's, not the service's, and it
would make 2,000 callbacks take most of an hour; the benchmark turns it off (no transaction in it is refused:
every callback must answer 200 with exactly 3 requests, else it exits 1). ``--moto-snapshots`` keeps it.

``--eta``: every callback also carries a recovery ETA for its connector's open L3 incident and names the connector
in ``custom_details``, as a page's callback does; each must record its ETA, within the same 3 requests.

Run: ``.venv/bin/python benchmarks/callback.py [--callbacks 2000] [--moto-snapshots] [--eta]``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "core")]
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1",
    POWERTOOLS_TRACE_DISABLED="true",
)
os.environ.pop("AWS_ENDPOINT_URL", None)

from moto.dynamodb.models.table import Table as MotoTable  # noqa: E402

from connector_sla.alerts.records import shard_of  # noqa: E402
from connector_sla.callbacks.signatures import sign_hmac_sha256  # noqa: E402
from connector_sla.config import settings  # noqa: E402
from connector_sla.ids import stable_id  # noqa: E402
from connector_sla.sla.ledger import StateLedger  # noqa: E402
from connector_sla.storage.aws import client  # noqa: E402
from connector_sla.storage.dynamo import Table, to_item  # noqa: E402
from connector_sla.timeutil import to_iso  # noqa: E402
from tests.support import api_event, moto_stack, unacked_page  # noqa: E402

FUNCTION = "OncallCallbackFunction"
SECRET = "benchmark-signing-secret"
REQUEST_GOAL = 3
CONNECTORS = 50


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def notification(index: int) -> dict[str, Any]:
    notification_id = stable_id("ntf", "inc_01BENCH", "trn_1", "oncall", str(index))
    return unacked_page(
        notification_id,
        incident_id="inc_01BENCH",
        connector_id=f"connector-{index % CONNECTORS:02d}",
        attempt_count=1,
        due_shard=shard_of(notification_id),
        due_at="2026-12-03T19:15:00.000Z",
        due_kind="ack_timeout",
    )


def signed_event(row: dict[str, Any], functions: Any, *, eta: str | None = None) -> dict[str, Any]:
    """The gateway event of a signed acknowledged callback, signed now (built outside the timed section)."""
    payload: dict[str, Any] = {"status": "acknowledged", "notification_id": row["notification_id"]}
    if eta is not None:
        payload.update(eta=eta, custom_details={"connector_id": row["connector_id"]})
    body = json.dumps(payload).encode()
    stamp = str(int(time.time()))
    headers = {"X-Callback-Timestamp": stamp, "X-Callback-Signature": sign_hmac_sha256(SECRET, stamp, body)}
    return api_event("POST", "/alerts/oncall/callback", raw_body=body, headers=headers, functions=functions)


def bare_updates(dynamodb: Any, table: str, keys: list[str]) -> list[float]:
    timings = []
    for key in keys:
        started = time.perf_counter()
        dynamodb.update_item(
            TableName=table,
            Key={"notification_id": {"S": key}},
            UpdateExpression="SET #probe = :probe",
            ExpressionAttributeNames={"#probe": "benchmark_probe"},
            ExpressionAttributeValues={":probe": {"N": "1"}},
        )
        timings.append(time.perf_counter() - started)
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callbacks", type=int, default=2000)
    parser.add_argument("--moto-snapshots", action="store_true", help="keep moto's per-transaction table copy")
    parser.add_argument("--eta", action="store_true", help="each callback also records a recovery ETA")
    args = parser.parse_args()
    count = args.callbacks
    if not args.moto_snapshots:
        # The snapshot is taken with copy.deepcopy(table); handing back the table itself skips the copy.
        MotoTable.__deepcopy__ = lambda self, _memo: self

    with moto_stack(LogLevel="WARNING") as aws:
        table = aws.name("NotificationsTable")
        rows = [notification(index) for index in range(count)]
        dynamodb = client("dynamodb")
        for start in range(0, count, 25):
            batch = [{"PutRequest": {"Item": to_item(row)}} for row in rows[start : start + 25]]
            dynamodb.batch_write_item(RequestItems={table: batch})
        if args.eta:
            ledger = StateLedger(
                Table(aws.name("ConnectorsTable"), dynamodb), Table(aws.name("TransitionsTable"), dynamodb)
            )
            for index in range(CONNECTORS):
                state = {"incident_id": "inc_01BENCH", "incident_status": "open", "level": "L3", "severity": "critical"}
                ledger.commit(f"connector-{index:02d}", state, expected_version=None)
        secret_name = f"{settings().provider_secrets_path}/generic"
        aws.client("secretsmanager").put_secret_value(
            SecretId=secret_name, SecretString=json.dumps({"signing_secret": SECRET})
        )
        handler = aws.load_handler(FUNCTION)
        context = aws.context(FUNCTION)

        probe_keys = [row["notification_id"] for row in rows]
        floor = bare_updates(dynamodb, table, probe_keys[: count // 2])

        requests: Counter[str] = Counter()

        def count_request(model: Any, **_kwargs: Any) -> None:
            requests[model.name] += 1

        dynamodb.meta.events.register("before-call.dynamodb", count_request)
        latencies = []
        statuses: Counter[int] = Counter()
        etas_recorded = 0
        soon = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
        with contextlib.redirect_stdout(io.StringIO()):
            for index, row in enumerate(rows):
                eta = to_iso(soon + timedelta(seconds=index)) if args.eta else None
                event = signed_event(row, aws.functions, eta=eta)
                started = time.perf_counter()
                response = handler.lambda_handler(event, context)
                latencies.append(time.perf_counter() - started)
                statuses[response["statusCode"]] += 1
                etas_recorded += bool(json.loads(response["body"]).get("eta_recorded"))
        dynamodb.meta.events.unregister("before-call.dynamodb", count_request)
        floor += bare_updates(dynamodb, table, probe_keys[count // 2 :])

    per_callback = sum(requests.values()) / count
    handler_p50, handler_p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    floor_p50, floor_p99 = percentile(floor, 0.50), percentile(floor, 0.99)
    snapshots = "kept" if args.moto_snapshots else "off"
    print(f"callbacks: {count} (answers: {dict(sorted(statuses.items()))}; moto transaction snapshots {snapshots})")
    if args.eta:
        print(f"recovery ETAs recorded: {etas_recorded} of {count}")
    print(
        f"dynamodb requests per callback: {per_callback:.2f} (goal <= {REQUEST_GOAL}) {dict(sorted(requests.items()))}"
    )
    print(f"handler latency ms: p50 {handler_p50 * 1000:.2f}  p99 {handler_p99 * 1000:.2f}")
    print(f"bare UpdateItem ms: p50 {floor_p50 * 1000:.2f}  p99 {floor_p99 * 1000:.2f}  ({len(floor)} samples)")
    print(f"ratio to bare UpdateItem: p50 {handler_p50 / floor_p50:.2f}  p99 {handler_p99 / floor_p99:.2f}")
    complete = etas_recorded == count if args.eta else True
    return 0 if per_callback <= REQUEST_GOAL and set(statuses) == {200} and len(requests) == 3 and complete else 1


if __name__ == "__main__":
    sys.exit(main())
