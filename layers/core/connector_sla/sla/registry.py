"""Registering connectors and recording what they report."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger

from connector_sla.config import settings
from connector_sla.errors import Conflict, NotFound, ValidationFailed
from connector_sla.sla.models import (
    MAX_CLOCK_SKEW_SECONDS,
    CheckpointAccepted,
    CheckpointReport,
    Connector,
    ConnectorSpec,
    check_connector_id,
)
from connector_sla.sla.store import ConcurrentUpdate, ConnectorStore
from connector_sla.timeutil import to_iso

logger = Logger(child=True)

_CHECKPOINT_ATTEMPTS = 3


def validate_connector_id(connector_id: str) -> str:
    """The id if it is a valid connector id; a 400 that says what is expected otherwise."""
    try:
        return check_connector_id(connector_id)
    except ValueError as error:
        raise ValidationFailed(str(error)) from error


def _check_replay_target(spec: ConnectorSpec) -> None:
    allowed = settings().replay_target_arns
    target = spec.replay_target
    if target is None:
        return
    if target.arn not in allowed:
        raise ValidationFailed(
            f"replay_target.arn {target.arn!r} is not a replay target of this deployment; allowed: {', '.join(allowed)}"
        )
    expected = "events" if target.kind == "eventbridge" else "sqs"
    if target.arn.split(":")[2:3] != [expected]:
        raise ValidationFailed(f"replay_target.kind {target.kind!r} does not match the ARN {target.arn!r}")


def _check_payload_schema(spec: ConnectorSpec) -> None:
    if spec.payload_schema is None:
        return
    # jsonschema is only needed when a schema is given: keep it off the cold path of every other request.
    from jsonschema import SchemaError  # noqa: PLC0415
    from jsonschema.validators import validator_for  # noqa: PLC0415

    try:
        validator_for(spec.payload_schema).check_schema(spec.payload_schema)
    except SchemaError as error:
        raise ValidationFailed(f"payload_schema is not a valid JSON Schema: {error.message}") from error


class ConnectorRegistry:
    """Use cases of the registry routes."""

    def __init__(self, store: ConnectorStore) -> None:
        self.store = store

    def save(self, connector_id: str, spec: ConnectorSpec, now: datetime) -> tuple[Connector, bool]:
        """Create or update a connector and its policy; returns it and whether it was created."""
        validate_connector_id(connector_id)
        _check_replay_target(spec)
        _check_payload_schema(spec)
        existing = self.store.get_rows(connector_id).config
        version = int(existing["config_version"]) if existing else None
        record = {
            "connector_id": connector_id,
            **spec.model_dump(mode="json"),
            "created_at": existing["created_at"] if existing else to_iso(now),
            "updated_at": to_iso(now),
            "config_version": (version or 0) + 1,
        }
        try:
            self.store.save_config(record, expected_version=version)
        except ConcurrentUpdate as error:
            raise Conflict(
                f"connector {connector_id} was changed by another request at the same time; send the update again"
            ) from error
        logger.info(
            "connector saved", connector_id=connector_id, new_connector=existing is None, config_version=version
        )
        return Connector.model_validate(record), existing is None

    def get(self, connector_id: str) -> tuple[Connector, dict[str, Any] | None]:
        rows = self.store.get_rows(validate_connector_id(connector_id))
        if rows.config is None:
            raise NotFound(
                f"connector {connector_id} is not registered; register it with PUT /events/connectors/{{id}}"
            )
        return Connector.model_validate(rows.config), rows.state

    def report(self, connector_id: str, report: CheckpointReport, now: datetime) -> CheckpointAccepted:
        """Record a checkpoint report; an unknown connector or source, or a time in the future, is refused.

        Reports of the same connector that race are merged (read, apply, conditional write, retried).
        """
        validate_connector_id(connector_id)
        for _ in range(_CHECKPOINT_ATTEMPTS):
            rows = self.store.get_rows(connector_id)
            if rows.config is None:
                raise NotFound(
                    f"connector {connector_id} is not registered; register it with PUT /events/connectors/{{id}}"
                )
            _check_report(connector_id, report, rows.config, now)
            progress, revision = _apply_report(rows.progress, report, to_iso(now))
            try:
                self.store.save_progress(connector_id, progress, expected_revision=revision)
            except ConcurrentUpdate:
                continue
            return CheckpointAccepted(
                connector_id=connector_id,
                received_at=progress["reported_at"],
                sources=[source.source_id for source in report.sources],
            )
        raise Conflict(f"checkpoints of {connector_id} are being reported concurrently; send this one again")


def _check_report(connector_id: str, report: CheckpointReport, config: dict[str, Any], now: datetime) -> None:
    known = [source["source_id"] for source in config.get("sources", [])]
    unknown = [source.source_id for source in report.sources if source.source_id not in known]
    if unknown:
        raise ValidationFailed(
            f"unknown source_id {', '.join(unknown)} for connector {connector_id}; its sources are {', '.join(known)}"
        )
    latest = now + timedelta(seconds=MAX_CLOCK_SKEW_SECONDS)
    future = [source.source_id for source in report.sources if source.last_event_at > latest]
    if future:
        raise ValidationFailed(
            f"last_event_at of {', '.join(future)} is in the future (more than {MAX_CLOCK_SKEW_SECONDS} s ahead "
            "of the service clock); send the time of the last event actually received, in UTC"
        )


def _apply_report(stored: dict[str, Any] | None, report: CheckpointReport, received: str) -> tuple[dict[str, Any], int]:
    progress = {key: value for key, value in (stored or {}).items() if key not in ("pk", "sk")}
    revision = int(progress.pop("revision", 0) or 0)
    sources = dict(progress.get("sources") or {})
    for source in report.sources:
        previous = sources.get(source.source_id) or {}
        sources[source.source_id] = {
            "last_event_at": to_iso(source.last_event_at),
            "checkpoint": source.checkpoint,
            "status": source.status,
            "reported_at": received,
            # The previous sample lets the overview predict the lag's trend.
            "prev_last_event_at": previous.get("last_event_at"),
            "prev_reported_at": previous.get("reported_at"),
        }
    progress["sources"] = sources
    progress["reported_at"] = received
    if report.pending_replay is not None:
        progress["reported_pending_replay"] = report.pending_replay
    if report.dead_letter_total is not None:
        progress["reported_dead_letter_total"] = report.dead_letter_total
    return progress, revision
