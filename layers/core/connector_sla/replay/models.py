"""Bodies, query filters and responses of the failure and replay routes (pydantic; unknown fields are refused)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, model_validator

from connector_sla.replay.rules import (
    CONNECTOR_ID_PATTERN,
    FAILURE_ID_PATTERN,
    REPLAY_ID_PATTERN,
    REPLAY_KEY_PATTERN,
    parse_replay_key,
)

ErrorKind = Literal["parse", "mapping", "upstream", "other"]
FailureStatus = Literal["dead", "patched", "replaying", "replayed"]
ConnectorId = Annotated[str, Field(pattern=CONNECTOR_ID_PATTERN, description="The connector's id.")]
FailureId = Annotated[str, Field(pattern=FAILURE_ID_PATTERN, description="A dead-letter row id (flr_...).")]
ReplayId = Annotated[str, Field(pattern=REPLAY_ID_PATTERN, description="A replay job id (rpl_...).")]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------------------------------------ requests


class FailureReport(_Strict):
    """Body of ``POST /events/connectors/failures``.

    A new failure carries the row as the connector received it (``payload``) and its ``retry_count``. A replayed
    row that failed again names its ``replay_key`` (or ``failure_id``): the row returns to dead with its retry
    count incremented and keeps the payload that was replayed.
    """

    connector_id: ConnectorId
    source_id: str = Field(min_length=1, max_length=64, description="One of the connector's sources.")
    error_kind: ErrorKind
    error_message: str = Field(
        min_length=1, max_length=100_000, description="Why the row failed; kept up to 4000 characters."
    )
    retry_count: int | None = Field(
        None, ge=0, le=1_000_000, description="Retries the connector made before it gave up (new failures)."
    )
    payload: JsonValue = Field(None, description="The failed row, any JSON value (new failures; up to 64 KiB).")
    occurred_at: AwareDatetime | None = Field(None, description="When the connector saw the failure.")
    failure_id: FailureId | None = Field(None, description="A replayed row that failed again.")
    replay_key: str | None = Field(
        None, pattern=REPLAY_KEY_PATTERN, description="The replay_key of the replayed message that failed again."
    )
    dedup_key: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="The connector's own id for this failure: a retried report returns the row already recorded.",
    )

    @property
    def failed_again(self) -> bool:
        return self.failure_id is not None or self.replay_key is not None

    @model_validator(mode="after")
    def _new_or_failed_again(self) -> FailureReport:
        if self.failed_again:
            if self.dedup_key is not None:
                raise ValueError("dedup_key is for new failures; a failed-again report is recognized by replay_key")
            if self.failure_id and self.replay_key and parse_replay_key(self.replay_key)[0] != self.failure_id:
                raise ValueError("replay_key names another failure than failure_id; send one of them")
            return self
        missing = []
        if "payload" not in self.model_fields_set or self.payload is None:
            missing.append("payload (the failed row, any JSON value but null)")
        if self.retry_count is None:
            missing.append("retry_count")
        if missing:
            raise ValueError(
                f"a new failure needs {' and '.join(missing)}; a replayed row that failed again names replay_key"
            )
        return self


class FailureQuery(_Strict):
    """Filters of ``GET /events/connectors/failures``; times apply to ``failed_at`` (the latest failure)."""

    connector_id: ConnectorId | None = None
    error_kind: ErrorKind | None = None
    status: FailureStatus | None = None
    since: AwareDatetime | None = Field(None, description="Inclusive lower bound on failed_at (ISO 8601).")
    until: AwareDatetime | None = Field(None, description="Inclusive upper bound on failed_at (ISO 8601).")
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=2048, description="next_cursor of the previous page.")


class PatchRequest(_Strict):
    """Body of ``POST /events/connectors/failures/{failure_id}/patch``: an RFC 6902 JSON Patch."""

    patch: list[dict[str, JsonValue]] = Field(
        min_length=1, max_length=100, description="RFC 6902 operations, applied in order."
    )
    preview: bool = Field(False, description="Return the patched payload without saving it.")
    expected_payload_sha256: Sha256 | None = Field(
        None, description="Refuse (409) when the payload changed since it was read (payload_sha256 of the row)."
    )
    comment: str | None = Field(None, max_length=500, description="Why, for the patch log.")


class ReplayFilter(_Strict):
    """Which of the connector's rows a filter replay selects; it never selects rows that fail after it starts."""

    error_kind: ErrorKind | None = None
    status: Literal["dead", "patched"] | None = Field(None, description="Default: dead and patched rows.")
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None

    @model_validator(mode="after")
    def _ordered(self) -> ReplayFilter:
        if self.since and self.until and self.since > self.until:
            raise ValueError("since is after until; expected since <= until")
        return self


class CanaryOptions(_Strict):
    rows: int = Field(ge=1, le=100, description="Replay this many rows first.")
    wait_seconds: int = Field(
        60, ge=0, le=600, description="Then wait this long; if any of them fails again the replay stops there."
    )


class ReplayRequest(_Strict):
    """Body of ``POST /events/connectors/replays``: selected rows (``failure_ids``) or a ``filter``."""

    connector_id: ConnectorId
    failure_ids: list[FailureId] | None = Field(None, min_length=1, max_length=1000)
    filter: ReplayFilter | None = None
    dry_run: bool = Field(False, description="List what would be replayed, and why rows would be skipped.")
    canary: CanaryOptions | None = None
    list_limit: int = Field(100, ge=1, le=1000, description="Dry run: how many rows each list shows at most.")

    @model_validator(mode="after")
    def _one_selection(self) -> ReplayRequest:
        if (self.failure_ids is None) == (self.filter is None):
            raise ValueError("give exactly one of failure_ids (selected rows) or filter (e.g. {} for every row)")
        return self

    def selected_ids(self) -> list[str]:
        """The selected ids, each once, in the order given."""
        return list(dict.fromkeys(self.failure_ids or []))


# ------------------------------------------------------------------------------------------------ responses


class HistoryEntry(BaseModel):
    model_config = ConfigDict(extra="allow")

    at: str
    event: str
    from_status: str | None = None
    to_status: str
    by: str


class PatchRecord(BaseModel):
    patch_no: int
    at: str
    by: str
    before_sha256: str
    after_sha256: str
    operations: list[dict[str, JsonValue]]
    comment: str | None = None


class FailureSummary(BaseModel):
    failure_id: str
    connector_id: str
    source_id: str
    error_kind: str
    error_message: str
    retry_count: int
    status: FailureStatus
    payload: JsonValue
    payload_sha256: str
    failed_at: str
    first_failed_at: str
    patch_count: int = 0
    replay_attempts: int = 0
    replay_id: str | None = None
    replay_key: str | None = None
    replayed_at: str | None = None


class FailureView(FailureSummary):
    error_message_truncated: bool = False
    occurred_at: str | None = None
    reported_by: str | None = None
    dedup_key: str | None = None
    original_payload: JsonValue = None
    original_payload_sha256: str
    replay_target: str | None = None
    last_failed_replay_key: str | None = None
    updated_at: str
    version: int
    patches: list[PatchRecord] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list)


class FailurePage(BaseModel):
    items: list[FailureSummary]
    next_cursor: str | None = None


class ReportOutcome(BaseModel):
    outcome: Literal["recorded", "duplicate", "failed_again"] = Field(
        description="recorded (201): a new row; duplicate (200): already recorded; failed_again (200): back to dead."
    )
    failure: FailureView


class PatchOutcome(BaseModel):
    failure_id: str
    preview: bool
    payload: JsonValue
    before_sha256: str
    after_sha256: str
    failure: FailureView | None = Field(None, description="The saved row (absent for a preview).")


class ReplayTargetView(BaseModel):
    kind: Literal["eventbridge", "sqs"]
    arn: str


class ReplayCandidate(BaseModel):
    failure_id: str
    status: str
    error_kind: str
    retry_count: int
    payload_sha256: str
    replay_key: str = Field(description="The idempotency key the replayed message would carry.")


class SkippedRow(BaseModel):
    failure_id: str
    reason: str
    detail: str | None = None


class DryRunCounts(BaseModel):
    examined: int
    would_replay: int
    skipped: int


class ReplayPlan(BaseModel):
    dry_run: Literal[True] = True
    connector_id: str
    target: ReplayTargetView
    would_replay: list[ReplayCandidate]
    skipped: list[SkippedRow]
    counts: DryRunCounts
    canary_rows: list[str] = Field(default_factory=list, description="The rows a canary would replay first.")
    truncated: bool = Field(description="The lists show only the first list_limit rows, or not every row was read.")
    complete: bool = Field(
        description="Every selected row was examined (a filter stops after 10,000 rows or 40 pages of them)."
    )


class ReplayProgress(BaseModel):
    examined: int
    published: int
    replayed: int
    skipped: int
    failed_again: int
    total: int | None = Field(None, description="Selected rows (a failure_ids replay).")
    percent: int | None = None


class CanaryView(BaseModel):
    rows: int
    wait_seconds: int
    published: int
    until: str | None = None
    outcome: Literal["pending", "waiting", "passed", "failed"]
    failed_ids: list[str] = Field(default_factory=list)


class ReplayJobView(BaseModel):
    replay_id: str
    connector_id: str
    status: Literal["queued", "running", "interrupted", "succeeded", "canary_failed"]
    phase: str
    resumable: bool
    requested_by: str
    created_at: str
    started_at: str | None = None
    updated_at: str
    finished_at: str | None = None
    mode: Literal["failure_ids", "filter"]
    filter: dict[str, Any] | None = None
    target: ReplayTargetView
    progress: ReplayProgress
    canary: CanaryView | None = None
    skipped: list[SkippedRow] = Field(default_factory=list, description="The first 100 skipped rows.")
    interrupted_reason: str | None = None
    last_error: str | None = None
    invocations: int = 0
    status_url: str
