"""Failure patterns added through the API, as the store keeps them (table ``patterns``).

A pattern added with ``POST /patterns`` is stored here so that a reload (SIGHUP, PUT
/configuration) or a restart keeps it; ``DELETE /patterns/{id}`` removes it. Rows come back in
the order they were added. Written once for both backends.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from remediator.audit.events import Event
from remediator.store.ops import Append, Dialect, Driven, Op, all_, one


@dataclass(frozen=True, slots=True)
class StoredPattern:
    """One API pattern: its id, its specification (a PatternSpec as JSON), who added it and
    when, and its place in the order (assigned by the store when None)."""

    id: str
    spec: dict[str, Any]
    actor: str
    added_at: float
    position: int | None = None


def from_row(row: Sequence[Any]) -> StoredPattern:
    return StoredPattern(
        id=str(row[0]),
        position=int(row[1]),
        spec=json.loads(row[2]),
        actor=str(row[3]),
        added_at=float(row[4]),
    )


def every(d: Dialect) -> Op[list[StoredPattern]]:
    rows = yield all_(
        "SELECT id, position, spec, actor, added_at FROM patterns ORDER BY position, id"
    )
    return [from_row(row) for row in rows]


def add(d: Dialect, *, pattern: StoredPattern, events: list[Event]) -> Op[StoredPattern | None]:
    """Last (position: the greatest + 1) unless it has a position; None if its id is stored."""
    row = yield one(
        (
            "INSERT INTO patterns (id, position, spec, actor, added_at) SELECT ?, "
            "coalesce(CAST(? AS BIGINT), (SELECT coalesce(max(position), 0) + 1 FROM patterns)), "
            "?, ?, ? WHERE true ON CONFLICT (id) DO NOTHING RETURNING position"
        ),
        pattern.id,
        pattern.position,
        json.dumps(pattern.spec, sort_keys=True),
        pattern.actor,
        pattern.added_at,
    )
    if row is None:
        return None
    yield Append(events)
    return replace(pattern, position=int(row[0]))


def delete(d: Dialect, *, ids: list[str], events: list[Event]) -> Op[list[str]]:
    deleted = []
    for id_ in ids:
        row = yield one("DELETE FROM patterns WHERE id = ? RETURNING id", id_)
        if row is not None:
            deleted.append(id_)
    if deleted:
        yield Append(events)
    return deleted


class PatternOps(Driven):
    async def api_patterns(self) -> list[StoredPattern]:
        return await self._read_op(every)

    async def add_api_pattern(
        self, pattern: StoredPattern, *, events: list[Event]
    ) -> StoredPattern | None:
        return await self._write_op(add, pattern=pattern, events=events)

    async def delete_api_patterns(self, ids: list[str], *, events: list[Event]) -> list[str]:
        return await self._write_op(delete, ids=ids, events=events)
