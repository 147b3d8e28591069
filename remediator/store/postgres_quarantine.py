"""Quarantine in PostgreSQL: the quarantined targets, and lifting a quarantine once.

A lift locks the target's row (``FOR UPDATE``): of two replicas lifting one quarantine at once,
exactly one finds it quarantined and records its events; the other finds nothing to lift.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from remediator.events import Event
from remediator.store.postgres_tx import PgBase, Tx
from remediator.store.records import TargetState

_COLUMNS = "target, registered_at, quarantined_at, quarantine_reason, data"


def _state(row: tuple[Any, ...]) -> TargetState:
    return TargetState(str(row[0]), row[1], row[2], row[3], json.loads(row[4]))


class PostgresQuarantineOps(PgBase):
    async def quarantined_targets(self) -> list[TargetState]:
        rows = await self._rows(
            f"SELECT {_COLUMNS} FROM target_state "  # noqa: S608
            "WHERE quarantined_at IS NOT NULL ORDER BY target"
        )
        return [_state(row) for row in rows]

    async def lift_quarantine(
        self,
        target: str,
        *,
        drop: tuple[str, ...] = (),
        events_for: Callable[[TargetState], list[Event]],
    ) -> TargetState | None:
        async def job(tx: Tx) -> TargetState | None:
            row = await tx.one(
                f"SELECT {_COLUMNS} FROM target_state "  # noqa: S608
                "WHERE target = %s AND quarantined_at IS NOT NULL FOR UPDATE",
                (target,),
            )
            if row is None:
                return None
            before = _state(row)
            kept = {k: v for k, v in before.data.items() if k not in drop}
            await tx.execute(
                "UPDATE target_state SET quarantined_at = NULL, quarantine_reason = NULL, "
                "data = %s WHERE target = %s",
                (json.dumps(kept, sort_keys=True), target),
            )
            await tx.append(events_for(before))
            return before

        return await self._write(job)
