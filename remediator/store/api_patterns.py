"""Failure patterns added through the API, as the store keeps them (table ``patterns``).

A pattern added with ``POST /patterns`` is stored here so that a reload (SIGHUP, PUT
/configuration) or a restart keeps it; ``DELETE /patterns/{id}`` removes it. Rows come back in
the order they were added. The SQL is written once, with ``?`` marks; the PostgreSQL backend
turns them into ``%s`` (:func:`pg`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class StoredPattern:
    """One API pattern: its id, its specification (a PatternSpec as JSON), who added it and
    when, and its place in the order (assigned by the store when None)."""

    id: str
    spec: dict[str, Any]
    actor: str
    added_at: float
    position: int | None = None


SELECT = "SELECT id, position, spec, actor, added_at FROM patterns ORDER BY position, id"
INSERT = (
    "INSERT INTO patterns (id, position, spec, actor, added_at) "
    "SELECT ?, coalesce(CAST(? AS BIGINT), (SELECT coalesce(max(position), 0) + 1 FROM patterns)), "
    "?, ?, ? WHERE true ON CONFLICT (id) DO NOTHING RETURNING position"
)
DELETE = "DELETE FROM patterns WHERE id = ? RETURNING id"


def insert_params(pattern: StoredPattern) -> tuple[Any, ...]:
    spec = json.dumps(pattern.spec, sort_keys=True)
    return (pattern.id, pattern.position, spec, pattern.actor, pattern.added_at)


def from_row(row: Sequence[Any]) -> StoredPattern:
    return StoredPattern(
        id=str(row[0]),
        position=int(row[1]),
        spec=json.loads(row[2]),
        actor=str(row[3]),
        added_at=float(row[4]),
    )


def pg(sql: str) -> str:
    """The statement in PostgreSQL's paramstyle."""
    return sql.replace("?", "%s")
