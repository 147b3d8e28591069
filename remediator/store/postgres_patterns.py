"""API patterns in PostgreSQL (remediator/store/api_patterns.py); each write is one transaction."""

from __future__ import annotations

from dataclasses import replace

from remediator.events import Event
from remediator.store.api_patterns import (
    DELETE,
    INSERT,
    SELECT,
    StoredPattern,
    from_row,
    insert_params,
    pg,
)
from remediator.store.postgres_tx import PgBase, Tx


class PostgresPatternOps(PgBase):
    async def api_patterns(self) -> list[StoredPattern]:
        return [from_row(row) for row in await self._rows(SELECT)]

    async def add_api_pattern(
        self, pattern: StoredPattern, *, events: list[Event]
    ) -> StoredPattern | None:
        async def job(tx: Tx) -> StoredPattern | None:
            row = await tx.one(pg(INSERT), insert_params(pattern))
            if row is None:
                return None
            await tx.append(events)
            return replace(pattern, position=int(row[0]))

        return await self._write(job)

    async def delete_api_patterns(self, ids: list[str], *, events: list[Event]) -> list[str]:
        async def job(tx: Tx) -> list[str]:
            deleted = [i for i in ids if await tx.one(pg(DELETE), (i,)) is not None]
            if deleted:
                await tx.append(events)
            return deleted

        return await self._write(job)
