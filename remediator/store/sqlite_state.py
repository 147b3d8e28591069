"""The engine's persisted state in SQLite: remediations, breakers, flags, targets.

Mixed into :class:`~remediator.store.sqlite.SqliteStore`. Every read-modify-write (breaker
admission, remediation start) runs as one job on the single writer, so it is atomic.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from remediator import breaker as breakers
from remediator.breaker import BreakerState, Transition
from remediator.config import CircuitBreakerConfig
from remediator.episodes import Episode
from remediator.events import Event
from remediator.recording import Recording
from remediator.store.records import (
    COUNTED,
    RUNNING,
    GuardSnapshot,
    Remediation,
    TargetState,
    guard_snapshot_from_row,
)
from remediator.store.rows import REMEDIATION_COLUMNS, unrecovered_sql
from remediator.store.sqlite_driver import append_events
from remediator.store.sqlite_guards import guard_snapshot_sql

T = TypeVar("T")
TransitionEvents = Callable[[Transition], list[Event]]


def _breaker(conn: sqlite3.Connection, target: str) -> BreakerState:
    row = conn.execute(
        "SELECT state, failures, opened_at, trials FROM breakers WHERE target = ?", (target,)
    ).fetchone()
    if row is None:
        return BreakerState(target=target)
    return BreakerState(
        target=target, state=row[0], failures=row[1], opened_at=row[2], trials=row[3]
    )


def _save_breaker(conn: sqlite3.Connection, state: BreakerState, now: float) -> None:
    conn.execute(
        "INSERT INTO breakers (target, state, failures, opened_at, trials, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (target) DO UPDATE SET state = excluded.state, "
        "failures = excluded.failures, opened_at = excluded.opened_at, trials = excluded.trials, "
        "updated_at = excluded.updated_at",
        (state.target, state.state, state.failures, state.opened_at, state.trials, now),
    )


def _target_state(conn: sqlite3.Connection, target: str) -> TargetState:
    row = conn.execute(
        "SELECT registered_at, quarantined_at, quarantine_reason, data FROM target_state "
        "WHERE target = ?",
        (target,),
    ).fetchone()
    if row is None:
        return TargetState(target=target)
    return TargetState(target, row[0], row[1], row[2], json.loads(row[3]))


class SqliteStateOps:
    """Engine-state operations; the host class provides ``_write``, ``_read`` and
    ``recording``."""

    recording: Recording

    async def _write(self, job: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    def _peek(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    # -- episodes ----------------------------------------------------------------------------

    async def episode(self, episode_id: int) -> Episode | None:
        row = self._peek(  # by primary key: on this thread, no hand-off
            lambda c: c.execute(
                "SELECT id, fingerprint, starts_at, resolved_at FROM episodes WHERE id = ?",
                (episode_id,),
            ).fetchone()
        )
        return Episode(*row) if row else None

    async def open_episodes(self) -> list[Episode]:
        """Every episode still firing."""
        rows = await self._read(
            lambda c: c.execute(
                "SELECT id, fingerprint, starts_at, resolved_at FROM episodes "
                "WHERE resolved_at IS NULL ORDER BY id"
            ).fetchall()
        )
        return [Episode(*row) for row in rows]

    async def mark_targets(self, pairs: list[tuple[int, str]]) -> None:
        """Record which target each episode is about (for the blast-radius guard)."""
        await self._write(
            lambda c: c.executemany(
                "UPDATE episodes SET target = ? WHERE id = ?", [(t, e) for e, t in pairs]
            )
        )

    async def alerting_targets(self, names: list[str]) -> int:
        """How many of these targets have an open (firing) episode now."""
        names = sorted(set(names))
        if not names:
            return 0
        # One index probe per target (episodes_open), whatever the number of open episodes.
        values = ",".join(["(?)"] * len(names))
        sql = (
            f"WITH t(name) AS (VALUES {values}) SELECT count(*) FROM t WHERE EXISTS "  # noqa: S608
            "(SELECT 1 FROM episodes e WHERE e.resolved_at IS NULL AND e.target = t.name)"
        )
        row = await self._read(lambda c: c.execute(sql, names).fetchone())
        return int(row[0])

    # -- remediations ------------------------------------------------------------------------

    async def start_remediation(
        self,
        *,
        playbook: str,
        fingerprint: str,
        episode_id: int,
        target: str,
        now: float,
        state: str = RUNNING,
        reason: str = "",
        config_version: int = 0,
        events: list[Event] | None = None,
        owner: str = "",
        lease: float = 0.0,
        before_events: list[Event] | None = None,
        mark: bool = False,
    ) -> int | None:
        """Claim the one remediation of (playbook, fingerprint, episode); None if it exists.

        A running remediation whose owner's lease expired (its replica died) is taken over.
        With ``mark``, the episode is marked as about ``target`` first; ``before_events`` are
        appended whether or not the claim succeeds, ``events`` after them if it does."""

        def job(c: sqlite3.Connection) -> int | None:
            rid = claim(c)
            append_events(c, [*(before_events or []), *(events or [] if rid is not None else [])])
            return rid

        def claim(c: sqlite3.Connection) -> int | None:
            if mark:
                c.execute(
                    "UPDATE episodes SET target = ? WHERE id = ? AND target IS NOT ?",
                    (target, episode_id, target),
                )
            until = now + lease if lease else None
            cursor = c.execute(
                "INSERT OR IGNORE INTO remediations (playbook, fingerprint, episode_id, target, "
                "state, reason, started_at, config_version, owner, lease_until) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (playbook, fingerprint, episode_id, target, state, reason, now,
                 config_version, owner, until),
            )  # fmt: skip
            if cursor.rowcount == 0:
                if state != RUNNING:
                    return None
                row = c.execute(
                    "UPDATE remediations SET owner = ?, lease_until = ? WHERE playbook = ? "
                    "AND fingerprint = ? AND episode_id = ? AND state = 'running' "
                    "AND lease_until IS NOT NULL AND lease_until < ? RETURNING id",
                    (owner, until, playbook, fingerprint, episode_id, now),
                ).fetchone()
                return None if row is None else int(row[0])
            return cursor.lastrowid

        return await self._write(job)

    async def renew_remediation(self, remediation_id: int, *, owner: str, until: float) -> None:
        await self._write(
            lambda c: c.execute(
                "UPDATE remediations SET lease_until = ? WHERE id = ? AND owner = ? "
                "AND state = 'running'",
                (until, remediation_id, owner),
            )
        )

    async def lead(self, name: str, *, owner: str, now: float, ttl: float) -> bool:
        """Hold (or renew) the singleton lease ``name``; False while another owner holds it."""

        def job(c: sqlite3.Connection) -> bool:
            c.execute(
                "INSERT INTO leases (name, owner, until) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until "
                "WHERE leases.owner = excluded.owner OR leases.until < ?",
                (name, owner, now + ttl, now),
            )
            row = c.execute("SELECT owner FROM leases WHERE name = ?", (name,)).fetchone()
            return row is not None and row[0] == owner

        return await self._write(job)

    async def finish_remediation(
        self,
        remediation_id: int,
        *,
        state: str,
        now: float,
        attempts: int,
        reason: str = "",
        events: list[Event] | None = None,
        complete_item: tuple[int, str] | None = None,
    ) -> None:
        """Record the end of a remediation; with ``complete_item`` (inbox id, outcome), mark
        that inbox item done in the same transaction."""

        def job(c: sqlite3.Connection) -> None:
            c.execute(
                "UPDATE remediations SET state = ?, finished_at = ?, attempts = ?, reason = ?, "
                "lease_until = NULL WHERE id = ?",
                (state, now, attempts, reason, remediation_id),
            )
            if complete_item is not None:
                item_id, outcome = complete_item
                c.execute(
                    "UPDATE inbox SET state = 'done', outcome = ?, done_at = ?, "
                    "lease_until = NULL WHERE id = ?",
                    (outcome, now, item_id),
                )
            append_events(c, events or [])

        await self._write(job)

    async def remediations(
        self, *, target: str | None = None, state: str | None = None, limit: int = 1000
    ) -> list[Remediation]:
        clauses, params = [], []
        if target is not None:
            clauses.append("target = ?")
            params.append(target)
        if state is not None:
            clauses.append("state = ?")
            params.append(state)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {REMEDIATION_COLUMNS} FROM remediations {where} ORDER BY id LIMIT ?"  # noqa: S608
        rows = await self._read(lambda c: c.execute(sql, [*params, limit]).fetchall())
        return [Remediation(*row) for row in rows]

    async def unrecovered(
        self, *, finished_before: float, after_id: int = 0, limit: int = 500
    ) -> list[Remediation]:
        sql, params = unrecovered_sql("?"), [finished_before, after_id, limit]
        rows = await self._read(lambda c: c.execute(sql, params).fetchall())
        return [Remediation(*row) for row in rows]

    async def last_started(self, *, target: str, playbook: str) -> float | None:
        marks = ",".join("?" * len(COUNTED))
        sql = (
            "SELECT max(started_at) FROM remediations "  # noqa: S608
            f"WHERE target = ? AND playbook = ? AND state IN ({marks})"
        )
        row = await self._read(lambda c: c.execute(sql, (target, playbook, *COUNTED)).fetchone())
        return None if row[0] is None else float(row[0])

    async def count_started(self, *, target: str, since: float) -> int:
        marks = ",".join("?" * len(COUNTED))
        sql = (
            "SELECT count(*) FROM remediations "  # noqa: S608
            f"WHERE target = ? AND started_at > ? AND state IN ({marks})"
        )
        row = await self._read(lambda c: c.execute(sql, (target, since, *COUNTED)).fetchone())
        return int(row[0])

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
        sql, params = guard_snapshot_sql(
            target=target,
            playbook=playbook,
            flag=flag,
            peers=peers,
            since=since,
            episode_id=episode_id,
        )
        row = self._peek(lambda c: c.execute(sql, params).fetchone())  # index look-ups only
        return guard_snapshot_from_row(row, target=target)

    async def interrupt_running(
        self,
        *,
        now: float,
        events_for: Callable[[Remediation], list[Event]],
        expired_only: bool = False,
    ) -> list[Remediation]:
        """Mark remediations left running by a crash as interrupted, with their events. With
        ``expired_only``, only those whose owner's lease has expired (other replicas live on)."""

        def job(c: sqlite3.Connection) -> list[Remediation]:
            sql = f"SELECT {REMEDIATION_COLUMNS} FROM remediations WHERE state = ?"  # noqa: S608
            params: tuple[object, ...] = (RUNNING,)
            if expired_only:
                sql += " AND (lease_until IS NULL OR lease_until < ?)"
                params = (RUNNING, now)
            found = [Remediation(*row) for row in c.execute(sql, params).fetchall()]
            for item in found:
                c.execute(
                    "UPDATE remediations SET state = 'interrupted', finished_at = ?, "
                    "lease_until = NULL WHERE id = ?",
                    (now, item.id),
                )
                append_events(c, events_for(item))
            return found

        return await self._write(job)

    # -- circuit breakers ----------------------------------------------------------------------

    async def breakers(self) -> list[BreakerState]:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT target, state, failures, opened_at, trials FROM breakers ORDER BY target"
            ).fetchall()
        )
        return [BreakerState(*row) for row in rows]

    async def breaker(self, target: str) -> BreakerState:
        return await self._read(lambda c: _breaker(c, target))

    async def _breaker_step(
        self,
        target: str,
        now: float,
        step: Callable[[BreakerState], tuple[Any, Transition]],
        events: TransitionEvents,
    ) -> tuple[Any, Transition]:
        def job(c: sqlite3.Connection) -> tuple[Any, Transition]:
            answer, transition = step(_breaker(c, target))
            _save_breaker(c, transition.state, now)
            if transition.changed_to is not None:
                append_events(c, events(transition))
            return answer, transition

        return await self._write(job)

    async def admit(
        self, target: str, settings: CircuitBreakerConfig, *, now: float, events: TransitionEvents
    ) -> tuple[bool, Transition]:
        """Atomically ask the target's breaker to admit one action."""
        allowed, transition = await self._breaker_step(
            target, now, lambda s: breakers.admit(s, settings, now), events
        )
        return bool(allowed), transition

    async def report(
        self,
        target: str,
        settings: CircuitBreakerConfig,
        *,
        ok: bool,
        now: float,
        events: TransitionEvents,
    ) -> Transition:
        _, transition = await self._breaker_step(
            target, now, lambda s: (None, breakers.record(s, settings, ok=ok, now=now)), events
        )
        return transition

    async def tick(
        self, target: str, settings: CircuitBreakerConfig, *, now: float, events: TransitionEvents
    ) -> Transition:
        _, transition = await self._breaker_step(
            target, now, lambda s: (None, breakers.tick(s, settings, now)), events
        )
        return transition

    async def reset_breaker(
        self, target: str, *, now: float, events: TransitionEvents
    ) -> Transition:
        _, transition = await self._breaker_step(
            target, now, lambda s: (None, breakers.reset(s)), events
        )
        return transition

    # -- flags and targets ---------------------------------------------------------------------

    async def flag(self, name: str) -> str | None:
        row = await self._read(
            lambda c: c.execute("SELECT value FROM flags WHERE name = ?", (name,)).fetchone()
        )
        return None if row is None else str(row[0])

    async def set_flag(
        self, name: str, value: str, *, actor: str, now: float, events: list[Event]
    ) -> None:
        def job(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO flags (name, value, actor, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value, actor = excluded.actor, "
                "updated_at = excluded.updated_at",
                (name, value, actor, now),
            )
            append_events(c, events)

        await self._write(job)

    async def target_state(self, target: str) -> TargetState:
        return await self._read(lambda c: _target_state(c, target))

    async def register_targets(
        self, names: list[str], *, now: float, events_for: Callable[[str], list[Event]]
    ) -> list[str]:
        """Record targets seen for the first time; returns the new names."""

        def job(c: sqlite3.Connection) -> list[str]:
            new = []
            for name in names:
                cursor = c.execute(
                    "INSERT OR IGNORE INTO target_state (target, registered_at) VALUES (?, ?)",
                    (name, now),
                )
                if cursor.rowcount:
                    new.append(name)
                    append_events(c, events_for(name))
            return new

        return await self._write(job)

    async def set_quarantine(
        self, target: str, *, reason: str | None, now: float, events: list[Event]
    ) -> None:
        """Quarantine a target (``reason`` set) or release it (``reason`` None)."""

        def job(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO target_state (target, quarantined_at, quarantine_reason) "
                "VALUES (?, ?, ?) ON CONFLICT (target) DO UPDATE SET "
                "quarantined_at = excluded.quarantined_at, "
                "quarantine_reason = excluded.quarantine_reason",
                (target, now if reason is not None else None, reason),
            )
            append_events(c, events)

        await self._write(job)

    async def update_target_data(
        self, target: str, data: dict[str, Any], events: list[Event]
    ) -> None:
        """Merge ``data`` (e.g. the active URL after a failover) into the target's state."""

        def job(c: sqlite3.Connection) -> None:
            current = _target_state(c, target).data
            merged = json.dumps({**current, **data}, sort_keys=True)
            c.execute(
                "INSERT INTO target_state (target, data) VALUES (?, ?) "
                "ON CONFLICT (target) DO UPDATE SET data = excluded.data",
                (target, merged),
            )
            append_events(c, events)

        await self._write(job)
