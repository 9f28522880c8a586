"""The callback history of the alerts API: GET /alerts/oncall/events, its query and its page.

Kept apart from the provider routes so that the alerts function loads neither the provider models nor the mapping
compiler.
"""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from connector_sla.callbacks.history import CallbackHistory, HistoryFilter
from connector_sla.callbacks.names import PROVIDER_PATTERN, CallbackStatus
from connector_sla.config import settings
from connector_sla.storage.aws import client
from connector_sla.storage.dynamo import Table
from connector_sla.timeutil import utcnow
from connector_sla.web.routes import ApiRoutes


class CallbackEventsQuery(BaseModel):
    """Filters of the callback history; newest first."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    incident_id: str | None = Field(None, min_length=1, max_length=200)
    notification_id: str | None = Field(None, min_length=1, max_length=200)
    provider: str | None = Field(None, pattern=PROVIDER_PATTERN)
    status: CallbackStatus | None = None
    unmatched: bool | None = Field(None, description="true: only callbacks that matched no notification.")
    since: AwareDatetime | None = Field(None, description="Received at or after (ISO 8601 with offset).")
    until: AwareDatetime | None = Field(None, description="Received at or before (ISO 8601 with offset).")
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=4096)

    @model_validator(mode="after")
    def _range_in_order(self) -> CallbackEventsQuery:
        if self.since and self.until and self.since > self.until:
            raise ValueError("since must not be after until")
        return self


class CallbackEvent(BaseModel):
    """One recorded callback; ``duplicate_count`` counts later deliveries of the same callback."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    callback_id: str
    provider: str
    source: str
    received_at: str
    status: str
    raw_status: str | None = None
    provider_event_id: str | None = None
    notification_id: str | None = None
    delivery_id: str | None = None
    incident_id: str | None = None
    connector_id: str | None = None
    matched: bool
    unmatched_reason: str | None = None
    signature: str
    ack_applied: bool
    ack_state_before: str | None = None
    ack_state_after: str | None = None
    eta: str | None = None
    actor: str | None = None
    job_id: str | None = None
    run_id: str | None = None
    duplicate_count: int = 0
    chain_id: str
    chain_seq: int
    prev_hash: str
    record_hash: str


class CallbackEventPage(BaseModel):
    model_config = ConfigDict(defer_build=True)

    items: list[CallbackEvent]
    next_cursor: str | None = None


def register_history(routes: ApiRoutes) -> None:
    """Declare GET /alerts/oncall/events on ``routes``."""
    history = CallbackHistory(Table(settings().callbacks_table, client("dynamodb")))

    @routes.get(
        "/alerts/oncall/events",
        query=CallbackEventsQuery,
        response=CallbackEventPage,
        summary="Callback history: every authenticated callback, matched or not, newest first",
    )
    def list_callback_events(query: CallbackEventsQuery) -> CallbackEventPage:
        """Filter by incident, notification, provider, status and unmatched; a page's next_cursor continues it."""
        wanted = HistoryFilter(
            incident_id=query.incident_id,
            notification_id=query.notification_id,
            provider=query.provider,
            status=query.status,
            unmatched=query.unmatched,
            since=query.since,
            until=query.until,
        )
        items, next_cursor = history.find(wanted, limit=query.limit, cursor=query.cursor, now=utcnow())
        return CallbackEventPage(items=[CallbackEvent.model_validate(item) for item in items], next_cursor=next_cursor)
