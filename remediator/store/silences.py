"""Silences: the Alertmanager silences remediator made and has not expired yet — both backends.

One row per reason for a silence (its ``key``: ``remediation:<id>`` or
``quarantine:<target>:<since>``) with the id Alertmanager gave it. A row is added with its
``recovery:silence_created`` event and removed with its ``recovery:silence_expired`` event, each
in one commit; a row is added only if its key has none (``ON CONFLICT DO NOTHING``), so of two
replicas the first one's row stands.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from remediator.audit.events import Event
from remediator.store.ops import Append, Dialect, Driven, Op, all_, run

COLUMNS = "key, silence_id, created_at, ends_at"


@dataclass(frozen=True, slots=True)
class StoredSilence:
    key: str  # why: remediation:<id> or quarantine:<target>:<since>
    silence_id: str  # Alertmanager's id
    created_at: float
    ends_at: float  # when Alertmanager ends it by itself


def _silence(row: Sequence[Any]) -> StoredSilence:
    return StoredSilence(str(row[0]), str(row[1]), float(row[2]), float(row[3]))


def listed(d: Dialect) -> Op[list[StoredSilence]]:
    rows = yield all_(f"SELECT {COLUMNS} FROM silences ORDER BY key")  # noqa: S608
    return [_silence(row) for row in rows]


def add(d: Dialect, *, silence: StoredSilence, events: list[Event]) -> Op[bool]:
    added = yield run(
        f"INSERT INTO silences ({COLUMNS}) VALUES (?, ?, ?, ?) "  # noqa: S608
        "ON CONFLICT (key) DO NOTHING",
        silence.key,
        silence.silence_id,
        silence.created_at,
        silence.ends_at,
    )
    if added:
        yield Append(events)
    return bool(added)


def drop(d: Dialect, *, key: str, silence_id: str, events: list[Event]) -> Op[bool]:
    dropped = yield run("DELETE FROM silences WHERE key = ? AND silence_id = ?", key, silence_id)
    if dropped:
        yield Append(events)
    return bool(dropped)


class Silences(Protocol):
    """The silences remediator made and has not expired (remediator/store/silences.py)."""

    async def silences(self) -> list[StoredSilence]:
        """Every stored silence, by key."""
        ...

    async def add_silence(self, silence: StoredSilence, *, events: list[Event]) -> bool:
        """Store ``silence`` and append ``events`` in one commit; False (nothing done) when its
        key already has one."""
        ...

    async def drop_silence(self, key: str, silence_id: str, *, events: list[Event]) -> bool:
        """Remove the silence and append ``events`` in one commit; False when it was gone."""
        ...


class SilenceOps(Driven):
    async def silences(self) -> list[StoredSilence]:
        return await self._read_op(listed)

    async def add_silence(self, silence: StoredSilence, *, events: list[Event]) -> bool:
        return await self._write_op(add, silence=silence, events=events)

    async def drop_silence(self, key: str, silence_id: str, *, events: list[Event]) -> bool:
        return await self._write_op(drop, key=key, silence_id=silence_id, events=events)
