"""Step intents in PostgreSQL (the SQL is in remediator/store/intents_sql.py)."""

from __future__ import annotations

from remediator.store.intents_sql import RECORD, SELECT, from_row, params, pg
from remediator.store.postgres_tx import PgBase
from remediator.store.records import StepIntent


class PostgresIntentOps(PgBase):
    """Mixed into :class:`~remediator.store.postgres.PostgresStore`."""

    async def record_intent(self, intent: StepIntent) -> None:
        await self._write(lambda tx: tx.execute(pg(RECORD), params(intent)))

    async def step_intents(self, remediation_id: int) -> list[StepIntent]:
        rows = await self._rows(pg(SELECT), (remediation_id,))
        return [from_row(tuple(row)) for row in rows]
