"""DynamoDB and SES requests per notification when the escalation function consumes the SLA state stream.

100 stream records (50 connectors: ``opened`` -> one on-call page, then ``escalated`` to L2 -> two emails) reach the
real handler on in-process moto, in batches of 10 and of 100, against an empty NotificationsTable and one that
already holds 2,000 notifications of other incidents. A botocore event hook counts every API call the handler makes.
Goal: a constant number of requests per notification, whatever the batch size and the table size.

Run: ``.venv/bin/python benchmarks/escalation.py``
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import socket
import sys
import threading
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "core")]
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1",
    AWS_ACCOUNT_ID_ENDPOINT_MODE="disabled",
    POWERTOOLS_TRACE_DISABLED="true",
    POWERTOOLS_METRICS_NAMESPACE="ConnectorSlaBench",
    POWERTOOLS_SERVICE_NAME="connector-sla",
    POWERTOOLS_LOG_LEVEL="ERROR",
)
os.environ.pop("AWS_ENDPOINT_URL", None)
warnings.filterwarnings("ignore", message="No application metrics to publish")

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402
from werkzeug.serving import WSGIRequestHandler, make_server  # noqa: E402

from connector_sla.config import settings  # noqa: E402
from connector_sla.ids import new_id  # noqa: E402
from connector_sla.sla.ledger import StateLedger  # noqa: E402
from connector_sla.storage import aws as shared_clients  # noqa: E402
from connector_sla.storage.dynamo import Table, to_item  # noqa: E402
from connector_sla.timeutil import day_of, to_iso, utcnow  # noqa: E402
from devstack.fake_provider import FakeProvider  # noqa: E402
from devstack.functions import LambdaContext, handler_module_path, read_functions  # noqa: E402
from devstack.resources import create_resources  # noqa: E402
from devstack.streams import to_lambda_record  # noqa: E402
from devstack.template import Template  # noqa: E402

CONNECTORS = 50
SIGNALS = {"freshness_lag": {"status": "critical", "value": 1000, "warning": 300, "critical": 900}}


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *_: Any) -> None:
        return


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stream_records(ledger: StateLedger, streams: Any, stream_arn: str) -> list[dict[str, Any]]:
    """Commit an opened and an escalated state per connector; return the 100 STATE records of the stream."""
    for index in range(CONNECTORS):
        connector_id = f"bench-{index:03d}"
        incident_id = new_id("inc")
        version = None
        for kind, level in (("opened", "L1"), ("escalated", "L2")):
            now = utcnow()
            state = {
                "connector_name": connector_id,
                "owner_team": "bench",
                "severity": "critical",
                "level": level,
                "incident_id": incident_id,
                "incident_status": "open",
                "signals": SIGNALS,
            }
            transition = {
                "transition_id": new_id("trn"),
                "kind": kind,
                "at": to_iso(now),
                "day": day_of(now),
                "incident_id": incident_id,
                "from_level": "none" if level == "L1" else "L1",
                "to_level": level,
                "signals": SIGNALS,
            }
            current = ledger.read(connector_id)
            if current:
                state = {**current, **state}
                version = current["version"]
            ledger.commit(connector_id, state, expected_version=version, transition=transition)
    shard = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"][0]
    iterator = streams.get_shard_iterator(
        StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = streams.get_records(ShardIterator=iterator, Limit=1000)["Records"]
    shaped = [to_lambda_record(record, stream_arn, "us-east-1") for record in records]
    return [record for record in shaped if record["dynamodb"]["Keys"]["sk"]["S"] == "STATE"]


def fill_notifications(dynamodb: Any, table: str, count: int) -> None:
    """``count`` notifications of other incidents, so the table is not empty."""
    now = utcnow()
    for start in range(0, count, 25):
        items = [
            {
                "PutRequest": {
                    "Item": to_item(
                        {
                            "notification_id": f"ntf_FILL{index:022d}",
                            "incident_id": f"inc_FILL{index // 3:022d}",
                            "connector_id": f"old-{index % 400}",
                            "created_at": to_iso(now),
                            "day": day_of(now),
                            "kind": "alert",
                            "ack_state": "closed",
                            "delivery_status": "sent",
                        }
                    )
                }
            }
            for index in range(start, min(start + 25, count))
        ]
        dynamodb.batch_write_item(RequestItems={table: items})


def run(batch_size: int, table_rows: int) -> dict[str, Any]:
    """One measurement in a fresh moto: the handler's requests for 100 records in batches of ``batch_size``."""
    template = Template.load(ROOT / "template.yaml")
    with mock_aws():
        create_resources(template, lambda service: boto3.client(service, region_name="us-east-1"))
        functions = read_functions(template)
        for key, value in functions["EscalationFunction"].environment.items():
            os.environ[key] = value
        os.environ["POWERTOOLS_LOG_LEVEL"] = "ERROR"
        secret_name = f"{template.parameters['ProviderSecretsPath']}/{template.parameters['OncallProviderName']}"
        port = free_port()
        provider = FakeProvider(secret=lambda: "bench", callback_url="http://127.0.0.1:1/", log=lambda _: None)
        server = make_server("127.0.0.1", port, provider, threaded=True, request_handler=_QuietHandler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        os.environ.update(
            ONCALL_WEBHOOK_URL=f"http://127.0.0.1:{port}/webhook/generic",
            OUTBOUND_ALLOWED_LOCAL_TARGETS=f"127.0.0.1:{port}",
        )
        settings.cache_clear()
        shared_clients.client.cache_clear()
        try:
            dynamodb = shared_clients.client("dynamodb")
            boto3.client("secretsmanager", region_name="us-east-1").put_secret_value(
                SecretId=secret_name, SecretString='{"signing_secret": "bench"}'
            )
            config = settings()
            ledger = StateLedger(Table(config.connectors_table, dynamodb), Table(config.transitions_table, dynamodb))
            stream_arn = dynamodb.describe_table(TableName=config.connectors_table)["Table"]["LatestStreamArn"]
            records = stream_records(ledger, boto3.client("dynamodbstreams", region_name="us-east-1"), stream_arn)
            fill_notifications(dynamodb, config.notifications_table, table_rows)

            path, _ = handler_module_path(functions["EscalationFunction"])
            module_spec = importlib.util.spec_from_file_location(f"bench_escalation_{batch_size}_{table_rows}", path)
            assert module_spec is not None and module_spec.loader is not None
            handler = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(handler)

            calls: Counter[str] = Counter()

            def count(event_name: str, **_: Any) -> None:
                calls[event_name.split(".")[1] + "." + event_name.split(".")[2]] += 1

            shared_clients.client("dynamodb").meta.events.register("before-call.dynamodb", count)
            shared_clients.client("ses").meta.events.register("before-call.ses", count)
            batches = 0
            for start in range(0, len(records), batch_size):
                context = LambdaContext(functions["EscalationFunction"], deadline=time.monotonic() + 120)
                with contextlib.redirect_stdout(io.StringIO()):  # the handler's metrics, not the figures
                    result = handler.lambda_handler({"Records": records[start : start + batch_size]}, context)
                assert result == {"batchItemFailures": []}, result
                batches += 1
            shared_clients.client("dynamodb").meta.events.unregister("before-call.dynamodb", count)
            pages = dynamodb.get_paginator("scan").paginate(TableName=config.notifications_table, Select="COUNT")
            notifications = sum(page["Count"] for page in pages) - table_rows
        finally:
            server.shutdown()
            thread.join(timeout=5)
    dynamo = sum(value for key, value in calls.items() if key.startswith("dynamodb"))
    ses = sum(value for key, value in calls.items() if key.startswith("ses"))
    per_batch = calls["dynamodb.BatchGetItem"] + calls["dynamodb.Query"]
    return {
        "batch_size": batch_size,
        "table_rows": table_rows,
        "records": len(records),
        "batches": batches,
        "notifications": notifications,
        "dynamodb": dynamo,
        "ses": ses,
        "per_batch": per_batch,
        "calls": dict(sorted(calls.items())),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table-rows", type=int, default=2000, help="notifications already in the larger table")
    args = parser.parse_args()
    results = [run(batch, rows) for rows in (0, args.table_rows) for batch in (10, 100)]
    print("escalation: requests made by the handler for 100 stream records (50 on-call pages + 100 emails)")
    print(
        f"{'batch':>5} {'table rows':>10} {'notifs':>6} {'dynamodb':>8} {'ses':>4} "
        f"{'ddb/notif':>9} {'ses/notif':>9} {'per-batch reads':>15} {'ddb/notif w/o per-batch':>23}"
    )
    for result in results:
        notifications = result["notifications"]
        print(
            f"{result['batch_size']:>5} {result['table_rows']:>10} {notifications:>6} {result['dynamodb']:>8} "
            f"{result['ses']:>4} {result['dynamodb'] / notifications:>9.2f} {result['ses'] / notifications:>9.2f} "
            f"{result['per_batch']:>15} {(result['dynamodb'] - result['per_batch']) / notifications:>23.2f}"
        )
    print("calls by operation:")
    for result in results:
        print(f"  batch {result['batch_size']:>3}, table rows {result['table_rows']:>5}: {result['calls']}")
    steady = {round((r["dynamodb"] - r["per_batch"]) / r["notifications"], 4) for r in results}
    print(f"per-notification DynamoDB requests (without the per-batch chain and window reads): {sorted(steady)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
