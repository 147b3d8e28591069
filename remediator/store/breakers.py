"""Circuit breakers' rows — both backends. The state machine is not here: it is the domain's
(remediator/engine/breaker.py: :class:`~remediator.engine.breaker.CircuitBreakers` runs ``admit``,
``report``, ``tick`` and ``reset`` through :meth:`BreakerOps.update_breaker`).

An update is one transaction holding the breaker's row: read locked (inserted first if missing,
``ON CONFLICT DO NOTHING``) (PostgreSQL's ``FOR UPDATE``; SQLite's single writer
runs it alone), so replicas admitting half-open trials on one target count them one at a time.
"""

from __future__ import annotations

from typing import Any, TypeVar

from remediator.store.dialect import Dialect
from remediator.store.ops import Append, Driven, Op, all_, one, run
from remediator.store.records import BreakerState, Change

R = TypeVar("R")
_COLUMNS = "state, failures, opened_at, trials"


def _state(target: str, row: tuple[Any, ...] | None) -> BreakerState:
    if row is None:
        return BreakerState(target=target)
    return BreakerState(target=target, state=row[0], failures=row[1], opened_at=row[2], trials=row[3])  # fmt: skip


def every(d: Dialect) -> Op[list[BreakerState]]:
    rows = yield all_(f"SELECT target, {_COLUMNS} FROM breakers ORDER BY target")  # noqa: S608
    return [BreakerState(*row) for row in rows]


def find(d: Dialect, *, target: str) -> Op[BreakerState]:
    row = yield one(d.sql(f"SELECT {_COLUMNS} FROM breakers WHERE target = ?"), target)  # noqa: S608
    return _state(target, row)


def update(d: Dialect, *, target: str, change: Change[R], now: float) -> Op[R]:
    select = d.sql(f"SELECT {_COLUMNS} FROM breakers WHERE target = ?") + d.for_update  # noqa: S608
    row = yield one(select, target)
    if row is None:  # the first update: insert the row, then lock it (another may have)
        yield run(
            d.sql(
                "INSERT INTO breakers (target, state, failures, opened_at, trials, updated_at) "
                "VALUES (?, 'closed', 0, NULL, 0, ?) ON CONFLICT (target) DO NOTHING"
            ),
            target,
            now,
        )
        row = yield one(select, target)
    s, result, events = change(_state(target, row))
    yield run(
        d.sql(
            "UPDATE breakers SET state = ?, failures = ?, opened_at = ?, trials = ?, "
            "updated_at = ? WHERE target = ?"
        ),
        s.state, s.failures, s.opened_at, s.trials, now, target,
    )  # fmt: skip
    yield Append(events)
    return result


class BreakerOps(Driven):
    async def breakers(self) -> list[BreakerState]:
        return await self._read_op(every)

    async def breaker(self, target: str) -> BreakerState:
        return await self._read_op(find, target=target)

    async def update_breaker(self, target: str, change: Change[R], *, now: float) -> R:
        """Atomically: read the target's row, ``change`` it (a pure function of the state read:
        the state to save, the result, the events to append), save and append; the result."""
        return await self._write_op(update, target=target, change=change, now=now)
