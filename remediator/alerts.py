"""Alertmanager webhook payload, version 4, as pydantic models.

Field names are snake_case attributes with Alertmanager's camelCase names as aliases. Unknown
extra fields (``notification_reason`` and whatever later Alertmanager versions add) are accepted
and ignored.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

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
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC) if value.year > _ZERO_YEAR else value

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def starts_ts(self) -> float:
        return self.starts_at.timestamp()

    @property
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
