"""Step intents in SQLite (the SQL is in remediator/store/intents_sql.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

from remediator.store.intents_sql import RECORD, SELECT, from_row, params
from remediator.store.records import StepIntent

T = TypeVar("T")


class SqliteIntentOps:
    """Mixed into :class:`~remediator.store.sqlite.SqliteStore`."""

    async def _write(self, job: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def record_intent(self, intent: StepIntent) -> None:
        await self._write(lambda c: c.execute(RECORD, params(intent)))

    async def step_intents(self, remediation_id: int) -> list[StepIntent]:
        rows = await self._read(lambda c: c.execute(SELECT, (remediation_id,)).fetchall())
        return [from_row(tuple(row)) for row in rows]
