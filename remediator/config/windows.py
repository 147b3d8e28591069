"""Maintenance windows: when a scheduled ``process.restart`` may run.

A window is a daily time range in UTC (``start`` to ``end``, ``HH:MM``; an ``end`` before
``start`` crosses midnight) on some weekdays (``days``, default every day; the day is the one the
window starts on). :meth:`MaintenanceWindow.next_start` is pure: given a time it says when the
next window opens (that time itself when a window is open).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["Day", "MaintenanceWindow"]

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _minutes(value: str) -> int:
    match = _CLOCK.match(value)
    if match is None:
        raise ValueError(f"invalid time {value!r}: HH:MM, 00:00 to 23:59")
    return int(match.group(1)) * 60 + int(match.group(2))


class MaintenanceWindow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="maintenance", pattern=r"^[a-zA-Z0-9_.-]{1,64}$")
    start: str = Field(description="Opening time, `HH:MM` UTC.")
    end: str = Field(description="Closing time, `HH:MM` UTC; before `start`: the next day.")
    days: list[Day] = Field(default_factory=lambda: list(_DAYS))

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        _minutes(value)
        return value

    @field_validator("days")
    @classmethod
    def _some(cls, value: list[Day]) -> list[Day]:
        if not value:
            raise ValueError("at least one day")
        return value

    def next_start(self, now: float) -> float:
        """``now`` if a window is open at ``now``, else when the next one opens (epoch s)."""
        start, end = _minutes(self.start), _minutes(self.end)
        length = (end - start) % (24 * 60) or 24 * 60
        at = datetime.fromtimestamp(now, UTC)
        midnight = at.replace(hour=0, minute=0, second=0, microsecond=0)
        for offset in range(-1, 8):  # yesterday's window may still be open
            day = midnight + timedelta(days=offset)
            if _DAYS[day.weekday()] not in self.days:
                continue
            opens = day + timedelta(minutes=start)
            closes = opens + timedelta(minutes=length)
            if opens <= at < closes:
                return now
            if opens > at:
                return opens.timestamp()
        raise AssertionError("a window with a day opens within a week")  # pragma: no cover
