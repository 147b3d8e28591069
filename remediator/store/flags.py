"""Flags (named values set by operators, e.g. the kill switch) and singleton leases — both
backends."""

from __future__ import annotations

from remediator.audit.events import Event
from remediator.store.ops import Append, Dialect, Driven, Op, one, run


def value(d: Dialect, *, name: str) -> Op[str | None]:
    row = yield one("SELECT value FROM flags WHERE name = ?", name)
    return None if row is None else str(row[0])


def put(
    d: Dialect, *, name: str, value: str, actor: str, now: float, events: list[Event]
) -> Op[None]:
    yield run(
        (
            "INSERT INTO flags (name, value, actor, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value, actor = excluded.actor, "
            "updated_at = excluded.updated_at"
        ),
        name,
        value,
        actor,
        now,
    )
    yield Append(events)


def lead(d: Dialect, *, name: str, owner: str, now: float, ttl: float) -> Op[bool]:
    """The lease is taken (or renewed) only if it is this owner's or has expired."""
    row = yield one(
        (
            "INSERT INTO leases (name, owner, until) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until "
            "WHERE leases.owner = excluded.owner OR leases.until < ? RETURNING owner"
        ),
        name,
        owner,
        now + ttl,
        now,
    )
    return row is not None and row[0] == owner


class FlagOps(Driven):
    async def flag(self, name: str) -> str | None:
        return await self._read_op(value, name=name)

    async def set_flag(
        self, name: str, value: str, *, actor: str, now: float, events: list[Event]
    ) -> None:
        await self._write_op(put, name=name, value=value, actor=actor, now=now, events=events)

    async def lead(self, name: str, *, owner: str, now: float, ttl: float) -> bool:
        """Hold (or renew) the singleton lease ``name``; False while another owner holds it."""
        return await self._write_op(lead, name=name, owner=owner, now=now, ttl=ttl)
