"""Evidence exports: what an export covers, where its bundle is stored, and how the bundle is written.

The rules here take plain values (``now`` is a parameter). :func:`write_bundle` streams records from a source into
a byte sink through the bundle writer and the chain verifier; the sources and sinks that talk to AWS live in
:mod:`connector_sla.evidence.store`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from connector_sla import __version__
from connector_sla.errors import DomainError, ValidationFailed
from connector_sla.evidence.bundle import (
    BUNDLE_FORMAT,
    EVIDENCE_FILES,
    BundleWriter,
    ByteSink,
    EvidenceFile,
    FileSummary,
    record_order,
)
from connector_sla.evidence.chain import sealed_view
from connector_sla.evidence.verify import ChainReport, LinkVerifier
from connector_sla.timeutil import parse_iso, to_iso

SERVICE_NAME = "connector-sla"
MAX_RANGE_DAYS = 366
# The export function's timeout; a run still marked running after it (plus a margin) died without saying so.
EXPORT_TIME_LIMIT = timedelta(seconds=900)
STALE_AFTER = EXPORT_TIME_LIMIT + timedelta(minutes=1)
# Stop this long before the function's deadline, so the upload is aborted and the failure recorded.
STOP_MARGIN_SECONDS = 60.0
DOWNLOADABLE = frozenset({"succeeded", "chain_broken"})
EXPORT_ID = re.compile(r"exp_[0-9A-Z]{26}")
RANGE_RULE = (
    "a record is in the range when its time is at or after start and before end: transitions and deliveries by "
    "'at', callbacks by 'received_at', notifications and job runs by 'created_at'"
)
NOTES = (
    "transitions, deliveries and callbacks are hash-chained when written; chains are verified at export",
    "notifications are exported as they were at export time (their ACK state moves forward); they are not chained",
    "job runs are not scoped by connector or incident: every run in the range is included",
)


class ExportNotStarted(DomainError):
    """The export was recorded but its function could not be invoked; it is marked failed."""

    status = 503
    code = "export_not_started"


class ExportTimeLimit(Exception):
    """The export is about to outrun its function's time limit."""


@dataclass(frozen=True)
class ExportQuery:
    """What an export covers: ``[start, end)`` and optionally one connector and/or one incident."""

    start: datetime
    end: datetime
    connector_id: str | None = None
    incident_id: str | None = None

    def to_item(self) -> dict[str, Any]:
        values = {
            "start": to_iso(self.start),
            "end": to_iso(self.end),
            "connector_id": self.connector_id,
            "incident_id": self.incident_id,
        }
        return {key: value for key, value in values.items() if value is not None}

    def to_manifest(self) -> dict[str, Any]:
        return {"connector_id": None, "incident_id": None, **self.to_item()}

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> ExportQuery:
        return cls(
            start=parse_iso(str(item["start"])),
            end=parse_iso(str(item["end"])),
            connector_id=item.get("connector_id"),
            incident_id=item.get("incident_id"),
        )


def check_export_id(export_id: object) -> str:
    """The export id if it has the shape of one (``exp_`` and 26 characters), else a 400 that says so."""
    if not isinstance(export_id, str) or not EXPORT_ID.fullmatch(export_id):
        raise ValidationFailed("export_id must look like exp_01JE... (exp_ followed by 26 letters and digits)")
    return export_id


def check_range(start: datetime, end: datetime, now: datetime) -> None:
    """Refuse a range that is empty, longer than :data:`MAX_RANGE_DAYS` or entirely in the future."""
    if end <= start:
        raise ValidationFailed("end must be after start: the range is [start, end), e.g. a day is 00:00 to 00:00")
    if end - start > timedelta(days=MAX_RANGE_DAYS):
        days = (end - start).days
        raise ValidationFailed(
            f"the range spans {days} days; one export covers at most {MAX_RANGE_DAYS}: split it into several exports"
        )
    if start > now:
        raise ValidationFailed(f"start {to_iso(start)} is in the future: nothing in that range has happened yet")


def evidence_prefix(export_id: str, created_at: datetime) -> str:
    """Where an export's objects live: ``evidence/YYYY/MM/DD/<export_id>/`` by the day it was requested (UTC)."""
    return f"evidence/{created_at:%Y/%m/%d}/{export_id}/"


def bundle_key(export_id: str, created_at: datetime) -> str:
    return evidence_prefix(export_id, created_at) + "bundle.zip"


def manifest_key(export_id: str, created_at: datetime) -> str:
    return evidence_prefix(export_id, created_at) + "manifest.json"


def retain_until(now: datetime, days: int) -> datetime:
    """The Object Lock retain-until date of a bundle written at ``now`` (whole seconds, as S3 keeps it)."""
    return (now + timedelta(days=days)).replace(microsecond=0)


def new_export_item(export_id: str, query: ExportQuery, *, actor: str, now: datetime) -> dict[str, Any]:
    """The JobsTable row of a requested export (``kind = export``), queued for the export function."""
    created = to_iso(now)
    return {
        "pk": export_id,
        "sk": "EXPORT",
        "kind": "export",
        "export_id": export_id,
        "created_at": created,
        "requested_by": actor,
        "status": "queued",
        "query": query.to_item(),
    }


def effective_status(item: Mapping[str, Any], now: datetime) -> tuple[str, str | None]:
    """The status to show and its error: a run still ``running`` past the function's time limit has failed."""
    status = str(item.get("status", "queued"))
    started = item.get("started_at")
    if status == "running" and started and now - parse_iso(str(started)) > STALE_AFTER:
        limit = int(EXPORT_TIME_LIMIT.total_seconds())
        return "failed", f"the export did not finish within its {limit} s time limit; export a shorter range"
    return status, item.get("error")


def export_view(item: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """An export row as the API shows it (without download links, which the service adds)."""
    status, error = effective_status(item, now)
    query = item.get("query") or {}
    return {
        "export_id": item["export_id"],
        "status": status,
        "created_at": item["created_at"],
        "requested_by": item.get("requested_by"),
        "query": {
            "start": query.get("start"),
            "end": query.get("end"),
            "connector_id": query.get("connector_id"),
            "incident_id": query.get("incident_id"),
        },
        "started_at": item.get("started_at"),
        "finished_at": item.get("finished_at"),
        "record_count": item.get("record_count"),
        "files": item.get("files") or [],
        "chain_verification": item.get("chain_verification"),
        "bundle": item.get("bundle"),
        "error": error,
        "download": None,
    }


def order_ties(records: Iterable[Mapping[str, Any]], file: EvidenceFile) -> Iterator[Mapping[str, Any]]:
    """Records in time order as given, with records of the same instant put in :func:`bundle.record_order`.

    The by-day indexes return records of one instant in no defined order; this makes two exports of the same range
    byte-identical, and gives the verifier an order to check. Only records sharing a timestamp are held at once.
    """
    for _, group in itertools.groupby(records, key=lambda record: record.get(file.time_field)):
        tied = list(group)
        if len(tied) > 1:
            tied.sort(key=lambda record: record_order(record, file))
        yield from tied


def exported_view(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record as the bundle holds it: its sealed view, and its ``record_hash`` so the chain can be checked."""
    view = sealed_view(record)
    if "record_hash" in record:
        view["record_hash"] = record["record_hash"]
    return view


def build_manifest(
    *,
    export_id: str,
    query: ExportQuery,
    exported_at: datetime,
    files: list[FileSummary],
    chain_report: ChainReport,
) -> dict[str, Any]:
    """The bundle's manifest: per-file SHA-256 and record count, the query, export time, version, chain summary."""
    return {
        "format": BUNDLE_FORMAT,
        "export_id": export_id,
        "service": SERVICE_NAME,
        "service_version": __version__,
        "exported_at": to_iso(exported_at),
        "query": query.to_manifest(),
        "records_until": to_iso(min(query.end, exported_at)),
        "range_rule": RANGE_RULE,
        "files": [summary.to_manifest() for summary in files],
        "records": sum(summary.records for summary in files),
        "chain_verification": chain_report.to_manifest(),
        "notes": list(NOTES),
    }


class RecordSource(Protocol):
    def records(self, file: EvidenceFile, query: ExportQuery, until: datetime) -> Iterable[Mapping[str, Any]]: ...


@dataclass(frozen=True)
class BundleResult:
    """A written bundle: its manifest, per-file summaries, chain report, SHA-256 and size."""

    manifest: dict[str, Any]
    manifest_body: bytes
    files: list[FileSummary]
    chain_report: ChainReport
    sha256: str
    size: int
    status: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", "succeeded" if self.chain_report.verified else "chain_broken")

    @property
    def records(self) -> int:
        return sum(summary.records for summary in self.files)


def write_bundle(
    *,
    export_id: str,
    query: ExportQuery,
    source: RecordSource,
    sink: ByteSink,
    exported_at: datetime,
    chain_state_path: str = ":memory:",
    time_left: Callable[[], float] | None = None,
) -> BundleResult:
    """Stream every evidence file of ``query`` from ``source`` into ``sink`` as a bundle, verifying the chains.

    Records are read page by page, written in their sealed view and never held together; chain positions are kept
    in SQLite at ``chain_state_path``. Raises :class:`ExportTimeLimit` when ``time_left()`` (seconds) runs low.
    """
    writer = BundleWriter(sink, created=exported_at)
    verifier = LinkVerifier(chain_state_path)
    try:
        for file in EVIDENCE_FILES:
            records = source.records(file, query, exported_at)
            writer.add_file(file, _checked(records, file, verifier, time_left))
        report = verifier.finish()
    except BaseException:
        writer.abandon()
        raise
    finally:
        verifier.close()
    manifest = build_manifest(
        export_id=export_id, query=query, exported_at=exported_at, files=writer.summaries, chain_report=report
    )
    body = writer.add_manifest(manifest)
    sha256, size = writer.close()
    return BundleResult(manifest, body, list(writer.summaries), report, sha256, size)


def _checked(
    records: Iterable[Mapping[str, Any]],
    file: EvidenceFile,
    verifier: LinkVerifier,
    time_left: Callable[[], float] | None,
) -> Iterator[dict[str, Any]]:
    for line, record in enumerate(order_ties(records, file), start=1):
        view = exported_view(record)
        if file.chained:
            verifier.check(view, file=file.name, line=line, record_id=str(view.get(file.id_field) or ""))
        if time_left is not None and line % 500 == 0 and time_left() < STOP_MARGIN_SECONDS:
            raise ExportTimeLimit(f"stopped at {file.name} line {line}: the export function's time limit is near")
        yield view
