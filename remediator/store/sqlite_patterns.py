"""API patterns in SQLite (remediator/store/api_patterns.py); each write is one transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from remediator.events import Event
from remediator.store.api_patterns import (
    DELETE,
    INSERT,
    SELECT,
    StoredPattern,
    from_row,
    insert_params,
)
from remediator.store.sqlite_driver import append_events

T = TypeVar("T")


class SqlitePatternOps:
    """API-pattern operations; the host class provides ``_write`` and ``_read``."""

    async def _write(self, job: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def api_patterns(self) -> list[StoredPattern]:
        rows = await self._read(lambda c: c.execute(SELECT).fetchall())
        return [from_row(row) for row in rows]

    async def add_api_pattern(
        self, pattern: StoredPattern, *, events: list[Event]
    ) -> StoredPattern | None:
        def job(c: sqlite3.Connection) -> StoredPattern | None:
            row = c.execute(INSERT, insert_params(pattern)).fetchone()
            if row is None:
                return None
            append_events(c, events)
            return replace(pattern, position=int(row[0]))

        return await self._write(job)

    async def delete_api_patterns(self, ids: list[str], *, events: list[Event]) -> list[str]:
        def job(c: sqlite3.Connection) -> list[str]:
            deleted = [i for i in ids if c.execute(DELETE, (i,)).fetchone() is not None]
            if deleted:
                append_events(c, events)
            return deleted

        return await self._write(job)
