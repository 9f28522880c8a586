"""The evidence export, end to end: the API side (start, read, list) and the export function's run."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger

from connector_sla.config import settings
from connector_sla.errors import NotFound
from connector_sla.evidence.bundle import manifest_bytes
from connector_sla.evidence.export import (
    DOWNLOADABLE,
    BundleResult,
    ExportNotStarted,
    ExportQuery,
    ExportTimeLimit,
    bundle_key,
    check_export_id,
    check_range,
    export_view,
    manifest_key,
    new_export_item,
    retain_until,
    write_bundle,
)
from connector_sla.evidence.store import (
    EvidenceBucket,
    EvidenceReader,
    ExportLauncher,
    ExportRecords,
    MultipartBundleUpload,
    StoredObject,
)
from connector_sla.ids import new_id
from connector_sla.storage.aws import client
from connector_sla.storage.dynamo import Table
from connector_sla.timeutil import parse_iso, to_iso, utcnow

logger = Logger(child=True)

DOWNLOAD_URL_SECONDS = 900


def _jobs_table() -> Table:
    return Table(settings().jobs_table, client("dynamodb"))


class EvidenceExports:
    """The API side: start an export, read one (with short-lived download links once done), list them."""

    def __init__(self, records: ExportRecords, launcher: ExportLauncher, bucket: EvidenceBucket) -> None:
        self.records = records
        self.launcher = launcher
        self.bucket = bucket

    @classmethod
    def from_settings(cls) -> EvidenceExports:
        config = settings()
        return cls(
            ExportRecords(_jobs_table()),
            ExportLauncher(client("lambda"), config.export_function),
            EvidenceBucket(client("s3"), config.evidence_bucket),
        )

    def start(self, query: ExportQuery, *, actor: str, now: datetime) -> dict[str, Any]:
        """Record a queued export and launch the export function; the export runs asynchronously."""
        check_range(query.start, query.end, now)
        export_id = new_id("exp")
        item = new_export_item(export_id, query, actor=actor, now=now)
        self.records.create(item)
        failure = self.launcher.launch(export_id)
        if failure is not None:
            logger.error("export launch failed", export_id=export_id, reason=failure)
            self.records.fail(export_id, "the export function could not be started; request the export again", now)
            raise ExportNotStarted("the export function could not be started; nothing was exported: retry later")
        logger.info("export requested", export_id=export_id, query=item["query"], requested_by=actor)
        return {
            "export_id": export_id,
            "status": "queued",
            "created_at": item["created_at"],
            "query": export_view(item, now)["query"],
            "status_path": f"/compliance/evidence/export/{export_id}",
        }

    def get(self, export_id: str, *, now: datetime) -> dict[str, Any]:
        """One export; once its bundle is stored, with presigned download URLs valid for 15 minutes."""
        item = self.records.get(check_export_id(export_id))
        if item is None:
            raise NotFound(f"no export {export_id}; list exports with GET /compliance/evidence/export")
        view = export_view(item, now)
        bundle = view.get("bundle") or {}
        if view["status"] in DOWNLOADABLE and bundle.get("key"):
            view["download"] = {
                "url": self.bucket.presign(
                    bundle["key"],
                    bundle.get("version_id"),
                    filename=f"{export_id}.zip",
                    expires_in=DOWNLOAD_URL_SECONDS,
                ),
                "manifest_url": self.bucket.presign(
                    bundle["manifest_key"],
                    bundle.get("manifest_version_id"),
                    filename=f"{export_id}.manifest.json",
                    expires_in=DOWNLOAD_URL_SECONDS,
                ),
                "expires_at": to_iso(now + timedelta(seconds=DOWNLOAD_URL_SECONDS)),
            }
        return view

    def list(self, *, limit: int, cursor: str | None, now: datetime) -> dict[str, Any]:
        """Exports, newest first, without download links (read one export for those)."""
        items, next_cursor = self.records.page(limit=limit, cursor=cursor)
        return {"items": [export_view(item, now) for item in items], "next_cursor": next_cursor}


class EvidenceExporter:
    """The export function's work: stream one export's bundle to the evidence bucket and record the outcome."""

    def __init__(
        self,
        records: ExportRecords,
        reader: EvidenceReader,
        bucket: EvidenceBucket,
        *,
        retention_days: int,
        part_size: int | None = None,
    ) -> None:
        self.records = records
        self.reader = reader
        self.bucket = bucket
        self.retention_days = retention_days
        self.part_size = part_size

    @classmethod
    def from_settings(cls) -> EvidenceExporter:
        config = settings()
        dynamodb = client("dynamodb")
        tables = {
            "transitions.jsonl": Table(config.transitions_table, dynamodb),
            "deliveries.jsonl": Table(config.deliveries_table, dynamodb),
            "callbacks.jsonl": Table(config.callbacks_table, dynamodb),
            "notifications.jsonl": Table(config.notifications_table, dynamodb),
        }
        jobs = Table(config.jobs_table, dynamodb)
        return cls(
            ExportRecords(jobs),
            EvidenceReader(tables, jobs),
            EvidenceBucket(client("s3"), config.evidence_bucket),
            retention_days=config.evidence_retention_days,
        )

    def run(
        self,
        export_id: str,
        *,
        now: datetime,
        time_left: Callable[[], float] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> dict[str, Any]:
        """Run a queued export once (``now`` is its export time); a repeated invocation of a claimed export does
        nothing.

        Returns ``{"export_id", "status", "records", "bytes"}``. The bundle is stored even when a chain does not
        verify (status ``chain_broken``): the broken record is itself evidence. Any other failure aborts the
        upload and marks the export ``failed`` with the reason.
        """
        item = self.records.claim(export_id, now)
        if item is None:
            logger.info("export already claimed", export_id=export_id)
            return {"export_id": export_id, "status": "skipped", "records": 0, "bytes": 0}
        created = parse_iso(str(item["created_at"]))
        query = ExportQuery.from_item(item["query"])
        until = retain_until(now, self.retention_days)
        keys = (bundle_key(export_id, created), manifest_key(export_id, created))
        metadata = {"export-id": export_id, **{f"query-{k}".replace("_", "-"): v for k, v in query.to_item().items()}}
        upload: MultipartBundleUpload | None = None
        state_path = _chain_state_path(export_id)
        try:
            options = {"part_size": self.part_size} if self.part_size else {}
            upload = self.bucket.open_bundle(keys[0], retain_until=until, metadata=metadata, **options)
            result = write_bundle(
                export_id=export_id,
                query=query,
                source=self.reader,
                sink=upload,
                exported_at=now,
                chain_state_path=state_path,
                time_left=time_left,
            )
            version_id = upload.complete()
            stored = self.bucket.ensure_retention(keys[0], version_id, until)
            manifest_version = self._store_manifest(keys[1], result, keys[0], until, metadata)
        except ExportTimeLimit as error:
            return self._failed(export_id, upload, clock(), f"{error}; export a shorter range")
        except Exception as error:
            logger.exception("export failed", export_id=export_id)
            return self._failed(export_id, upload, clock(), f"the export failed: {type(error).__name__}")
        finally:
            _remove(state_path)
        outcome = _outcome(result, stored, keys, manifest_version, self.bucket.name, upload)
        self.records.finish(export_id, {**outcome, "finished_at": to_iso(clock())})
        logger.info(
            "export finished",
            export_id=export_id,
            status=result.status,
            records=result.records,
            bytes=result.size,
            first_problem=str(result.chain_report.first_problem or ""),
        )
        return {"export_id": export_id, "status": result.status, "records": result.records, "bytes": result.size}

    def _store_manifest(
        self, key: str, result: BundleResult, bundle: str, until: datetime, metadata: dict[str, str]
    ) -> str | None:
        document = {**result.manifest, "bundle": {"key": bundle, "sha256": result.sha256, "bytes": result.size}}
        body = manifest_bytes(document)
        version_id = self.bucket.put_manifest(key, body, retain_until=until, metadata=metadata)
        self.bucket.ensure_retention(key, version_id, until)
        return version_id

    def _failed(
        self, export_id: str, upload: MultipartBundleUpload | None, now: datetime, reason: str
    ) -> dict[str, Any]:
        if upload is not None:
            upload.abort()
        self.records.fail(export_id, reason, now)
        logger.warning("export marked failed", export_id=export_id, reason=reason)
        return {"export_id": export_id, "status": "failed", "records": 0, "bytes": 0}


def _outcome(
    result: BundleResult,
    stored: StoredObject,
    keys: tuple[str, str],
    manifest_version: str | None,
    bucket: str,
    upload: MultipartBundleUpload | None,
) -> dict[str, Any]:
    return {
        "status": result.status,
        "record_count": result.records,
        "files": [summary.to_manifest() for summary in result.files],
        "chain_verification": result.manifest["chain_verification"],
        "bundle": {
            "bucket": bucket,
            "key": keys[0],
            "manifest_key": keys[1],
            "version_id": stored.version_id,
            "manifest_version_id": manifest_version,
            "sha256": result.sha256,
            "bytes": result.size,
            "checksum_sha256": stored.checksum_sha256 or (upload.composite_checksum if upload else None),
            "object_lock_mode": stored.lock_mode,
            "retain_until": to_iso(stored.retain_until) if stored.retain_until else None,
            "encryption": stored.encryption,
        },
    }


def _chain_state_path(export_id: str) -> str:
    return os.path.join(tempfile.gettempdir(), f"{export_id}.chains.sqlite")  # noqa: PTH118


def _remove(path: str) -> None:
    try:
        os.remove(path)  # noqa: PTH107
    except FileNotFoundError:
        return
