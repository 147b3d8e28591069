"""Target state: registration, quarantine, failover data — both backends (lifting a
quarantine once is in remediator/store/quarantine.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from remediator.audit.events import Event
from remediator.store.ops import Append, Dialect, Driven, Op, all_, one, run
from remediator.store.records import TargetState


def find(d: Dialect, *, target: str) -> Op[TargetState]:
    row = yield one(
        (
            "SELECT registered_at, quarantined_at, quarantine_reason, data FROM target_state "
            "WHERE target = ?"
        ),
        target,
    )
    if row is None:
        return TargetState(target=target)
    return TargetState(target, row[0], row[1], row[2], json.loads(row[3]))


def register(
    d: Dialect, *, names: list[str], now: float, events_for: Callable[[str], list[Event]]
) -> Op[list[str]]:
    """One statement; rows inserted in name order (PostgreSQL: one lock order)."""
    ordered = sorted(set(names))
    if not ordered:
        return []
    rows = yield all_(
        (
            "INSERT INTO target_state (target, registered_at) "  # noqa: S608
            f"VALUES {', '.join(['(?, ?)'] * len(ordered))} "
            "ON CONFLICT (target) DO NOTHING RETURNING target"
        ),
        *(value for name in ordered for value in (name, now)),
    )
    created = {str(row[0]) for row in rows}
    new = [name for name in dict.fromkeys(names) if name in created]
    yield Append([event for name in new for event in events_for(name)])
    return new


def quarantine(
    d: Dialect, *, target: str, reason: str | None, now: float, events: list[Event]
) -> Op[None]:
    yield run(
        (
            "INSERT INTO target_state (target, quarantined_at, quarantine_reason) "
            "VALUES (?, ?, ?) ON CONFLICT (target) DO UPDATE SET "
            "quarantined_at = excluded.quarantined_at, "
            "quarantine_reason = excluded.quarantine_reason"
        ),
        target,
        now if reason is not None else None,
        reason,
    )
    yield Append(events)


def merge_data(d: Dialect, *, target: str, data: dict[str, Any], events: list[Event]) -> Op[None]:
    """The row inserted if missing, then read locked, then written."""
    yield run(
        "INSERT INTO target_state (target) VALUES (?) ON CONFLICT (target) DO NOTHING",
        target,
    )
    row = yield one("SELECT data FROM target_state WHERE target = ?" + d.for_update, target)  # noqa: S608
    current = json.loads(row[0]) if row else {}
    yield run(
        "UPDATE target_state SET data = ? WHERE target = ?",
        json.dumps({**current, **data}, sort_keys=True),
        target,
    )
    yield Append(events)


class TargetOps(Driven):
    async def target_state(self, target: str) -> TargetState:
        return await self._read_op(find, target=target)

    async def register_targets(
        self, names: list[str], *, now: float, events_for: Callable[[str], list[Event]]
    ) -> list[str]:
        """Record targets seen for the first time; returns the new names (in given order)."""
        return await self._write_op(register, names=names, now=now, events_for=events_for)

    async def set_quarantine(
        self, target: str, *, reason: str | None, now: float, events: list[Event]
    ) -> None:
        """Quarantine a target (``reason`` set) or release it (``reason`` None)."""
        await self._write_op(quarantine, target=target, reason=reason, now=now, events=events)

    async def update_target_data(
        self, target: str, data: dict[str, Any], events: list[Event]
    ) -> None:
        """Merge ``data`` (e.g. the active URL after a failover) into the target's state."""
        await self._write_op(merge_data, target=target, data=data, events=events)
