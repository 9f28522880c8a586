"""Peak memory of an evidence export of 10,000 and of 100,000 records, and their ratio (goal: at most 1.3).

moto's server runs in a process of its own with every resource of template.yaml; the records (sealed chains of
transitions, deliveries and callbacks, plus notifications and job runs) are written to it in two separate time
ranges. Each export then runs in a fresh process through the export function's own code path (the by-day reads,
the streamed zip, the chain verification in SQLite on /tmp, the multipart upload), which reports:

- traced peak: the largest Python heap the export used (tracemalloc, started just before the export);
- RSS growth: how far the process's peak resident memory rose during the export (Linux, /proc/self/status);
- peak RSS: the process's peak resident memory, imports included.

Run: ``.venv/bin/python benchmarks/export.py [--sizes 10000,100000]`` (about two minutes for the default sizes).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import tracemalloc
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "core")]
for _name, _value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
    os.environ.setdefault(_name, _value)  # moto's fake credentials; nothing leaves this machine
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

import boto3  # noqa: E402

from connector_sla.evidence.chain import ChainHead  # noqa: E402
from connector_sla.evidence.export import ExportQuery, new_export_item  # noqa: E402
from connector_sla.evidence.service import EvidenceExporter  # noqa: E402
from connector_sla.storage.dynamo import to_item  # noqa: E402
from connector_sla.timeutil import day_of, to_iso  # noqa: E402
from devstack.functions import read_functions  # noqa: E402
from devstack.resources import create_resources as create  # noqa: E402
from devstack.template import Template  # noqa: E402

GOAL = 1.3
# Share of each kind of record in an export, roughly as a busy service produces them.
MIX = {"transitions": 0.2, "deliveries": 0.3, "callbacks": 0.25, "notifications": 0.2, "job_runs": 0.05}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_moto(port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1)
        except OSError:
            time.sleep(0.1)
        else:
            return server
    server.kill()
    raise RuntimeError("moto server did not start")


def environment(endpoint: str) -> dict[str, str]:
    template = Template.load(ROOT / "template.yaml")
    spec = read_functions(template)["EvidenceExportFunction"]
    return {
        **spec.environment,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_METRICS_NAMESPACE": "ConnectorSlaBenchmark",
    }


def create_resources(endpoint: str) -> dict[str, str]:
    template = Template.load(ROOT / "template.yaml")

    def client(service: str):
        return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1")

    create(template, client)
    bucket = str(template.attribute("EvidenceBucket", "Ref"))
    # moto applies the TLS-only deny without evaluating its condition; this server is plain HTTP on loopback.
    client("s3").delete_bucket_policy(Bucket=bucket)
    return {logical: str(template.attribute(logical, "Ref")) for logical in template.of_type("AWS::DynamoDB::Table")}


def generate(total: int, start: datetime, span: timedelta, tag: str):
    """Sealed records of every kind, spread evenly over ``[start, start + span)``: (table, item) pairs."""
    counts = {kind: int(total * share) for kind, share in MIX.items()}
    counts["transitions"] += total - sum(counts.values())
    for kind, count in counts.items():
        step = span / max(count, 1)
        heads: dict[str, ChainHead] = {}
        for index in range(count):
            moment = start + step * index
            at, day = to_iso(moment), day_of(moment)
            connector = f"{tag}-connector-{index % 50}"
            notification = f"ntf_{tag}{index // 4:022d}"
            if kind == "transitions":
                chain, table = f"transitions:{connector}", "TransitionsTable"
                head = heads.get(chain, ChainHead())
                record = {"connector_id": connector, "seq": head.seq + 1, "transition_id": f"trn_{tag}_{index}",
                          "kind": "severity_changed", "at": at, "day": day, "incident_id": f"inc_{tag}{index % 400}",
                          "from_level": "L1", "to_level": "L1", "from_severity": "warning", "to_severity": "critical",
                          "signals": {"freshness_lag": {"status": "critical", "value": index % 5000}},
                          "reason": "freshness lag above the critical threshold", "tick": at}  # fmt: skip
            elif kind == "deliveries":
                chain, table = f"deliveries:{notification}", "DeliveriesTable"
                head = heads.get(chain, ChainHead())
                record = {"notification_id": notification, "attempt": head.seq + 1,
                          "delivery_id": f"dlv_{notification[4:]}_{head.seq + 1}", "incident_id": f"inc_{tag}",
                          "connector_id": connector, "level": "L2", "channel": "email",
                          "target": "risk-owner@example.com", "status": "sent", "response_code": 200,
                          "latency_ms": 80 + index % 40, "at": at, "day": day}  # fmt: skip
            elif kind == "callbacks":
                chain, table = f"callbacks:{notification}", "CallbacksTable"
                head = heads.get(chain, ChainHead())
                record = {"callback_id": f"cbk_{tag}_{index}", "provider": "generic", "source": "callback",
                          "received_at": at, "day": day, "status": "acknowledged", "raw_status": "acknowledged",
                          "notification_id": notification, "incident_id": f"inc_{tag}", "connector_id": connector,
                          "matched": True, "signature": "verified", "ack_applied": index % 4 == 0}  # fmt: skip
            elif kind == "notifications":
                yield "NotificationsTable", {
                    "notification_id": f"ntf_{tag}n{index:021d}", "incident_id": f"inc_{tag}",
                    "connector_id": connector, "level": "L1", "kind": "alert", "channel": "oncall",
                    "target": "generic", "summary": f"{connector} is late", "ack_state": "acknowledged",
                    "delivery_status": "sent", "created_at": at, "updated_at": at, "day": day, "version": 2,
                }  # fmt: skip
                continue
            else:
                yield "JobsTable", {
                    "pk": f"job_{tag}", "sk": f"RUN#{at}#run_{tag}_{index}", "kind": "job_run", "created_at": at,
                    "run_id": f"run_{tag}_{index}", "job_id": f"job_{tag}", "job_type": "alert_oncall_reconcile",
                    "status": "succeeded", "dry_run": False, "started_at": at, "finished_at": at,
                    "counts": {"fetched": 10, "matched": 9, "updated": 1, "unmatched": 1, "errors": 0},
                }  # fmt: skip
                continue
            sealed = head.next(record, chain)
            heads[chain] = ChainHead(sealed["chain_seq"], sealed["record_hash"])
            yield table, sealed


def seed(endpoint: str, tables: dict[str, str], records) -> int:
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    batches: dict[str, list] = {}
    written = 0

    def flush(table: str) -> None:
        request = {tables[table]: [{"PutRequest": {"Item": to_item(item)}} for item in batches.pop(table)]}
        while request:
            request = dynamodb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}

    for table, item in records:
        batches.setdefault(table, []).append(item)
        written += 1
        if len(batches[table]) == 25:
            flush(table)
    for table in list(batches):
        flush(table)
    return written


def queue_export(endpoint: str, tables: dict[str, str], export_id: str, start: datetime, end: datetime) -> None:
    item = new_export_item(export_id, ExportQuery(start, end), actor="benchmark", now=datetime.now(UTC))
    boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1").put_item(
        TableName=tables["JobsTable"], Item=to_item(item)
    )


def run_child(export_id: str, env: dict[str, str]) -> dict:
    completed = subprocess.run(
        [sys.executable, __file__, "--child", export_id],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(completed.stderr[-3000:])
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def child(export_id: str) -> int:
    """Runs one export in this fresh process and prints what it measured as one JSON line."""
    exporter = EvidenceExporter.from_settings()
    # Start the peak-RSS counter afresh (Linux: writing 5 to clear_refs resets VmHWM).
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    rss_before = _status_kib("VmRSS")
    tracemalloc.start()
    started = time.perf_counter()
    outcome = exporter.run(export_id, now=datetime.now(UTC))
    seconds = time.perf_counter() - started
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak_rss = _status_kib("VmHWM")
    print(
        json.dumps(
            {
                **outcome,
                "seconds": seconds,
                "traced_peak": traced_peak,
                "rss_growth_kib": (peak_rss - rss_before) if peak_rss and rss_before else None,
                "peak_rss_kib": peak_rss,
            }
        )
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated record counts")
    parser.add_argument("--child", metavar="EXPORT_ID", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)

    sizes = [int(size) for size in args.sizes.split(",")]
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = start_moto(port)
    try:
        tables = create_resources(endpoint)
        env = environment(endpoint)
        base = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=40)
        plans = []
        for index, size in enumerate(sizes):
            start = base + timedelta(days=10 * index)
            started = time.perf_counter()
            written = seed(endpoint, tables, generate(size, start, timedelta(days=3), f"s{index}"))
            export_id = f"exp_{'BENCH':0<10}{index:016d}"
            queue_export(endpoint, tables, export_id, start, start + timedelta(days=3))
            print(f"seeded {written} records in {time.perf_counter() - started:.1f} s", flush=True)
            plans.append((size, export_id))
        results = [(size, run_child(export_id, env)) for size, export_id in plans]
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()

    mib = 1024 * 1024
    print(f"python {sys.version.split()[0]}, moto server in its own process, each export in a fresh process")
    print(f"{'records':>8s} {'status':>10s} {'seconds':>8s} {'bundle MiB':>10s} {'traced peak MiB':>15s}"
          f" {'RSS growth MiB':>14s} {'peak RSS MiB':>12s}")  # fmt: skip
    for size, result in results:
        growth = result["rss_growth_kib"] / 1024 if result["rss_growth_kib"] is not None else float("nan")
        peak = result["peak_rss_kib"] / 1024 if result["peak_rss_kib"] else float("nan")
        print(
            f"{result['records']:>8d} {result['status']:>10s} {result['seconds']:>8.1f} {result['bytes'] / mib:>10.2f}"
            f" {result['traced_peak'] / mib:>15.2f} {growth:>14.2f} {peak:>12.1f}"
        )
        if result["records"] != size:
            print(f"warning: {size} records were seeded but {result['records']} exported")
    if len(results) >= 2:
        small, large = results[0][1], results[-1][1]
        traced = large["traced_peak"] / small["traced_peak"]
        print(f"traced peak ratio {large['records']}/{small['records']}: {traced:.2f} (goal <= {GOAL})")
        if small["rss_growth_kib"] and large["rss_growth_kib"]:
            rss = large["rss_growth_kib"] / small["rss_growth_kib"]
            print(f"RSS growth ratio: {rss:.2f}; peak RSS ratio: {large['peak_rss_kib'] / small['peak_rss_kib']:.2f}")
        print("ok" if traced <= GOAL else "OVER the goal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
