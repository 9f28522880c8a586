"""What the escalation tests share: SLA states committed through the real StateLedger, the table's stream read from
moto in Lambda's record shape, the real handlers, and the local fake on-call provider on 127.0.0.1.

The one test here checks the stream reader itself, so the scenario tests can trust it.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from connector_sla.config import settings
from connector_sla.ids import new_id
from connector_sla.sla.ledger import StateLedger
from connector_sla.storage.aws import client
from connector_sla.storage.dynamo import Expression, Table
from connector_sla.timeutil import day_of, to_iso
from devstack.fake_provider import FakeProvider
from devstack.functions import LambdaContext
from devstack.streams import to_lambda_record
from tests.support import call_api

SIGNALS_WARNING = {
    "freshness_lag": {"status": "warning", "value": 420, "warning": 300, "critical": 900},
    "pending_replay": {"status": "ok", "value": 3, "warning": 100, "critical": 1000},
    "dead_letter_growth": {"status": "ok", "value": 0, "warning": 10, "critical": 50},
}
SIGNALS_CRITICAL = {**SIGNALS_WARNING, "freshness_lag": {**SIGNALS_WARNING["freshness_lag"], "status": "critical"}}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ProviderServer:
    """The local stack's fake on-call provider, served on a free loopback port."""

    def __init__(self, secret: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.logs: list[str] = []
        self.provider = FakeProvider(secret=secret, callback_url=f"{self.url}/nowhere", log=self.logs.append)
        self.server = make_server("127.0.0.1", self.port, self.provider, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ProviderServer:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)

    def received(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [item for item in self.provider.received if kind is None or item["kind"] == kind]

    def fail_next(self, count: int, status: int = 503) -> None:
        self.provider._fail_next = count
        self.provider._fail_status = status


class CallbackRelay:
    """Forwards what reaches it over HTTP to the real on-call callback handler, as the local gateway would: the
    fake provider's signed ACK callbacks arrive through the same route a real provider calls."""

    def __init__(self, aws: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/alerts/oncall/callback"
        self.answers: list[tuple[int, Any]] = []
        handler = aws.load_handler("OncallCallbackFunction")

        def relay(environ: dict[str, Any], start_response: Any) -> Any:
            request = Request(environ)
            headers = {key: value for key, value in request.headers.items() if key.lower().startswith("x-")}
            status, body = call_api(
                aws,
                handler,
                "OncallCallbackFunction",
                "POST",
                request.path,
                raw_body=request.get_data(),
                query=dict(request.args),
                headers=headers,
            )
            self.answers.append((status, body))
            return Response(json.dumps(body), status=status, content_type="application/json")(environ, start_response)

        self.server = make_server("127.0.0.1", self.port, relay, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> CallbackRelay:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)


@dataclass
class Scenario:
    """One connector's SLA life, driven through the real ledger, stream and handlers."""

    aws: Any
    provider: ProviderServer
    ledger: StateLedger
    escalation: Any = None
    timer: Any = None
    alerts_api: Any = None
    escalation_api: Any = None
    _iterator: str | None = None
    stream_records: list[dict[str, Any]] = field(default_factory=list)

    # ------------------------------------------------------------------------------------------ SLA states

    def commit(
        self,
        connector_id: str,
        kind: str,
        *,
        level: str,
        severity: str = "warning",
        incident_id: str | None = None,
        status: str = "open",
        at: datetime | None = None,
        signals: dict[str, Any] | None = None,
        owner_team: str = "payments-data",
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Commit a state (and its transition) as the evaluator would; returns the written row."""
        at = at or datetime.now(UTC)
        current = self.ledger.read(connector_id) or {}
        from_level = current.get("level", "none")
        state = {
            **{key: value for key, value in current.items() if key not in ("pk", "sk", "version")},
            "connector_name": f"Connector {connector_id}",
            "owner_team": owner_team,
            "severity": severity,
            "level": level,
            "incident_id": incident_id or current.get("incident_id"),
            "incident_status": status,
            "signals": signals or (SIGNALS_CRITICAL if severity == "critical" else SIGNALS_WARNING),
            **(extra or {}),
        }
        transition = {
            "transition_id": new_id("trn"),
            "kind": kind,
            "at": to_iso(at),
            "day": day_of(at),
            "incident_id": state["incident_id"],
            "from_level": from_level,
            "to_level": level,
            "from_severity": current.get("severity", "ok"),
            "to_severity": severity,
            "signals": state["signals"],
            "reason": f"test {kind}",
        }
        row, _ = self.ledger.commit(connector_id, state, expected_version=current.get("version"), transition=transition)
        return row

    def open_incident(self, connector_id: str, **kwargs: Any) -> str:
        incident_id = new_id("inc")
        self.commit(connector_id, "opened", level="L1", incident_id=incident_id, **kwargs)
        return incident_id

    def register_connector(self, connector_id: str, owner_team: str = "payments-data") -> None:
        table = Table(settings().connectors_table, client("dynamodb"))
        table.put({"pk": connector_id, "sk": "CONFIG", "name": connector_id, "owner_team": owner_team})

    # ------------------------------------------------------------------------------------------ stream and handlers

    def new_stream_records(self) -> list[dict[str, Any]]:
        """STATE-row records written to the stream since the last call, in Lambda's shape (the mapping's filter)."""
        streams = self.aws.client("dynamodbstreams")
        table = self.aws.client("dynamodb").describe_table(TableName=self.aws.name("ConnectorsTable"))["Table"]
        stream_arn = table["LatestStreamArn"]
        if self._iterator is None:
            shard = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"][0]
            self._iterator = streams.get_shard_iterator(
                StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
        response = streams.get_records(ShardIterator=self._iterator, Limit=1000)
        self._iterator = response["NextShardIterator"]
        records = [to_lambda_record(record, stream_arn, "us-east-1") for record in response.get("Records", [])]
        state_records = [record for record in records if record["dynamodb"]["Keys"]["sk"]["S"] == "STATE"]
        self.stream_records.extend(state_records)
        return state_records

    def deliver_stream(self, records: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Hand the new STATE records (or ``records``) to the escalation handler as one batch."""
        records = self.new_stream_records() if records is None else records
        if not records:
            return {"batchItemFailures": []}
        return self.escalation.lambda_handler({"Records": records}, context(self.aws, "EscalationFunction"))

    def tick(self, at: datetime) -> dict[str, Any]:
        """One scheduled tick of the escalation timer at ``at``."""
        event = {"version": "0", "id": new_id("evt"), "detail-type": "Scheduled Event", "source": "aws.events"}
        event.update(time=at.strftime("%Y-%m-%dT%H:%M:%SZ"), detail={})
        return self.timer.lambda_handler(event, context(self.aws, "EscalationTimerFunction"))

    def settle(self, at: datetime | None = None) -> None:
        """Deliver what the stream holds, then tick, until nothing new reaches the stream."""
        for _ in range(10):
            records = self.new_stream_records()
            if not records:
                return
            self.deliver_stream(records)
            if at is not None:
                self.tick(at)

    # ------------------------------------------------------------------------------------------ reading back

    def notifications(self, incident_id: str) -> list[dict[str, Any]]:
        table = Table(settings().notifications_table, client("dynamodb"))
        expr = Expression()
        condition = f"{expr.name('incident_id')} = {expr.value(incident_id)}"
        return list(table.query_all(expr, condition, index="ByIncident"))

    def notification(self, notification_id: str) -> dict[str, Any]:
        table = Table(settings().notifications_table, client("dynamodb"))
        item = table.get({"notification_id": notification_id}, consistent=True)
        assert item is not None
        return item

    def deliveries(self, notification_id: str) -> list[dict[str, Any]]:
        table = Table(settings().deliveries_table, client("dynamodb"))
        expr = Expression()
        condition = f"{expr.name('notification_id')} = {expr.value(notification_id)}"
        return list(table.query_all(expr, condition))

    def transitions(self, connector_id: str) -> list[dict[str, Any]]:
        table = Table(settings().transitions_table, client("dynamodb"))
        expr = Expression()
        condition = f"{expr.name('connector_id')} = {expr.value(connector_id)}"
        return list(table.query_all(expr, condition))

    def emails(self) -> list[Any]:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ses.models import ses_backends

        return list(ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages)


def context(aws: Any, logical_id: str) -> LambdaContext:
    """A Lambda context with a finite deadline, as Lambda gives (two minutes)."""
    return LambdaContext(aws.functions[logical_id], deadline=time.monotonic() + 120)


def read_secret(aws: Any) -> str:
    name = f"{aws.template.parameters['ProviderSecretsPath']}/{aws.template.parameters['OncallProviderName']}"
    document = json.loads(aws.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"])
    return str(document["signing_secret"])


@pytest.fixture
def scenario(aws):
    """moto, the fake provider as the default on-call provider and the bridge, and the three handlers loaded."""
    with ProviderServer(secret=lambda: read_secret(aws)) as provider:
        os.environ.update(
            ONCALL_WEBHOOK_URL=f"{provider.url}/webhook/generic",
            BRIDGE_WEBHOOK_URL=f"{provider.url}/bridge",
            OUTBOUND_ALLOWED_LOCAL_TARGETS=f"127.0.0.1:{provider.port}",
        )
        settings.cache_clear()
        dynamodb = client("dynamodb")
        ledger = StateLedger(
            Table(settings().connectors_table, dynamodb), Table(settings().transitions_table, dynamodb)
        )
        run = Scenario(aws=aws, provider=provider, ledger=ledger)
        run.escalation = aws.load_handler("EscalationFunction")
        run.timer = aws.load_handler("EscalationTimerFunction")
        run.alerts_api = aws.load_handler("AlertsApiFunction")
        run.escalation_api = aws.load_handler("EscalationApiFunction")
        yield run


def later(base: datetime, **delta: float) -> datetime:
    return base + timedelta(**delta)


def test_the_stream_reader_returns_only_new_state_rows_in_lambdas_shape(scenario):
    # Given a committed state and an unrelated CONFIG row
    scenario.register_connector("orders-db")
    incident_id = scenario.open_incident("orders-db")

    # When the stream is read twice
    first = scenario.new_stream_records()
    second = scenario.new_stream_records()

    # Then the first read holds the STATE row change (with its transition) and the second nothing new
    assert [record["dynamodb"]["Keys"]["sk"]["S"] for record in first] == ["STATE"] * len(first)
    assert first[-1]["dynamodb"]["NewImage"]["incident_id"]["S"] == incident_id
    assert first[-1]["eventSource"] == "aws:dynamodb" and "eventSourceARN" in first[-1]
    assert second == []
