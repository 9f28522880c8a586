"""Replay throughput against moto: requests per replayed row, and rows per second next to bare batch writes.

One process, in-process moto built from template.yaml. N dead-letter rows of one connector are first written with
bare BatchWriteItem calls (25 rows a request): that is the baseline, timed. Then a real replay job (a filter
replay of every row, started through the API's service) runs in the real worker to the connector's replay target,
timed, with every AWS request it makes counted. Afterwards the run is checked: every row replayed, counted, and
(for an SQS target) published exactly once.

moto keeps a rollback copy of the whole table for every action of a TransactWriteItems (the cost grows with table
size x actions; DynamoDB has no such cost). By default that copy is skipped, which is only sound while no
transaction is cancelled: the script aborts if one is. ``--moto-rollback-copies`` keeps moto as it is (use a few
hundred rows: it grows quadratically).

The default target is the connector's EventBridge bus: moto's FIFO queue gets slower with every message it holds
(measured: 1,000 rows took 53 s to the queue; 10,000 took 96 s to the bus), which would measure moto, not the
worker.

Run: ``.venv/bin/python benchmarks/replay.py [--rows 10000] [--target eventbridge|sqs]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "core")]
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",  # moto's fake credentials
    AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1",
    POWERTOOLS_TRACE_DISABLED="true",
    POWERTOOLS_LOG_LEVEL="WARNING",
    POWERTOOLS_METRICS_NAMESPACE="ConnectorSlaBenchmark",
)
os.environ.pop("AWS_ENDPOINT_URL", None)

from connector_sla.ids import new_id  # noqa: E402
from connector_sla.replay.models import ReplayRequest  # noqa: E402
from connector_sla.replay.payloads import payload_sha256, payload_text  # noqa: E402
from connector_sla.replay.rules import new_failure_row  # noqa: E402
from connector_sla.replay.service import FailuresService  # noqa: E402
from connector_sla.replay.worker import ReplayWorker  # noqa: E402
from connector_sla.storage.aws import client  # noqa: E402
from connector_sla.storage.dynamo import Table, to_item  # noqa: E402
from connector_sla.timeutil import utcnow  # noqa: E402
from tests.support import moto_stack  # noqa: E402

CONNECTOR = "orders-postgres"


class _NoLauncher:
    def launch(self, replay_id: str) -> None:
        """The benchmark runs the worker itself."""


class _Context:
    aws_request_id = "benchmark"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:benchmark"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


class _TableCopySkipped:
    """Stands in for moto's ``copy`` module: tables are not copied, anything else is."""

    def __init__(self, real: Any, table_class: type) -> None:
        self.real = real
        self.table_class = table_class

    def deepcopy(self, value: Any, *args: Any) -> Any:
        return value if isinstance(value, self.table_class) else self.real.deepcopy(value, *args)


def skip_moto_rollback_copies() -> None:
    import copy  # noqa: PLC0415

    import moto.dynamodb.models as models  # noqa: PLC0415
    from moto.dynamodb.exceptions import TransactionCanceledException  # noqa: PLC0415

    models.copy = _TableCopySkipped(copy, models.Table)  # type: ignore[assignment]
    original = models.DynamoDBBackend.transact_write_items

    def transact_without_rollback_copy(self: Any, transact_items: Any) -> None:
        try:
            original(self, transact_items)
        except TransactionCanceledException:
            print("a transaction was cancelled: without moto's rollback copy the figures are not valid; aborting")
            raise SystemExit(2) from None

    models.DynamoDBBackend.transact_write_items = transact_without_rollback_copy


def count_requests(services: tuple[str, ...]) -> Counter[str]:
    calls: Counter[str] = Counter()

    def counted(model: Any, **_: Any) -> None:
        calls[f"{model.service_model.service_name}:{model.name}"] += 1

    for service in services:
        client(service).meta.events.register("before-call", counted)
    return calls


def rows_for(count: int) -> list[dict[str, Any]]:
    now = utcnow()
    rows = []
    for number in range(count):
        payload = {"order_id": f"A-{number}", "amount": "12,50", "currency": "EUR", "lines": [{"sku": "X", "qty": 1}]}
        rows.append(
            new_failure_row(
                failure_id=new_id("flr"),
                connector_id=CONNECTOR,
                source_id="pg-primary",
                error_kind="parse",
                error_message="unexpected token at offset 17",
                retry_count=2,
                payload_json=payload_text(payload),
                payload_hash=payload_sha256(payload),
                now=now,
                actor="benchmark",
            )
        )
    return rows


def bare_batch_writes(dynamodb: Any, table: str, rows: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    for start in range(0, len(rows), 25):
        requests = {table: [{"PutRequest": {"Item": to_item(row)}} for row in rows[start : start + 25]]}
        while requests:
            requests = dynamodb.batch_write_item(RequestItems=requests).get("UnprocessedItems") or {}
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--target", choices=("sqs", "eventbridge"), default="eventbridge")
    parser.add_argument("--moto-rollback-copies", action="store_true", help="keep moto's per-action table copies")
    args = parser.parse_args()
    if not args.moto_rollback_copies:
        skip_moto_rollback_copies()

    with moto_stack() as aws:
        dynamodb = aws.client("dynamodb")
        target_arn = aws.arn("ReplayQueue" if args.target == "sqs" else "ReplayBus")
        Table(aws.name("ConnectorsTable"), dynamodb).put(
            {
                "pk": CONNECTOR,
                "sk": "CONFIG",
                "name": "Orders",
                "owner_team": "data-platform",
                "sources": [{"source_id": "pg-primary", "name": "primary"}],
                "replay_target": {"kind": args.target, "arn": target_arn},
            }
        )
        Table(aws.name("ConnectorsTable"), dynamodb).put(
            {"pk": CONNECTOR, "sk": "COUNTERS", "dead_letter_total": args.rows, "pending_replay": args.rows}
        )
        rows = rows_for(args.rows)
        bare_seconds = bare_batch_writes(dynamodb, aws.name("FailuresTable"), rows)

        service = FailuresService.from_settings()
        service.launcher = _NoLauncher()  # type: ignore[assignment]
        request = ReplayRequest(connector_id=CONNECTOR, filter={})  # type: ignore[arg-type]
        job = service.replay(request, actor="benchmark", now=utcnow())
        worker = ReplayWorker.from_settings()
        calls = count_requests(("dynamodb", "events", "sqs", "lambda"))

        started = time.perf_counter()
        summary = worker.run(job.replay_id, _Context())
        replay_seconds = time.perf_counter() - started

        requests = sum(calls.values())
        counters = service.store.counters(CONNECTOR)
        published = Counter[str]()
        if args.target == "sqs":
            sqs = aws.client("sqs")
            receive = {
                "QueueUrl": aws.name("ReplayQueue"),
                "MaxNumberOfMessages": 10,
                "MessageAttributeNames": ["All"],
                "VisibilityTimeout": 3600,
            }
            while batch := sqs.receive_message(**receive).get("Messages", []):
                published.update(message["MessageAttributes"]["replay_key"]["StringValue"] for message in batch)
                # Deleted as a consumer does: the FIFO queue holds a group's next messages back until then.
                entries = [{"Id": str(n), "ReceiptHandle": message["ReceiptHandle"]} for n, message in enumerate(batch)]
                sqs.delete_message_batch(QueueUrl=receive["QueueUrl"], Entries=entries)
        checks = {
            "job succeeded": summary.status == "succeeded",
            "every row recorded replayed": summary.replayed == args.rows,
            "counters": counters == {"dead_letter_total": args.rows, "pending_replay": 0, "replayed_total": args.rows},
            "published exactly once": args.target != "sqs"
            or (len(published) == args.rows and set(published.values()) == {1}),
        }

    bare_rate = args.rows / bare_seconds
    replay_rate = args.rows / replay_seconds
    print(f"rows                          {args.rows} (target {args.target}, batches of {worker.tuning.batch_size})")
    moto_note = "kept" if args.moto_rollback_copies else "skipped (no transaction was cancelled)"
    print(f"moto rollback table copies    {moto_note}")
    print(f"bare batch writes             {bare_seconds:8.2f} s  {bare_rate:9.1f} rows/s")
    print(f"replay job                    {replay_seconds:8.2f} s  {replay_rate:9.1f} rows/s")
    print(f"replay rows/s vs bare writes  {replay_rate / bare_rate:8.3f}")
    print(f"requests                      {requests} ({', '.join(f'{k} {v}' for k, v in sorted(calls.items()))})")
    print(f"requests per replayed row     {requests / args.rows:8.3f}")
    for name, passed in checks.items():
        print(f"check: {name:<24}{'ok' if passed else 'FAILED'}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
