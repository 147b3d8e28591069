"""What the guards read (remediator/engine/guards.py) — both backends.

Every read here is index look-ups only: the alerting count probes the open episodes of each
named target (``episodes_open_target``), one probe per name, whatever the number of open
episodes; :func:`snapshot` reads everything one action's guards need in one statement (one
round trip, one consistent view).

Circuit breakers' rows — both backends. The state machine is not here: it is the domain's
(remediator/engine/guards.py: :class:`~remediator.engine.guards.CircuitBreakers` runs ``admit``,
``report``, ``tick`` and ``reset`` through :meth:`BreakerOps.update_breaker`).

An update is one transaction holding the breaker's row: read locked (inserted first if missing,
``ON CONFLICT DO NOTHING``) (PostgreSQL's ``FOR UPDATE``; SQLite's single writer
runs it alone), so replicas admitting half-open trials on one target count them one at a time.
"""

from __future__ import annotations

from typing import Any, TypeVar

from remediator.store.ops import Append, Dialect, Driven, Op, all_, many, one, run
from remediator.store.records import (
    COUNTED,
    BreakerState,
    Change,
    GuardSnapshot,
    guard_snapshot_from_row,
)

# The states of a remediation that count as started (the IN list of the counts below).
_COUNTED = f"({', '.join('?' * len(COUNTED))})"
_ALERTING = (
    "(SELECT count(*) FROM {names} WHERE EXISTS (SELECT 1 FROM episodes o "
    "WHERE o.resolved_at IS NULL AND o.target = {names}.name))"
)


def _names_cte(names: list[str], table: str) -> str:
    return f"WITH {table}(name) AS (VALUES {', '.join(['(?)'] * len(names))}) "


def mark(d: Dialect, *, pairs: list[tuple[int, str]]) -> Op[None]:
    """Rows in id order (PostgreSQL: every transaction locks them in one order)."""
    yield many("UPDATE episodes SET target = ? WHERE id = ?", [(t, e) for e, t in pairs])


def alerting(d: Dialect, *, names: list[str]) -> Op[int]:
    row = yield one(
        (_names_cte(names, "t") + "SELECT " + _ALERTING.format(names="t")),
        *names,
    )
    return int(row[0]) if row else 0


def last_started(d: Dialect, *, target: str, playbook: str) -> Op[float | None]:
    row = yield one(
        (
            "SELECT max(started_at) FROM remediations "  # noqa: S608
            f"WHERE target = ? AND playbook = ? AND state IN {_COUNTED}"
        ),
        target,
        playbook,
        *COUNTED,
    )
    return None if row is None or row[0] is None else float(row[0])


def count_started(d: Dialect, *, target: str, since: float) -> Op[int]:
    row = yield one(
        (
            "SELECT count(*) FROM remediations "  # noqa: S608
            f"WHERE target = ? AND started_at > ? AND state IN {_COUNTED}"
        ),
        target,
        since,
        *COUNTED,
    )
    return int(row[0]) if row else 0


def snapshot(
    d: Dialect,
    *,
    target: str,
    playbook: str,
    flag: str,
    peers: list[str] | None,
    since: float | None,
    episode_id: int | None,
) -> Op[GuardSnapshot]:
    """One row, read by :func:`~remediator.store.records.guard_snapshot_from_row`."""
    names = sorted(set(peers or []))
    peers_cte, alerting_, count = "", "NULL" if peers is None else "0", "NULL"
    if names:
        peers_cte, alerting_ = _names_cte(names, "peers"), _ALERTING.format(names="peers")
    if since is not None:
        count = (
            "(SELECT count(*) FROM remediations WHERE target = ? AND started_at > ? "  # noqa: S608
            f"AND state IN {_COUNTED})"
        )
    sql = (
        f"{peers_cte}SELECT e.id, e.fingerprint, e.starts_at, e.resolved_at, "  # noqa: S608
        "(SELECT value FROM flags WHERE name = ?), "
        "t.registered_at, t.quarantined_at, t.quarantine_reason, t.data, "
        "b.state, b.failures, b.opened_at, b.trials, "
        "(SELECT max(started_at) FROM remediations WHERE target = ? AND playbook = ? "
        f"AND state IN {_COUNTED}), {count}, {alerting_} "
        "FROM (SELECT 1) AS one LEFT JOIN episodes AS e ON e.id = ? "
        "LEFT JOIN target_state AS t ON t.target = ? LEFT JOIN breakers AS b ON b.target = ?"
    )
    params: list[Any] = [*names, flag, target, playbook, *COUNTED]
    if since is not None:
        params += [target, since, *COUNTED]
    params += [episode_id, target, target]
    row = yield one((sql), *params)
    assert row is not None
    return guard_snapshot_from_row(row, target=target)


class GuardOps(Driven):
    async def mark_targets(self, pairs: list[tuple[int, str]]) -> None:
        """Record which target each episode is about (for the blast-radius guard)."""
        await self._write_op(mark, pairs=sorted(pairs))

    async def alerting_targets(self, names: list[str]) -> int:
        """How many of these targets have an open (firing) episode now."""
        names = sorted(set(names))
        if not names:
            return 0
        return await self._read_op(alerting, names=names)

    async def last_started(self, *, target: str, playbook: str) -> float | None:
        return await self._read_op(last_started, target=target, playbook=playbook)

    async def count_started(self, *, target: str, since: float) -> int:
        return await self._read_op(count_started, target=target, since=since)

    async def guard_snapshot(
        self,
        *,
        target: str,
        playbook: str,
        flag: str,
        peers: list[str] | None,
        since: float | None,
        episode_id: int | None = None,
    ) -> GuardSnapshot:
        """What the guards need, in one statement (one read, one consistent view)."""
        return await self._peek_op(
            snapshot,
            target=target,
            playbook=playbook,
            flag=flag,
            peers=peers,
            since=since,
            episode_id=episode_id,
        )


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
    row = yield one(f"SELECT {_COLUMNS} FROM breakers WHERE target = ?", target)  # noqa: S608
    return _state(target, row)


def update(d: Dialect, *, target: str, change: Change[R], now: float) -> Op[R]:
    select = f"SELECT {_COLUMNS} FROM breakers WHERE target = ?" + d.for_update  # noqa: S608
    row = yield one(select, target)
    if row is None:  # the first update: insert the row, then lock it (another may have)
        yield run(
            (
                "INSERT INTO breakers (target, state, failures, opened_at, trials, updated_at) "
                "VALUES (?, 'closed', 0, NULL, 0, ?) ON CONFLICT (target) DO NOTHING"
            ),
            target,
            now,
        )
        row = yield one(select, target)
    s, result, events = change(_state(target, row))
    yield run(
        ("UPDATE breakers SET state = ?, failures = ?, opened_at = ?, trials = ?, "
            "updated_at = ? WHERE target = ?"),
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
