"""Request and response models of the evidence export routes (pydantic; only the evidence API imports them)."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from connector_sla.evidence.export import MAX_RANGE_DAYS, ExportQuery

CONNECTOR_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{1,62}$"
INCIDENT_ID_PATTERN = r"^inc_[0-9A-Z]{26}$"
EXPORT_ID_PATTERN = r"^exp_[0-9A-Z]{26}$"

ExportStatus = Literal["queued", "running", "succeeded", "chain_broken", "failed"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExportRequest(_Strict):
    """What to export: ``[start, end)`` (ISO 8601 with an offset), optionally one connector and/or one incident."""

    start: AwareDatetime = Field(description="First instant of the range (inclusive), e.g. 2026-12-01T00:00:00Z.")
    end: AwareDatetime = Field(
        description=f"End of the range (exclusive), at most {MAX_RANGE_DAYS} days after start: 2026-12-04T00:00:00Z."
    )
    connector_id: str | None = Field(default=None, pattern=CONNECTOR_ID_PATTERN, description="Only this connector.")
    incident_id: str | None = Field(default=None, pattern=INCIDENT_ID_PATTERN, description="Only this incident.")

    @model_validator(mode="after")
    def _ordered(self) -> ExportRequest:
        if self.end <= self.start:
            raise ValueError("end must be after start: the range is [start, end)")
        return self

    def to_query(self) -> ExportQuery:
        return ExportQuery(self.start, self.end, self.connector_id, self.incident_id)


class ExportListQuery(_Strict):
    limit: int = Field(default=20, ge=1, le=100, description="Exports per page (1 to 100).")
    cursor: str | None = Field(default=None, description="The next_cursor of the previous page.")


class ExportQueryView(BaseModel):
    start: str
    end: str
    connector_id: str | None = None
    incident_id: str | None = None


class ExportAccepted(BaseModel):
    export_id: str
    status: ExportStatus
    created_at: str
    query: ExportQueryView
    status_path: str = Field(description="Read this path for the export's status and, once done, its download URL.")


class ExportFileView(BaseModel):
    name: str
    records: int
    sha256: str
    bytes: int
    chained: bool


class ChainProblemView(BaseModel):
    file: str
    line: int
    record_id: str
    chain_id: str
    chain_seq: int | None
    reason: str
    text: str


class ChainVerificationView(BaseModel):
    verified: bool
    records_checked: int
    chains: int
    chains_starting_before_range: int
    problems: int
    first_problem: ChainProblemView | None = Field(
        description="The first record, in bundle order, that does not verify."
    )


class BundleView(BaseModel):
    bucket: str
    key: str
    manifest_key: str
    version_id: str | None
    manifest_version_id: str | None
    sha256: str = Field(description="SHA-256 of the whole bundle.zip, as downloaded.")
    bytes: int
    checksum_sha256: str | None = Field(description="The checksum S3 keeps: SHA-256 over the parts' SHA-256 digests.")
    object_lock_mode: str | None
    retain_until: str | None
    encryption: str | None


class DownloadView(BaseModel):
    url: str = Field(description="Presigned GET of bundle.zip (this exact object version).")
    manifest_url: str
    expires_at: str


class ExportView(BaseModel):
    export_id: str
    status: ExportStatus
    created_at: str
    requested_by: str | None
    query: ExportQueryView
    started_at: str | None
    finished_at: str | None
    record_count: int | None
    files: list[ExportFileView]
    chain_verification: ChainVerificationView | None
    bundle: BundleView | None
    error: str | None
    download: DownloadView | None = Field(description="Present on a single export once its bundle is stored.")


class ExportPage(BaseModel):
    items: list[ExportView]
    next_cursor: str | None
