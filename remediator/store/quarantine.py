"""Quarantine: the quarantined targets, and lifting a quarantine once — both backends.

A lift reads the target's row locked (PostgreSQL's ``FOR UPDATE``; on SQLite the single writer
runs it alone), so of two lifts of one quarantine — two replicas at once — exactly one finds it
quarantined and records its events; the other finds nothing to lift.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from remediator.audit.events import Event
from remediator.store.ops import Append, Dialect, Driven, Op, all_, one, run
from remediator.store.records import TargetState

COLUMNS = "target, registered_at, quarantined_at, quarantine_reason, data"


def state(row: Sequence[Any]) -> TargetState:
    return TargetState(str(row[0]), row[1], row[2], row[3], json.loads(row[4]))


def quarantined(d: Dialect) -> Op[list[TargetState]]:
    rows = yield all_(
        f"SELECT {COLUMNS} FROM target_state WHERE quarantined_at IS NOT NULL "  # noqa: S608
        "ORDER BY target"
    )
    return [state(row) for row in rows]


def lift(
    d: Dialect,
    *,
    target: str,
    drop: tuple[str, ...],
    events_for: Callable[[TargetState], list[Event]],
) -> Op[TargetState | None]:
    select = f"SELECT {COLUMNS} FROM target_state WHERE target = ? AND quarantined_at IS NOT NULL"  # noqa: S608
    row = yield one(
        select + d.for_update,
        target,
    )
    if row is None:
        return None
    before = state(row)
    kept = {k: v for k, v in before.data.items() if k not in drop}
    yield run(
        (
            "UPDATE target_state SET quarantined_at = NULL, quarantine_reason = NULL, "
            "data = ? WHERE target = ?"
        ),
        json.dumps(kept, sort_keys=True),
        target,
    )
    yield Append(events_for(before))
    return before


class QuarantineOps(Driven):
    async def quarantined_targets(self) -> list[TargetState]:
        return await self._read_op(quarantined)

    async def lift_quarantine(
        self,
        target: str,
        *,
        drop: tuple[str, ...] = (),
        events_for: Callable[[TargetState], list[Event]],
    ) -> TargetState | None:
        return await self._write_op(lift, target=target, drop=drop, events_for=events_for)
