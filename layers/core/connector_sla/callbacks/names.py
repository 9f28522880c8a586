"""Names the callback routes share: the provider name pattern and the normalized statuses a callback can carry.

No pydantic and nothing of ours is imported here: the history routes and the provider routes each load only their
own models, and the callback function reads the statuses on its cold path (``intake.NORMALIZED_STATUSES``).
"""

from __future__ import annotations

from typing import Literal

PROVIDER_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,39}$"

CallbackStatus = Literal[
    "triggered",
    "acknowledged",
    "unacknowledged",
    "resolved",
    "closed",
    "reopened",
    "escalated",
    "reassigned",
    "delegated",
    "annotated",
    "priority_changed",
    "responder_added",
    "status_update",
]
