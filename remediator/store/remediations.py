"""Remediations: claimed once per (playbook, fingerprint, episode), leased, finished — both
backends.

A start inserts the row or finds it there (``ON CONFLICT DO NOTHING``); a running one whose
owner's lease expired (its replica died) is taken over. With ``mark`` the episode's row is
changed first, then the remediation's: the order of every transaction that takes both, and
events are appended last (the audit head is always the last lock a PostgreSQL transaction
takes), so no two transactions wait on each other in a cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from remediator.audit.events import Event
from remediator.store.ops import Append, Dialect, Driven, Op, all_, one, run
from remediator.store.records import REMEDIATION_COLUMNS, RUNNING, Remediation, unrecovered_sql

_UNRECOVERED = unrecovered_sql("?")


def start(
    d: Dialect,
    *,
    playbook: str,
    fingerprint: str,
    episode_id: int,
    target: str,
    now: float,
    state: str,
    reason: str,
    config_version: int,
    events: list[Event] | None,
    owner: str,
    lease: float,
    before_events: list[Event] | None,
    mark: bool,
) -> Op[int | None]:
    until = now + lease if lease else None
    if mark:
        yield run(
            "UPDATE episodes SET target = ? WHERE id = ? AND (target IS NULL OR target <> ?)",
            target,
            episode_id,
            target,
        )
    row = yield one(
        ("INSERT INTO remediations (playbook, fingerprint, episode_id, target, state, "
            "reason, started_at, config_version, owner, lease_until) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (playbook, fingerprint, episode_id) DO NOTHING RETURNING id"),
        playbook, fingerprint, episode_id, target, state, reason, now, config_version, owner,
        until,
    )  # fmt: skip
    if row is None and state == RUNNING:
        row = yield one(
            ("UPDATE remediations SET owner = ?, lease_until = ? WHERE playbook = ? "
                "AND fingerprint = ? AND episode_id = ? AND state = 'running' "
                "AND lease_until IS NOT NULL AND lease_until < ? RETURNING id"),
            owner, until, playbook, fingerprint, episode_id, now,
        )  # fmt: skip
    rid = None if row is None else int(row[0])
    yield Append([*(before_events or []), *(events or [] if rid is not None else [])])
    return rid


def renew(d: Dialect, *, remediation_id: int, owner: str, until: float) -> Op[None]:
    yield run(
        (
            "UPDATE remediations SET lease_until = ? WHERE id = ? AND owner = ? "
            "AND state = 'running'"
        ),
        until,
        remediation_id,
        owner,
    )


def finish(
    d: Dialect,
    *,
    remediation_id: int,
    state: str,
    now: float,
    attempts: int,
    reason: str,
    events: list[Event] | None,
    complete_item: tuple[int, str] | None,
) -> Op[None]:
    """Rows changed as by each alone: the remediation's, the item's, then the audit head."""
    yield run(
        ("UPDATE remediations SET state = ?, finished_at = ?, attempts = ?, reason = ?, "
            "lease_until = NULL WHERE id = ?"),
        state, now, attempts, reason, remediation_id,
    )  # fmt: skip
    if complete_item is not None:
        item_id, outcome = complete_item
        yield run(
            (
                "UPDATE inbox SET state = 'done', outcome = ?, done_at = ?, "
                "lease_until = NULL WHERE id = ?"
            ),
            outcome,
            now,
            item_id,
        )
    yield Append(events or [])


def listed(
    d: Dialect, *, target: str | None, state: str | None, limit: int
) -> Op[list[Remediation]]:
    clauses, params = [], []
    if target is not None:
        clauses.append("target = ?")
        params.append(target)
    if state is not None:
        clauses.append("state = ?")
        params.append(state)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = yield all_(
        f"SELECT {REMEDIATION_COLUMNS} FROM remediations {where} ORDER BY id LIMIT ?",  # noqa: S608
        *params,
        limit,
    )
    return [Remediation(*row) for row in rows]


def unrecovered(
    d: Dialect, *, finished_before: float, after_id: int, limit: int
) -> Op[list[Remediation]]:
    rows = yield all_(_UNRECOVERED, finished_before, after_id, limit)
    return [Remediation(*row) for row in rows]


def interrupt(
    d: Dialect,
    *,
    now: float,
    events_for: Callable[[Remediation], list[Event]],
    expired_only: bool,
) -> Op[list[Remediation]]:
    """Rows another PostgreSQL replica is changing right now are skipped (it deals with them)."""
    sql = f"SELECT {REMEDIATION_COLUMNS} FROM remediations WHERE state = 'running'"  # noqa: S608
    params: tuple[Any, ...] = ()
    if expired_only:
        sql += " AND (lease_until IS NULL OR lease_until < ?)"
        params = (now,)
    rows = yield all_((sql + " ORDER BY id") + d.skip_locked, *params)
    found = [Remediation(*row) for row in rows]
    if not found:
        return []
    yield run(
        (
            "UPDATE remediations SET state = 'interrupted', finished_at = ?, "  # noqa: S608
            f"lease_until = NULL WHERE id IN ({', '.join('?' * len(found))})"
        ),
        now,
        *(item.id for item in found),
    )
    yield Append([event for item in found for event in events_for(item)])
    return found


class RemediationOps(Driven):
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
        return await self._write_op(
            start,
            playbook=playbook,
            fingerprint=fingerprint,
            episode_id=episode_id,
            target=target,
            now=now,
            state=state,
            reason=reason,
            config_version=config_version,
            events=events,
            owner=owner,
            lease=lease,
            before_events=before_events,
            mark=mark,
        )

    async def renew_remediation(self, remediation_id: int, *, owner: str, until: float) -> None:
        await self._write_op(renew, remediation_id=remediation_id, owner=owner, until=until)

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
        await self._write_op(
            finish,
            remediation_id=remediation_id,
            state=state,
            now=now,
            attempts=attempts,
            reason=reason,
            events=events,
            complete_item=complete_item,
        )

    async def remediations(
        self, *, target: str | None = None, state: str | None = None, limit: int = 1000
    ) -> list[Remediation]:
        return await self._read_op(listed, target=target, state=state, limit=limit)

    async def unrecovered(
        self, *, finished_before: float, after_id: int = 0, limit: int = 500
    ) -> list[Remediation]:
        return await self._read_op(
            unrecovered, finished_before=finished_before, after_id=after_id, limit=limit
        )

    async def interrupt_running(
        self,
        *,
        now: float,
        events_for: Callable[[Remediation], list[Event]],
        expired_only: bool = False,
    ) -> list[Remediation]:
        """Mark remediations left running by a crash as interrupted, with their events. With
        ``expired_only``, only those whose owner's lease has expired (other replicas live on)."""
        return await self._write_op(
            interrupt, now=now, events_for=events_for, expired_only=expired_only
        )
