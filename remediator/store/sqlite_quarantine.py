"""Quarantine in SQLite: the quarantined targets, and lifting a quarantine once.

Mixed into :class:`~remediator.store.sqlite.SqliteStore`; a lift is one job on the single
writer, so of two lifts of one quarantine exactly one finds it (and records its events).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import TypeVar

from remediator.events import Event
from remediator.store.records import TargetState
from remediator.store.sqlite_rows import append_events

T = TypeVar("T")
_COLUMNS = "target, registered_at, quarantined_at, quarantine_reason, data"


def _state(row: tuple[object, ...]) -> TargetState:
    return TargetState(str(row[0]), row[1], row[2], row[3], json.loads(str(row[4])))  # type: ignore[arg-type]


class SqliteQuarantineOps:
    """The host class provides ``_write`` and ``_read``."""

    async def _write(self, job: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def quarantined_targets(self) -> list[TargetState]:
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT {_COLUMNS} FROM target_state "  # noqa: S608
                "WHERE quarantined_at IS NOT NULL ORDER BY target"
            ).fetchall()
        )
        return [_state(row) for row in rows]

    async def lift_quarantine(
        self,
        target: str,
        *,
        drop: tuple[str, ...] = (),
        events_for: Callable[[TargetState], list[Event]],
    ) -> TargetState | None:
        def job(c: sqlite3.Connection) -> TargetState | None:
            row = c.execute(
                f"SELECT {_COLUMNS} FROM target_state "  # noqa: S608
                "WHERE target = ? AND quarantined_at IS NOT NULL",
                (target,),
            ).fetchone()
            if row is None:
                return None
            before = _state(row)
            kept = {k: v for k, v in before.data.items() if k not in drop}
            c.execute(
                "UPDATE target_state SET quarantined_at = NULL, quarantine_reason = NULL, "
                "data = ? WHERE target = ?",
                (json.dumps(kept, sort_keys=True), target),
            )
            append_events(c, events_for(before))
            return before

        return await self._write(job)
