"""The SQL of quarantine (listing, lifting), written once for both backends: they differ only
in the placeholder (``?`` / ``%s``) and in row locking (PostgreSQL's ``FOR UPDATE``; SQLite's
single writer needs none)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from remediator.store.records import TargetState

_COLUMNS = "target, registered_at, quarantined_at, quarantine_reason, data"
LIST = (
    f"SELECT {_COLUMNS} FROM target_state WHERE quarantined_at IS NOT NULL "  # noqa: S608
    "ORDER BY target"
)


def find(placeholder: str, *, lock: str = "") -> str:
    """The state of one target (the parameter) if it is quarantined."""
    return (
        f"SELECT {_COLUMNS} FROM target_state "  # noqa: S608
        f"WHERE target = {placeholder} AND quarantined_at IS NOT NULL {lock}"
    ).rstrip()


def release(placeholder: str) -> str:
    """Release one target, its data replaced (parameters: data, target)."""
    return (
        "UPDATE target_state SET quarantined_at = NULL, quarantine_reason = NULL, "  # noqa: S608
        f"data = {placeholder} WHERE target = {placeholder}"
    )


def state(row: Sequence[Any]) -> TargetState:
    return TargetState(str(row[0]), row[1], row[2], row[3], json.loads(row[4]))


def kept(before: TargetState, drop: tuple[str, ...]) -> str:
    """The data to store after the lift: ``before``'s without the keys ``drop``."""
    return json.dumps({k: v for k, v in before.data.items() if k not in drop}, sort_keys=True)
