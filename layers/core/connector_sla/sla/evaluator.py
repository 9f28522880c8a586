"""One evaluation pass over the connector fleet (or one shard of it) for one scheduled tick."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from connector_sla.config import settings
from connector_sla.sla.events import SlaEventPublisher, detail_type
from connector_sla.sla.ledger import StaleState, StateLedger
from connector_sla.sla.models import SlaPolicy
from connector_sla.sla.rules import ConnectorInputs, Decision, SourceProgress, Tick, decide
from connector_sla.sla.store import ConnectorRows, ConnectorStore
from connector_sla.storage.aws import client
from connector_sla.storage.dynamo import Item, Table
from connector_sla.timeutil import parse_iso

logger = Logger(child=True)

_PUBLISH_BATCH = 10


@dataclass
class PassReport:
    """What one pass did; the handler logs it and turns it into metrics."""

    tick_id: str
    segment: int
    total_segments: int
    connectors: int = 0
    changed: int = 0
    stale_retries: int = 0
    errors: int = 0
    events_published: int = 0
    transitions: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def as_log(self) -> dict[str, Any]:
        return {
            "tick_id": self.tick_id,
            "segment": self.segment,
            "total_segments": self.total_segments,
            "connectors": self.connectors,
            "changed": self.changed,
            "stale_retries": self.stale_retries,
            "errors": self.errors,
            "events_published": self.events_published,
            "transitions": dict(self.transitions),
            "seconds": round(self.seconds, 3),
        }


def record_pass(report: PassReport, metrics: Metrics) -> None:
    """Log a pass and turn its counts into metrics."""
    logger.info("evaluation pass finished", **report.as_log())
    metrics.add_metric(name="ConnectorsEvaluated", unit=MetricUnit.Count, value=report.connectors)
    metrics.add_metric(name="SlaStateChanges", unit=MetricUnit.Count, value=report.changed)
    metrics.add_metric(name="SlaEventsPublished", unit=MetricUnit.Count, value=report.events_published)
    metrics.add_metric(name="EvaluationErrors", unit=MetricUnit.Count, value=report.errors)
    metrics.add_metric(name="EvaluationPassSeconds", unit=MetricUnit.Seconds, value=report.seconds)
    for kind, count in report.transitions.items():
        metrics.add_metric(name=f"SlaTransition_{kind}", unit=MetricUnit.Count, value=count)


def inputs_from_rows(rows: ConnectorRows) -> ConnectorInputs:
    """The evaluation inputs of a connector from its CONFIG, PROGRESS and COUNTERS rows."""
    config = rows.config or {}
    progress = rows.progress or {}
    counters = rows.counters or {}
    sources = tuple(source["source_id"] for source in config.get("sources", []))
    reported = {
        source_id: SourceProgress(
            last_event_at=parse_iso(entry["last_event_at"]) if entry.get("last_event_at") else None,
            status=entry.get("status", "up"),
            checkpoint=entry.get("checkpoint"),
        )
        for source_id, entry in (progress.get("sources") or {}).items()
    }
    return ConnectorInputs(
        connector_id=rows.connector_id,
        name=config.get("name", rows.connector_id),
        owner_team=config.get("owner_team", ""),
        sources=sources,
        # The stored policy was validated when it was saved; construct it without validating it again.
        policy=SlaPolicy.model_construct(**config.get("policy", {})),
        registered_at=parse_iso(config["created_at"]),
        progress=reported,
        pending_replay=int(progress.get("reported_pending_replay") or 0) + int(counters.get("pending_replay") or 0),
        dead_letter_total=int(progress.get("reported_dead_letter_total") or 0)
        + int(counters.get("dead_letter_total") or 0),
    )


class Evaluator:
    """Decides every connector's state for a tick and records and announces the changes."""

    def __init__(self, store: ConnectorStore, ledger: StateLedger, publisher: SlaEventPublisher) -> None:
        self.store = store
        self.ledger = ledger
        self.publisher = publisher

    @classmethod
    def from_settings(cls) -> Evaluator:
        config = settings()
        dynamodb = client("dynamodb")
        connectors = Table(config.connectors_table, dynamodb)
        transitions = Table(config.transitions_table, dynamodb)
        publisher = SlaEventPublisher(client("events"), config.sla_event_bus, config.runbook_url)
        return cls(ConnectorStore(connectors), StateLedger(connectors, transitions), publisher)

    def run_pass(
        self,
        tick: Tick,
        now: Callable[[], datetime],
        *,
        segment: int = 0,
        total_segments: int = 1,
        flush_outbox: bool = True,
    ) -> PassReport:
        """Evaluate every connector of the segment for ``tick``; connectors whose state did not change cost no
        write. One connector's failure is logged and does not stop the pass."""
        started = time.perf_counter()
        report = PassReport(tick.tick_id, segment, total_segments)
        if flush_outbox:
            report.events_published += self.flush_outbox()
        unpublished: list[Item] = []
        for rows in self.store.scan_fleet(segment=segment, total_segments=total_segments):
            if rows.config is None:
                continue
            report.connectors += 1
            try:
                unpublished.extend(self._evaluate(rows, tick, now, report))
            except Exception:  # one connector's bad data or failed write must not stop the fleet's pass
                report.errors += 1
                logger.exception("connector evaluation failed", connector_id=rows.connector_id)
            if len(unpublished) >= _PUBLISH_BATCH:
                report.events_published += self._publish(unpublished)
                unpublished = []
        report.events_published += self._publish(unpublished)
        report.seconds = time.perf_counter() - started
        return report

    def _evaluate(self, rows: ConnectorRows, tick: Tick, now: Callable[[], datetime], report: PassReport) -> list[Item]:
        inputs = inputs_from_rows(rows)
        previous: Mapping[str, Any] | None = rows.state
        decision = decide(inputs, previous, tick, now())
        if not decision.changed:
            return []
        try:
            sealed = self._commit(inputs.connector_id, decision, previous)
        except StaleState:
            # Another writer won: read the row it wrote and decide again (a racing evaluator of the same tick
            # recorded this window already, so the second decision writes nothing).
            report.stale_retries += 1
            previous = self.ledger.read(inputs.connector_id)
            decision = decide(inputs, previous, tick, now())
            if not decision.changed:
                return []
            sealed = self._commit(inputs.connector_id, decision, previous)
        report.changed += 1
        for transition in sealed:
            report.transitions[transition["kind"]] += 1
            logger.info(
                "sla transition recorded",
                connector_id=inputs.connector_id,
                incident_id=transition.get("incident_id"),
                kind=transition["kind"],
                from_level=transition.get("from_level"),
                to_level=transition.get("to_level"),
                severity=transition.get("to_severity"),
            )
        return [transition for transition, flag in zip(sealed, decision.publish, strict=True) if flag]

    def _commit(self, connector_id: str, decision: Decision, previous: Mapping[str, Any] | None) -> list[Item]:
        expected = int(previous["version"]) if previous and "version" in previous else None
        _, sealed = self.ledger.commit_many(
            connector_id,
            decision.state,
            expected_version=expected,
            transitions=decision.transitions,
            publish=[
                flag and detail_type(transition) is not None
                for transition, flag in zip(decision.transitions, decision.publish, strict=True)
            ],
        )
        return sealed

    def _publish(self, transitions: list[Item]) -> int:
        announced = [transition for transition in transitions if detail_type(transition)]
        if not announced:
            return 0
        try:
            accepted = self.publisher.publish(announced)
        except Exception:  # the outbox keeps them and the next pass publishes them
            logger.exception("sla events not published; kept in the outbox", count=len(announced))
            return 0
        self.ledger.mark_published(list(accepted))
        return len(accepted)

    def flush_outbox(self) -> int:
        """Publish transitions whose events an earlier pass could not publish."""
        pending = self.ledger.pending_events()
        if pending:
            logger.info("publishing sla events left in the outbox", count=len(pending))
        return self._publish(pending)


def tick_from_event(event: Mapping[str, Any], now: datetime) -> Tick:
    """The tick of a scheduled event (its ``time``), a shard payload (``tick_id``), or a manual run."""
    tick_id = event.get("tick_id") or event.get("time")
    if isinstance(tick_id, str) and tick_id:
        return Tick(tick_id=tick_id, at=parse_iso(tick_id))
    return Tick(tick_id=f"manual-{now.isoformat()}", at=now)


class ShardDispatcher:
    """Fans one tick out to the shard evaluator, one asynchronous invocation per parallel-scan segment."""

    def __init__(self, lambda_client: Any, function_name: str) -> None:
        self.lambda_client = lambda_client
        self.function_name = function_name

    def dispatch(self, tick: Tick, total_segments: int) -> int:
        for segment in range(total_segments):
            payload = {"tick_id": tick.tick_id, "segment": segment, "total_segments": total_segments}
            self.lambda_client.invoke(
                FunctionName=self.function_name, InvocationType="Event", Payload=json.dumps(payload).encode()
            )
        return total_segments
