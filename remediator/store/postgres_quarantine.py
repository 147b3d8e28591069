"""Quarantine in PostgreSQL: the quarantined targets, and lifting a quarantine once.

A lift locks the target's row (``FOR UPDATE``): of two replicas lifting one quarantine at once,
exactly one finds it quarantined and records its events; the other finds nothing to lift.
"""

from __future__ import annotations

from collections.abc import Callable

from remediator.events import Event
from remediator.store import quarantine_sql as sql
from remediator.store.postgres_tx import PgBase, Tx
from remediator.store.records import TargetState


class PostgresQuarantineOps(PgBase):
    async def quarantined_targets(self) -> list[TargetState]:
        return [sql.state(row) for row in await self._rows(sql.LIST)]

    async def lift_quarantine(
        self,
        target: str,
        *,
        drop: tuple[str, ...] = (),
        events_for: Callable[[TargetState], list[Event]],
    ) -> TargetState | None:
        async def job(tx: Tx) -> TargetState | None:
            row = await tx.one(sql.find("%s", lock="FOR UPDATE"), (target,))
            if row is None:
                return None
            before = sql.state(row)
            await tx.execute(sql.release("%s"), (sql.kept(before, drop), target))
            await tx.append(events_for(before))
            return before

        return await self._write(job)
