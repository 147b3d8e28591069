"""Step intents — both backends.

A run records the intent of each state-changing step just before calling its action (one row
per remediation and step, replaced by a later attempt); a replica taking the remediation over
reads them (remediator/engine/intents.py). The rows are kept like the remediations they belong to.
"""

from __future__ import annotations

import json

from remediator.store.ops import Dialect, Driven, Op, all_, run
from remediator.store.records import StepIntent


def record(d: Dialect, *, intent: StepIntent) -> Op[None]:
    yield run(
        (
            "INSERT INTO step_intents (remediation_id, step, action, target, owner, began_at, "
            "probe) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (remediation_id, step) DO UPDATE "
            "SET action = excluded.action, target = excluded.target, owner = excluded.owner, "
            "began_at = excluded.began_at, probe = excluded.probe"
        ),
        intent.remediation_id,
        intent.step,
        intent.action,
        intent.target,
        intent.owner,
        intent.began_at,
        json.dumps(intent.probe, sort_keys=True),
    )


def of(d: Dialect, *, remediation_id: int) -> Op[list[StepIntent]]:
    rows = yield all_(
        (
            "SELECT remediation_id, step, action, target, owner, began_at, probe "
            "FROM step_intents WHERE remediation_id = ? ORDER BY step"
        ),
        remediation_id,
    )
    return [
        StepIntent(int(r[0]), int(r[1]), r[2], r[3], r[4], float(r[5]), json.loads(r[6]))
        for r in rows
    ]


class IntentOps(Driven):
    async def record_intent(self, intent: StepIntent) -> None:
        await self._write_op(record, intent=intent)

    async def step_intents(self, remediation_id: int) -> list[StepIntent]:
        return await self._read_op(of, remediation_id=remediation_id)
