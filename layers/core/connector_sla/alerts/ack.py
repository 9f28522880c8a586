"""ACK state of a notification: it only ever moves forward.

``unacked`` < ``acknowledged`` < ``resolved`` < ``closed``. A late ``acknowledged`` after ``resolved`` is recorded
by the caller but changes nothing here.
"""

from __future__ import annotations

ACK_STATES = ("unacked", "acknowledged", "resolved", "closed")
ACK_LIKE = frozenset({"acknowledged", "resolved", "closed"})
_RANK = {state: rank for rank, state in enumerate(ACK_STATES)}


def ack_rank(state: str) -> int:
    """Position of an ACK state; unknown states rank as ``unacked``."""
    return _RANK.get(state, 0)


def is_ack_like(status: str) -> bool:
    """Whether a callback status moves the ACK state (others are only recorded in the history)."""
    return status in ACK_LIKE


def advances(current: str, proposed: str) -> bool:
    """Whether ``proposed`` moves the ACK state forward from ``current``."""
    return is_ack_like(proposed) and ack_rank(proposed) > ack_rank(current)


def ack_timestamp_field(state: str) -> str:
    """The notification attribute that records when ``state`` was reached, e.g. ``acknowledged_at``."""
    if state not in ACK_LIKE:
        raise ValueError(f"{state!r} is not an ACK-like state")
    return f"{state}_at"
