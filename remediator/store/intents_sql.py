"""Step intents in either backend: the SQL, written once (``?`` placeholders; PostgreSQL's
mixin turns them into ``%s``), and the record read back.

A run records the intent of each state-changing step just before calling its action (one row
per remediation and step, replaced by a later attempt); a replica taking the remediation over
reads them (remediator/intents.py). The rows are kept like the remediations they belong to.
"""

from __future__ import annotations

import json
from typing import Any

from remediator.store.records import StepIntent

RECORD = (
    "INSERT INTO step_intents (remediation_id, step, action, target, owner, began_at, probe) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (remediation_id, step) DO UPDATE SET "
    "action = excluded.action, target = excluded.target, owner = excluded.owner, "
    "began_at = excluded.began_at, probe = excluded.probe"
)
SELECT = (
    "SELECT remediation_id, step, action, target, owner, began_at, probe FROM step_intents "
    "WHERE remediation_id = ? ORDER BY step"
)


def params(intent: StepIntent) -> tuple[Any, ...]:
    return (
        intent.remediation_id,
        intent.step,
        intent.action,
        intent.target,
        intent.owner,
        intent.began_at,
        json.dumps(intent.probe, sort_keys=True),
    )


def from_row(row: tuple[Any, ...]) -> StepIntent:
    return StepIntent(
        int(row[0]), int(row[1]), row[2], row[3], row[4], float(row[5]), json.loads(row[6])
    )


def pg(sql: str) -> str:
    """The statement with PostgreSQL's placeholders."""
    return sql.replace("?", "%s")
