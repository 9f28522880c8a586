"""Storage adapters of the evidence export: export rows (JobsTable), the record reader (the by-day indexes), the
evidence bucket (multipart upload, Object Lock, presigned URLs) and the asynchronous launch of the export function.
"""

from __future__ import annotations

import base64
import hashlib
import json
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from connector_sla.evidence.bundle import EvidenceFile
from connector_sla.evidence.export import ExportQuery
from connector_sla.storage.dynamo import ConditionFailed, Expression, Item, Table, decode_cursor, encode_cursor
from connector_sla.timeutil import days_between, to_iso

EXPORT_SK = "EXPORT"
PART_SIZE = 8 * 1024 * 1024  # S3 parts are at least 5 MiB except the last
LOCK_MODE = "COMPLIANCE"
_ONE_MS = timedelta(milliseconds=1)


class ExportRecords:
    """The export rows in JobsTable: ``pk = export_id``, ``sk = EXPORT``, ``kind = export`` (ByKind index)."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def create(self, item: Mapping[str, Any]) -> None:
        expr = Expression()
        self.table.put(item, condition=f"attribute_not_exists({expr.name('pk')})", expr=expr)

    def get(self, export_id: str) -> Item | None:
        return self.table.get({"pk": export_id, "sk": EXPORT_SK}, consistent=True)

    def claim(self, export_id: str, now: datetime) -> Item | None:
        """Move a queued export to ``running``; ``None`` when it is not queued (a repeated invocation)."""
        expr = Expression()
        update = expr.update(set_={"status": "running", "started_at": to_iso(now)})
        condition = f"{expr.name('status')} = {expr.value('queued')}"
        try:
            return self.table.update(self._key(export_id), expr, update, condition=condition, return_values="ALL_NEW")
        except ConditionFailed:
            return None

    def finish(self, export_id: str, fields: Mapping[str, Any]) -> None:
        """Record the outcome of a running export."""
        expr = Expression()
        update = expr.update(set_=dict(fields))
        self.table.update(
            self._key(export_id), expr, update, condition=f"{expr.name('status')} = {expr.value('running')}"
        )

    def fail(self, export_id: str, error: str, now: datetime) -> None:
        """Mark a queued or running export failed, with the reason."""
        expr = Expression()
        update = expr.update(set_={"status": "failed", "error": error, "finished_at": to_iso(now)})
        status = expr.name("status")
        condition = f"{status} IN ({expr.value('queued')}, {expr.value('running')})"
        try:
            self.table.update(self._key(export_id), expr, update, condition=condition)
        except ConditionFailed:
            return

    def page(self, *, limit: int, cursor: str | None) -> tuple[list[Item], str | None]:
        """Exports, newest first."""
        expr = Expression()
        start_key = decode_cursor(cursor, expected_keys={"pk", "sk", "kind", "created_at"})
        items, last = self.table.query_page(
            expr,
            f"{expr.name('kind')} = {expr.value('export')}",
            index="ByKind",
            limit=limit,
            start_key=start_key,
            newest_first=True,
        )
        return items, encode_cursor(last)

    @staticmethod
    def _key(export_id: str) -> dict[str, str]:
        return {"pk": export_id, "sk": EXPORT_SK}


class EvidenceReader:
    """Reads the records of an export's range, day by day from the ByDay indexes (job runs from ByKind)."""

    def __init__(self, tables: Mapping[str, Table], jobs: Table, *, page_size: int = 500) -> None:
        self.tables = tables
        self.jobs = jobs
        self.page_size = page_size

    def records(self, file: EvidenceFile, query: ExportQuery, until: datetime) -> Iterator[Item]:
        """Every record of ``file`` with ``start <= time < min(end, until)``, oldest first, a page at a time."""
        upper = min(query.end, until)
        if upper <= query.start:
            return
        low, high = to_iso(query.start), to_iso(upper - _ONE_MS)
        if file.name == "job_runs.jsonl":
            yield from self._job_runs(low, high)
            return
        table = self.tables[file.name]
        for day in days_between(query.start, upper - _ONE_MS):
            expr = Expression()
            condition = (
                f"{expr.name('day')} = {expr.value(day)} AND "
                f"{expr.name(file.time_field)} BETWEEN {expr.value(low)} AND {expr.value(high)}"
            )
            filters = [
                f"{expr.name(attribute)} = {expr.value(value)}"
                for attribute, value in (("connector_id", query.connector_id), ("incident_id", query.incident_id))
                if value
            ]
            yield from table.query_all(
                expr,
                condition,
                index="ByDay",
                filter_expression=" AND ".join(filters) or None,
                limit=self.page_size,
            )

    def _job_runs(self, low: str, high: str) -> Iterator[Item]:
        expr = Expression()
        condition = (
            f"{expr.name('kind')} = {expr.value('job_run')} AND "
            f"{expr.name('created_at')} BETWEEN {expr.value(low)} AND {expr.value(high)}"
        )
        yield from self.jobs.query_all(expr, condition, index="ByKind", limit=self.page_size)


@dataclass(frozen=True)
class StoredObject:
    """An object as S3 reports it after the upload: version, lock, encryption and checksum."""

    key: str
    version_id: str | None
    lock_mode: str | None
    retain_until: datetime | None
    encryption: str | None
    checksum_sha256: str | None


class MultipartBundleUpload:
    """A write-only stream into one S3 multipart upload, with a SHA-256 checksum on every part.

    Bytes are spooled to a temporary file (``/tmp`` in Lambda) until a part is full, then uploaded from it: memory
    stays flat whatever the bundle's size. The object is created under Object Lock in compliance mode, encrypted
    with KMS.
    """

    def __init__(
        self,
        s3: Any,
        *,
        bucket: str,
        key: str,
        retain_until: datetime,
        metadata: Mapping[str, str],
        part_size: int = PART_SIZE,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.key = key
        self.part_size = part_size
        self.parts: list[dict[str, Any]] = []
        self.part_digests: list[bytes] = []
        response = s3.create_multipart_upload(
            Bucket=bucket,
            Key=key,
            ContentType="application/zip",
            ChecksumAlgorithm="SHA256",
            ServerSideEncryption="aws:kms",
            BucketKeyEnabled=True,
            ObjectLockMode=LOCK_MODE,
            ObjectLockRetainUntilDate=retain_until,
            Metadata=dict(metadata),
        )
        self.upload_id = response["UploadId"]
        self._spool = tempfile.TemporaryFile()  # noqa: SIM115 - closed by complete() or abort()
        self._digest = hashlib.sha256()
        self._pending = 0

    def write(self, data: bytes) -> int:
        self._spool.write(data)
        self._digest.update(data)
        self._pending += len(data)
        if self._pending >= self.part_size:
            self._upload_part()
        return len(data)

    def _upload_part(self) -> None:
        digest = self._digest.digest()
        checksum = base64.b64encode(digest).decode()
        number = len(self.parts) + 1
        self._spool.flush()
        self._spool.seek(0)
        response = self.s3.upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=self._spool,
            ContentLength=self._pending,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=checksum,
        )
        self.parts.append({"PartNumber": number, "ETag": response["ETag"], "ChecksumSHA256": checksum})
        self.part_digests.append(digest)
        self._spool.seek(0)
        self._spool.truncate()
        self._digest = hashlib.sha256()
        self._pending = 0

    @property
    def composite_checksum(self) -> str:
        """The checksum S3 reports for the whole object: SHA-256 over the parts' SHA-256 digests."""
        return base64.b64encode(hashlib.sha256(b"".join(self.part_digests)).digest()).decode()

    def complete(self) -> str | None:
        """Upload the last part and complete the upload; returns the object's version id."""
        if self._pending or not self.parts:
            self._upload_part()
        self._spool.close()
        response = self.s3.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": self.parts}
        )
        return response.get("VersionId")

    def abort(self) -> None:
        """Give the upload up (nothing is stored); safe to call after a failure of any step."""
        self._spool.close()
        try:
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
        except (ClientError, BotoCoreError):
            return


class EvidenceBucket:
    """The evidence bucket: bundles and manifests under ``evidence/``, locked, and presigned downloads."""

    def __init__(self, s3: Any, name: str) -> None:
        self.s3 = s3
        self.name = name
        self._presigner: Any = None

    def open_bundle(
        self, key: str, *, retain_until: datetime, metadata: Mapping[str, str], part_size: int = PART_SIZE
    ) -> MultipartBundleUpload:
        return MultipartBundleUpload(
            self.s3, bucket=self.name, key=key, retain_until=retain_until, metadata=metadata, part_size=part_size
        )

    def put_manifest(self, key: str, body: bytes, *, retain_until: datetime, metadata: Mapping[str, str]) -> str | None:
        """Store the manifest object beside the bundle, locked like it; returns its version id."""
        response = self.s3.put_object(
            Bucket=self.name,
            Key=key,
            Body=body,
            ContentType="application/json",
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=base64.b64encode(hashlib.sha256(body).digest()).decode(),
            ServerSideEncryption="aws:kms",
            BucketKeyEnabled=True,
            ObjectLockMode=LOCK_MODE,
            ObjectLockRetainUntilDate=retain_until,
            Metadata=dict(metadata),
        )
        return response.get("VersionId")

    def describe(self, key: str, version_id: str | None) -> StoredObject:
        """What S3 holds for one object version: lock mode and date, encryption, checksum."""
        params: dict[str, Any] = {"Bucket": self.name, "Key": key, "ChecksumMode": "ENABLED"}
        if version_id:
            params["VersionId"] = version_id
        head = self.s3.head_object(**params)
        until = head.get("ObjectLockRetainUntilDate")
        return StoredObject(
            key=key,
            version_id=head.get("VersionId", version_id),
            lock_mode=head.get("ObjectLockMode"),
            retain_until=until.astimezone(UTC) if isinstance(until, datetime) else None,
            encryption=head.get("ServerSideEncryption"),
            checksum_sha256=head.get("ChecksumSHA256"),
        )

    def ensure_retention(self, key: str, version_id: str | None, retain_until: datetime) -> StoredObject:
        """Read the object's lock back and apply compliance retention when the store did not keep the one asked.

        S3 applies the retention given at upload; this only acts where it is missing or shorter (some S3-compatible
        stores ignore lock settings on multipart uploads). Compliance retention can only be extended, never cut.
        """
        stored = self.describe(key, version_id)
        if stored.lock_mode == LOCK_MODE and stored.retain_until and stored.retain_until >= retain_until - _ONE_MS:
            return stored
        params: dict[str, Any] = {
            "Bucket": self.name,
            "Key": key,
            "Retention": {"Mode": LOCK_MODE, "RetainUntilDate": retain_until},
        }
        if version_id:
            params["VersionId"] = version_id
        self.s3.put_object_retention(**params)
        return self.describe(key, version_id)

    def presign(self, key: str, version_id: str | None, *, filename: str, expires_in: int) -> str:
        """A download URL for one object version, valid for ``expires_in`` seconds."""
        params: dict[str, Any] = {
            "Bucket": self.name,
            "Key": key,
            "ResponseContentDisposition": f'attachment; filename="{filename}"',
        }
        if version_id:
            params["VersionId"] = version_id
        # Limitation: the URL is signed with the function's role session; it stops working when that session ends,
        # which can be before ``expires_in``. Reading the export again gives a fresh one.
        url = self.presigner.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in)
        return str(url)

    @property
    def presigner(self) -> Any:
        """A client like ``s3`` that presigns with SigV4 (``X-Amz-Expires``), asked for explicitly: left to its
        default, botocore presigns with the legacy SigV2 on the us-east-1 endpoint, which S3 refuses in regions
        opened since 2014."""
        if self._presigner is None:
            sigv4 = self.s3.meta.config.merge(Config(signature_version="s3v4"))
            self._presigner = boto3.client("s3", region_name=self.s3.meta.region_name, config=sigv4)
        return self._presigner


class ExportLauncher:
    """Starts the export function asynchronously (``InvocationType=Event``) for one export."""

    def __init__(self, lambda_client: Any, function_name: str) -> None:
        self.lambda_client = lambda_client
        self.function_name = function_name

    def launch(self, export_id: str) -> str | None:
        """Invoke the export function; returns the reason when it could not be invoked, else ``None``."""
        payload = json.dumps({"export_id": export_id}).encode()
        try:
            self.lambda_client.invoke(FunctionName=self.function_name, InvocationType="Event", Payload=payload)
        except (ClientError, BotoCoreError) as error:
            return str(error)
        return None
