"""Quarantine in SQLite: the quarantined targets, and lifting a quarantine once.

Mixed into :class:`~remediator.store.sqlite.SqliteStore`; a lift is one job on the single
writer, so of two lifts of one quarantine exactly one finds it (and records its events).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

from remediator.events import Event
from remediator.store import quarantine_sql as sql
from remediator.store.records import TargetState
from remediator.store.sqlite_rows import append_events

T = TypeVar("T")


class SqliteQuarantineOps:
    """The host class provides ``_write`` and ``_read``."""

    async def _write(self, job: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def quarantined_targets(self) -> list[TargetState]:
        rows = await self._read(lambda c: c.execute(sql.LIST).fetchall())
        return [sql.state(row) for row in rows]

    async def lift_quarantine(
        self,
        target: str,
        *,
        drop: tuple[str, ...] = (),
        events_for: Callable[[TargetState], list[Event]],
    ) -> TargetState | None:
        def job(c: sqlite3.Connection) -> TargetState | None:
            row = c.execute(sql.find("?"), (target,)).fetchone()
            if row is None:
                return None
            before = sql.state(row)
            c.execute(sql.release("?"), (sql.kept(before, drop), target))
            append_events(c, events_for(before))
            return before

        return await self._write(job)
