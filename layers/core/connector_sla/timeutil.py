"""UTC timestamps as the service writes them: ISO 8601, millisecond precision, ``Z`` suffix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def to_iso(moment: datetime) -> str:
    """Format an aware datetime as ``2026-12-03T19:22:00.123Z``; these strings sort in time order."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    """Parse an ISO 8601 timestamp with an explicit offset (``Z`` or ``+hh:mm``) into an aware UTC datetime."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset; expected e.g. 2026-12-03T19:22:00Z")
    return moment.astimezone(UTC)


def day_of(moment: datetime) -> str:
    """The UTC calendar day of a moment, ``YYYY-MM-DD``: the partition key of the by-day indexes."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


def days_between(start: datetime, end: datetime) -> list[str]:
    """Every UTC day touched by ``[start, end]``, oldest first."""
    if end < start:
        return []
    first = start.astimezone(UTC).date()
    last = end.astimezone(UTC).date()
    return [(first + timedelta(days=offset)).isoformat() for offset in range((last - first).days + 1)]


def epoch_seconds(moment: datetime) -> int:
    """Whole Unix seconds of a moment."""
    return int(moment.timestamp())
