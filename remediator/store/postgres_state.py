"""The engine's persisted state in PostgreSQL: remediations, breakers, flags, targets, leases.

Mixed into :class:`~remediator.store.postgres.PostgresStore`. Each read-modify-write is one
transaction holding the row it changes (``SELECT ... FOR UPDATE``, the row inserted first if
missing), so replicas admitting actions on one breaker, or starting one remediation, see each
other's updates. Events are appended last in each transaction (the audit-head lock is always
taken last: no lock-order deadlocks).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from remediator.episodes import Episode
from remediator.events import Event
from remediator.store.postgres_breakers import PostgresBreakerOps
from remediator.store.postgres_tx import Tx
from remediator.store.records import (
    COUNTED,
    RUNNING,
    GuardSnapshot,
    Remediation,
    TargetState,
    guard_snapshot_from_row,
)
from remediator.store.rows import (
    REMEDIATION_COLUMNS,
    unrecovered_sql,
)


def _target_state(target: str, row: tuple[Any, ...] | None) -> TargetState:
    if row is None:
        return TargetState(target=target)
    return TargetState(target, row[0], row[1], row[2], json.loads(row[3]))


class PostgresStateOps(PostgresBreakerOps):
    # -- episodes ----------------------------------------------------------------------------

    async def episode(self, episode_id: int) -> Episode | None:
        row = await self._row(
            "SELECT id, fingerprint, starts_at, resolved_at FROM episodes WHERE id = %s",
            (episode_id,),
        )
        return Episode(*row) if row else None

    async def open_episodes(self) -> list[Episode]:
        """Every episode still firing."""
        rows = await self._rows(
            "SELECT id, fingerprint, starts_at, resolved_at FROM episodes "
            "WHERE resolved_at IS NULL ORDER BY id"
        )
        return [Episode(*row) for row in rows]

    async def mark_targets(self, pairs: list[tuple[int, str]]) -> None:
        """Record which target each episode is about (rows in id order: no deadlock)."""
        ordered = sorted(pairs)

        async def job(tx: Tx) -> None:
            await tx.many(
                "UPDATE episodes SET target = %s WHERE id = %s", [(t, e) for e, t in ordered]
            )

        await self._write(job)

    async def alerting_targets(self, names: list[str]) -> int:
        """How many of these targets have an open (firing) episode now."""
        if not names:
            return 0
        row = await self._row(
            "SELECT count(*) FROM unnest(%s::text[]) AS t(name) WHERE EXISTS "
            "(SELECT 1 FROM episodes e WHERE e.resolved_at IS NULL AND e.target = t.name)",
            (sorted(set(names)),),
        )
        return int(row[0]) if row else 0

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
        With ``mark``, the episode is marked as about ``target`` first (its row, then the
        remediation's: the order of every transaction that takes both); ``before_events`` are
        appended whether or not the claim succeeds, ``events`` after them if it does."""
        until = now + lease if lease else None

        async def job(tx: Tx) -> int | None:
            rid = await claim(tx)
            await tx.append([*(before_events or []), *(events or [] if rid is not None else [])])
            return rid

        async def claim(tx: Tx) -> int | None:
            if mark:
                await tx.execute(
                    "UPDATE episodes SET target = %s WHERE id = %s AND target IS DISTINCT FROM %s",
                    (target, episode_id, target),
                )
            row = await tx.one(
                "INSERT INTO remediations (playbook, fingerprint, episode_id, target, state, "
                "reason, started_at, config_version, owner, lease_until) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (playbook, fingerprint, episode_id) DO NOTHING RETURNING id",
                (playbook, fingerprint, episode_id, target, state, reason, now,
                 config_version, owner, until),
            )  # fmt: skip
            if row is None:
                if state != RUNNING:
                    return None
                row = await tx.one(
                    "UPDATE remediations SET owner = %s, lease_until = %s WHERE playbook = %s "
                    "AND fingerprint = %s AND episode_id = %s AND state = 'running' "
                    "AND lease_until IS NOT NULL AND lease_until < %s RETURNING id",
                    (owner, until, playbook, fingerprint, episode_id, now),
                )
            return None if row is None else int(row[0])

        return await self._write(job)

    async def renew_remediation(self, remediation_id: int, *, owner: str, until: float) -> None:
        await self._write(
            lambda tx: tx.execute(
                "UPDATE remediations SET lease_until = %s WHERE id = %s AND owner = %s "
                "AND state = 'running'",
                (until, remediation_id, owner),
            )
        )

    async def lead(self, name: str, *, owner: str, now: float, ttl: float) -> bool:
        """Hold (or renew) the singleton lease ``name``; False while another owner holds it."""

        async def job(tx: Tx) -> bool:
            row = await tx.one(
                "INSERT INTO leases (name, owner, until) VALUES (%s, %s, %s) "
                "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until "
                "WHERE leases.owner = excluded.owner OR leases.until < %s RETURNING owner",
                (name, owner, now + ttl, now),
            )
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
        that inbox item done in the same transaction (rows locked as by each alone: the
        remediation's, the item's, then the audit head)."""

        async def job(tx: Tx) -> None:
            await tx.execute(
                "UPDATE remediations SET state = %s, finished_at = %s, attempts = %s, "
                "reason = %s, lease_until = NULL WHERE id = %s",
                (state, now, attempts, reason, remediation_id),
            )
            if complete_item is not None:
                item_id, outcome = complete_item
                await tx.execute(
                    "UPDATE inbox SET state = 'done', outcome = %s, done_at = %s, "
                    "lease_until = NULL WHERE id = %s",
                    (outcome, now, item_id),
                )
            await tx.append(events or [])

        await self._write(job)

    async def remediations(
        self, *, target: str | None = None, state: str | None = None, limit: int = 1000
    ) -> list[Remediation]:
        clauses, params = [], []
        if target is not None:
            clauses.append("target = %s")
            params.append(target)
        if state is not None:
            clauses.append("state = %s")
            params.append(state)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {REMEDIATION_COLUMNS} FROM remediations {where} ORDER BY id LIMIT %s"  # noqa: S608
        rows = await self._rows(sql, [*params, limit])
        return [Remediation(*row) for row in rows]

    async def unrecovered(
        self, *, finished_before: float, after_id: int = 0, limit: int = 500
    ) -> list[Remediation]:
        sql, params = unrecovered_sql("%s"), [finished_before, after_id, limit]
        rows = await self._rows(sql, params)
        return [Remediation(*row) for row in rows]

    async def last_started(self, *, target: str, playbook: str) -> float | None:
        row = await self._row(
            "SELECT max(started_at) FROM remediations "
            "WHERE target = %s AND playbook = %s AND state = ANY(%s)",
            (target, playbook, list(COUNTED)),
        )
        return None if row is None or row[0] is None else float(row[0])

    async def count_started(self, *, target: str, since: float) -> int:
        row = await self._row(
            "SELECT count(*) FROM remediations "
            "WHERE target = %s AND started_at > %s AND state = ANY(%s)",
            (target, since, list(COUNTED)),
        )
        return int(row[0]) if row else 0

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
        """What the guards need, in one statement (one round trip, one consistent view)."""
        counted = list(COUNTED)
        alerting, count = "NULL", "NULL"
        params: list[Any] = [flag, target, playbook, counted]
        if since is not None:
            count = (
                "(SELECT count(*) FROM remediations WHERE target = %s AND started_at > %s "
                "AND state = ANY(%s))"
            )
            params += [target, since, counted]
        if peers is not None:  # one index probe per peer (episodes_open)
            alerting = (
                "(SELECT count(*) FROM unnest(%s::text[]) AS p(name) WHERE EXISTS "
                "(SELECT 1 FROM episodes o WHERE o.resolved_at IS NULL AND o.target = p.name))"
            )
            params.append(sorted(set(peers)))
        row = await self._row(
            "SELECT e.id, e.fingerprint, e.starts_at, e.resolved_at, "  # noqa: S608
            "(SELECT value FROM flags WHERE name = %s), "
            "t.registered_at, t.quarantined_at, t.quarantine_reason, t.data, "
            "b.state, b.failures, b.opened_at, b.trials, "
            "(SELECT max(started_at) FROM remediations WHERE target = %s AND playbook = %s "
            f"AND state = ANY(%s)), {count}, {alerting} "
            "FROM (SELECT 1) AS one LEFT JOIN episodes AS e ON e.id = %s "
            "LEFT JOIN target_state AS t ON t.target = %s "
            "LEFT JOIN breakers AS b ON b.target = %s",
            [*params, episode_id, target, target],
        )
        assert row is not None
        return guard_snapshot_from_row(row, target=target)

    async def interrupt_running(
        self,
        *,
        now: float,
        events_for: Callable[[Remediation], list[Event]],
        expired_only: bool = False,
    ) -> list[Remediation]:
        """Mark remediations left running by a crash as interrupted, with their events. With
        ``expired_only``, only those whose owner's lease has expired (other replicas live on).
        Rows another replica is changing right now are skipped (it is dealing with them)."""

        async def job(tx: Tx) -> list[Remediation]:
            sql = f"SELECT {REMEDIATION_COLUMNS} FROM remediations WHERE state = 'running'"  # noqa: S608
            params: tuple[Any, ...] = ()
            if expired_only:
                sql += " AND (lease_until IS NULL OR lease_until < %s)"
                params = (now,)
            rows = await tx.all(sql + " ORDER BY id FOR UPDATE SKIP LOCKED", params)
            found = [Remediation(*row) for row in rows]
            if not found:
                return []
            await tx.execute(
                "UPDATE remediations SET state = 'interrupted', finished_at = %s, "
                "lease_until = NULL WHERE id = ANY(%s)",
                (now, [item.id for item in found]),
            )
            await tx.append([event for item in found for event in events_for(item)])
            return found

        return await self._write(job)

    # -- flags and targets ---------------------------------------------------------------------

    async def flag(self, name: str) -> str | None:
        row = await self._row("SELECT value FROM flags WHERE name = %s", (name,))
        return None if row is None else str(row[0])

    async def set_flag(
        self, name: str, value: str, *, actor: str, now: float, events: list[Event]
    ) -> None:
        async def job(tx: Tx) -> None:
            await tx.execute(
                "INSERT INTO flags (name, value, actor, updated_at) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value, "
                "actor = excluded.actor, updated_at = excluded.updated_at",
                (name, value, actor, now),
            )
            await tx.append(events)

        await self._write(job)

    async def target_state(self, target: str) -> TargetState:
        row = await self._row(
            "SELECT registered_at, quarantined_at, quarantine_reason, data FROM target_state "
            "WHERE target = %s",
            (target,),
        )
        return _target_state(target, row)

    async def register_targets(
        self, names: list[str], *, now: float, events_for: Callable[[str], list[Event]]
    ) -> list[str]:
        """Record targets seen for the first time; returns the new names (in given order)."""

        async def job(tx: Tx) -> list[str]:
            rows = await tx.all(
                "INSERT INTO target_state (target, registered_at) "
                "SELECT name, %s FROM unnest(%s::text[]) AS name ORDER BY name "
                "ON CONFLICT (target) DO NOTHING RETURNING target",
                (now, sorted(set(names))),
            )
            created = {str(row[0]) for row in rows}
            new = [name for name in dict.fromkeys(names) if name in created]
            await tx.append([event for name in new for event in events_for(name)])
            return new

        return await self._write(job)

    async def set_quarantine(
        self, target: str, *, reason: str | None, now: float, events: list[Event]
    ) -> None:
        """Quarantine a target (``reason`` set) or release it (``reason`` None)."""

        async def job(tx: Tx) -> None:
            await tx.execute(
                "INSERT INTO target_state (target, quarantined_at, quarantine_reason) "
                "VALUES (%s, %s, %s) ON CONFLICT (target) DO UPDATE SET "
                "quarantined_at = excluded.quarantined_at, "
                "quarantine_reason = excluded.quarantine_reason",
                (target, now if reason is not None else None, reason),
            )
            await tx.append(events)

        await self._write(job)

    async def update_target_data(
        self, target: str, data: dict[str, Any], events: list[Event]
    ) -> None:
        """Merge ``data`` (e.g. the active URL after a failover) into the target's state."""

        async def job(tx: Tx) -> None:
            await tx.execute(
                "INSERT INTO target_state (target) VALUES (%s) ON CONFLICT (target) DO NOTHING",
                (target,),
            )
            row = await tx.one(
                "SELECT data FROM target_state WHERE target = %s FOR UPDATE", (target,)
            )
            current = json.loads(row[0]) if row else {}
            await tx.execute(
                "UPDATE target_state SET data = %s WHERE target = %s",
                (json.dumps({**current, **data}, sort_keys=True), target),
            )
            await tx.append(events)

        await self._write(job)
