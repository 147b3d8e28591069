"""Alertmanager webhook payload, version 4, as pydantic models.

Field names are snake_case attributes with Alertmanager's camelCase names as aliases. Unknown
extra fields (``notification_reason`` and whatever later Alertmanager versions add) are accepted
and ignored.

Episodes: a fingerprint's firing period until it resolves.

Alertmanager re-sends whole groups every group_interval and repeat_interval, HA peers send the
same notification again, a group marked "firing" can carry resolved alerts, and ``startsAt`` of
one episode can move earlier when a peer saw the alert first. :func:`place` decides, from the
latest stored episode of a fingerprint alone, where an arriving alert belongs. It is pure: the
store applies its answer inside the transaction that records the alert.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

AlertStatus = Literal["firing", "resolved"]

# Alertmanager renders "no end" as the zero time.
_ZERO_YEAR = 1


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=_camel, populate_by_name=True, extra="ignore", frozen=True
    )


class Alert(_Model):
    """One alert of a notification. Its own ``status`` counts, not the group's."""

    status: AlertStatus
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime
    ends_at: datetime | None = None
    generator_url: str = Field(default="", alias="generatorURL")
    fingerprint: str = Field(min_length=1, max_length=64)

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _utc(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        """In UTC; a time that is not a year 1 to 9999 instant in UTC is a ValueError (422),
        except ``endsAt``'s zero time (year 1 in any offset), kept as "no end"."""
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        if value.year <= _ZERO_YEAR and info.field_name == "ends_at":
            return value
        try:
            return value.astimezone(UTC)
        except (OverflowError, ValueError):  # e.g. 9999-12-31T23:59:59-01:00: year 10000 in UTC
            raise ValueError("the time is outside years 1 to 9999 in UTC") from None

    # Computed once per alert (the intake reads each several times); the model is frozen.
    @cached_property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    @cached_property
    def starts_ts(self) -> float:
        return self.starts_at.timestamp()

    @cached_property
    def ends_ts(self) -> float | None:
        """``endsAt`` in Unix seconds, or None for Alertmanager's zero time."""
        if self.ends_at is None or self.ends_at.year <= _ZERO_YEAR:
            return None
        return self.ends_at.timestamp()


class WebhookPayload(_Model):
    """The body Alertmanager posts to a webhook receiver."""

    version: Literal["4"]
    group_key: str
    truncated_alerts: int = Field(default=0, ge=0)
    status: AlertStatus
    receiver: str
    group_labels: dict[str, str] = Field(default_factory=dict)
    common_labels: dict[str, str] = Field(default_factory=dict)
    common_annotations: dict[str, str] = Field(default_factory=dict)
    external_url: str = Field(default="", alias="externalURL")
    alerts: list[Alert]


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
