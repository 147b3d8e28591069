"""Episodes: a fingerprint's firing period until it resolves.

Alertmanager re-sends whole groups every group_interval and repeat_interval, HA peers send the
same notification again, a group marked "firing" can carry resolved alerts, and ``startsAt`` of
one episode can move earlier when a peer saw the alert first. :func:`place` decides, from the
latest stored episode of a fingerprint alone, where an arriving alert belongs. It is pure: the
store applies its answer inside the transaction that records the alert.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from remediator.alerts import AlertStatus


@dataclass(frozen=True, slots=True)
class Episode:
    """The stored state of one episode."""

    id: int
    fingerprint: str
    starts_at: float
    resolved_at: float | None  # None while the episode is open

    @property
    def open(self) -> bool:
        return self.resolved_at is None


class Placement(Enum):
    SAME = "same"  # belongs to the latest episode (still open, or a late repeat of a closed one)
    NEW_OPEN = "new_open"  # a firing alert that starts a new episode
    NEW_CLOSED = "new_closed"  # a resolved alert of an episode never seen firing
    CLOSE = "close"  # a resolved alert that ends the open episode
    STALE = "stale"  # a late copy from an earlier episode (an HA peer): recorded, changes nothing


def place(
    latest: Episode | None,
    *,
    status: AlertStatus,
    starts_at: float,
    ends_at: float | None,
    previous: Episode | None = None,
) -> Placement:
    """Where an alert with this status and time range belongs, given the latest episode (and
    the one before it, to recognise late copies of an earlier episode from an HA peer)."""
    if latest is None:
        return Placement.NEW_OPEN if status == "firing" else Placement.NEW_CLOSED
    if latest.open:
        if status == "resolved":
            # A resolve that ended before this episode began belongs to an earlier one.
            stale = ends_at is not None and ends_at < latest.starts_at
            return Placement.STALE if stale else Placement.CLOSE
        # A firing copy that started before the previous episode ended belongs to that one.
        ended = previous.resolved_at if previous is not None else None
        if ended is not None and starts_at < ended:
            return Placement.STALE
        return Placement.SAME
    # The latest episode is closed. An alert that started before it ended is a late repeat of it
    # (an HA peer, or a re-send racing the resolve); one that started at or after is a new one.
    assert latest.resolved_at is not None
    if starts_at < latest.resolved_at:
        return Placement.SAME
    return Placement.NEW_OPEN if status == "firing" else Placement.NEW_CLOSED


def resolved_time(*, ends_at: float | None, received_at: float) -> float:
    """When a resolved alert ended: its ``endsAt``, or the arrival time if it has none."""
    return ends_at if ends_at is not None else received_at
