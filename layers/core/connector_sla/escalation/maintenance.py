"""Maintenance windows: while one covers a connector (by id or by owner team), its notifications are held.

States are still evaluated and recorded during a window; only the notifications wait. When the window ends (or
is cancelled), the held alerts of the incident's current level are delivered; the others are suppressed, and the
notification and delivery records say why. Stored in SettingsTable (``pk = MAINTENANCE``,
``sk = <ends_at>#<window_id>``), so the windows that have not ended are one key range.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from connector_sla.timeutil import parse_iso, to_iso

MAINTENANCE_PK = "MAINTENANCE"
WINDOW_SCOPES = ("connector", "team")
MAX_WINDOW = timedelta(days=14)
MAX_LEAD = timedelta(days=90)
# A held notification re-checks its hold at least this often, so a cancelled window releases it promptly.
HOLD_RECHECK = timedelta(minutes=5)


class MaintenanceWindow(NamedTuple):
    window_id: str
    scope: str
    scope_id: str
    starts_at: str
    ends_at: str
    reason: str
    created_at: str
    created_by: str
    cancelled_at: str | None = None
    cancelled_by: str | None = None

    def covers(self, connector_id: str, owner_team: str | None, now: datetime) -> bool:
        """Whether the window holds this connector's notifications at ``now``."""
        if not parse_iso(self.starts_at) <= now < parse_iso(self.ends_at):
            return False
        if self.scope == "connector":
            return self.scope_id == connector_id
        return owner_team is not None and self.scope_id == owner_team

    def describe(self) -> str:
        return (
            f"maintenance window {self.window_id} ({self.scope} {self.scope_id}, until {self.ends_at}): {self.reason}"
        )

    def to_item(self) -> dict[str, Any]:
        item = {key: value for key, value in self._asdict().items() if value is not None}
        return {"pk": MAINTENANCE_PK, "sk": f"{self.ends_at}#{self.window_id}", **item}

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> MaintenanceWindow:
        return cls(**{key: item[key] for key in cls._fields if key in item})


def covering_window(
    windows: Iterable[MaintenanceWindow], connector_id: str, owner_team: str | None, now: datetime
) -> MaintenanceWindow | None:
    """The window that holds the connector's notifications at ``now`` (the one ending last), or ``None``."""
    covering = [window for window in windows if window.covers(connector_id, owner_team, now)]
    return max(covering, key=lambda window: window.ends_at, default=None)


def hold_until(window: MaintenanceWindow, now: datetime) -> datetime:
    """When a notification held by ``window`` checks its hold again."""
    return min(parse_iso(window.ends_at), now + HOLD_RECHECK)


def window_problems(starts_at: datetime, ends_at: datetime, now: datetime) -> list[str]:
    """Why a window cannot be created, each saying what is expected; empty when it is valid."""
    problems = []
    if ends_at <= starts_at:
        problems.append("ends_at must be after starts_at")
    if ends_at <= now:
        problems.append(f"ends_at must be in the future (now is {to_iso(now)})")
    if ends_at - starts_at > MAX_WINDOW:
        problems.append(f"a window lasts at most {MAX_WINDOW.days} days; split longer maintenance into several")
    if starts_at - now > MAX_LEAD:
        problems.append(f"starts_at must be within {MAX_LEAD.days} days from now")
    return problems
