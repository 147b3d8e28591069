"""The inbox, written once for both backends: intake, claims, completion and the reads.

Intake (:func:`ingest`) runs the rules of remediator/store/ingest_logic.py for each alert of a
notification, in its one transaction; with several writers (PostgreSQL) it first takes each
fingerprint's ``lock`` (an advisory lock), in one order, so two replicas receiving the same
notification queue each alert state once. SQLite's single writer needs none.

A claim takes the due, unleased items (PostgreSQL: ``SKIP LOCKED``, no replica takes an item
another one holds) by priority and id, and leases them to the worker in one statement.
"""

from __future__ import annotations

from remediator.alerts import Alert
from remediator.audit.events import Event
from remediator.audit.recording import Recording
from remediator.episodes import Episode
from remediator.store.base import InboxItem, IngestResult
from remediator.store.dialect import Dialect
from remediator.store.ingest_logic import (
    INBOX_INSERT_COLUMNS,
    decide,
    episode_alertname,
    inbox_values,
    intake_event,
    recorded_repeat,
    repeat_params,
    repeat_sql,
)
from remediator.store.ops import Append, Driven, Op, all_, insert, many, one, run
from remediator.store.rows import INBOX_COLUMNS, item_from_row

LATEST_EPISODES = (
    "SELECT e.id, e.fingerprint, e.starts_at, e.resolved_at, EXISTS (SELECT 1 FROM inbox i "
    "WHERE i.fingerprint = e.fingerprint AND i.episode_id = e.id AND i.status = ?) "
    "FROM episodes e WHERE e.fingerprint = ? ORDER BY e.id DESC LIMIT 2"
)
INSERT_EPISODE = (
    "INSERT INTO episodes (fingerprint, alertname, starts_at, opened_at, resolved_at) "
    "VALUES (?, ?, ?, ?, ?)"
)
INSERT_INBOX = (
    f"INSERT INTO inbox ({INBOX_INSERT_COLUMNS}) VALUES ({', '.join(['?'] * 13)}) "  # noqa: S608
    "ON CONFLICT (fingerprint, episode_id, status) DO NOTHING"
)
CLOSE_EPISODE = "UPDATE episodes SET resolved_at = ? WHERE id = ?"
MOVE_EPISODE = "UPDATE episodes SET starts_at = ? WHERE id = ?"
REPEAT = repeat_sql("?")


def ingest(
    d: Dialect,
    alerts: list[Alert],
    *,
    now: float,
    receiver: str,
    group_key: str,
    duplicate_interval: float,
    recording: Recording,
    lock: str | None,
) -> Op[IngestResult]:
    """Store one notification's alerts (see the module's docstring)."""
    if lock is not None:
        for fingerprint in sorted({alert.fingerprint for alert in alerts}):
            yield run(lock, fingerprint)
    latest, close, move = d.sql(LATEST_EPISODES), d.sql(CLOSE_EPISODE), d.sql(MOVE_EPISODE)
    new = duplicates = 0
    events: list[Event] = []
    for alert in alerts:
        rows = yield all_(latest, alert.status, alert.fingerprint)
        found = [Episode(*row[:4]) for row in rows]
        intake = decide(
            found[0] if found else None, alert, now, found[1] if len(found) > 1 else None
        )
        if intake.episode_id is None:
            episode_id = yield insert(
                d.sql(INSERT_EPISODE),
                alert.fingerprint,
                episode_alertname(alert, recording),
                alert.starts_ts,
                now,
                intake.new_resolved_at,
            )
        else:
            episode_id = intake.episode_id
            if intake.close_at is not None:
                yield run(close, intake.close_at, episode_id)
            elif intake.move_start is not None:
                yield run(move, intake.move_start, episode_id)
        inserted = 0
        if not intake.late_repeat and not any(row[0] == episode_id and row[4] for row in rows):
            values = inbox_values(
                alert,
                episode_id=episode_id,
                now=now,
                receiver=receiver,
                group_key=group_key,
                recording=recording,
            )
            inserted = yield run(d.sql(INSERT_INBOX), *values)
        repeats = None
        if inserted:
            new += 1
        else:
            duplicates += 1
            params = repeat_params(
                alert, episode_id=episode_id, now=now, interval=duplicate_interval
            )
            recorded, repeats = recorded_repeat((yield one(d.sql(REPEAT), *params)))
            if not recorded:
                continue
        events.append(
            intake_event(
                alert,
                inserted=bool(inserted),
                episode_id=episode_id,
                now=now,
                receiver=receiver,
                repeats=repeats,
            )
        )
    appended: list[Event] = yield Append(events)
    return IngestResult(received=len(alerts), new=new, duplicates=duplicates, events=appended)


def claim(
    d: Dialect, *, worker: str, now: float, lease: float, limit: int, recording: Recording
) -> Op[list[InboxItem]]:
    rows = yield all_(
        d.sql(
            "WITH picked AS (SELECT id FROM inbox WHERE state = 'pending' "  # noqa: S608
            "AND (lease_until IS NULL OR lease_until < ?) ORDER BY priority, id "
            f"LIMIT ?{d.skip_locked}) UPDATE inbox SET claimed_by = ?, lease_until = ?, "
            "attempts = attempts + 1 WHERE id IN (SELECT id FROM picked) "
            f"RETURNING {INBOX_COLUMNS}"
        ),
        now,
        limit,
        worker,
        now + lease,
    )
    # RETURNING gives the counted attempts; item_from_row counts the claim itself.
    rows = sorted(rows, key=lambda r: (r[11], r[0]))
    return [item_from_row((*r[:12], r[12] - 1), recording) for r in rows]


def complete(d: Dialect, item_id: int, *, events: list[Event], outcome: str) -> Op[list[Event]]:
    yield run(
        d.sql(
            "UPDATE inbox SET state = 'done', outcome = ?, done_at = ?, lease_until = NULL "
            "WHERE id = ?"
        ),
        outcome,
        events[-1].time if events else None,
        item_id,
    )
    appended: list[Event] = yield Append(events)
    return appended


def extend_leases(d: Dialect, item_ids: list[int], *, worker: str, until: float) -> Op[None]:
    yield many(
        d.sql(
            "UPDATE inbox SET lease_until = ? WHERE id = ? AND claimed_by = ? AND state = 'pending'"
        ),
        [(until, i, worker) for i in item_ids],
    )


def pending_count(d: Dialect) -> Op[int]:
    row = yield one("SELECT count(*) FROM inbox WHERE state = 'pending'")
    return int(row[0]) if row else 0


class InboxOps(Driven):
    """The :class:`~remediator.store.base.Inbox` role. ``intake_lock``: the statement taking a
    fingerprint's lock for the transaction (parameter: the fingerprint), if writers need it."""

    recording: Recording
    intake_lock: str | None = None

    async def ingest(
        self,
        alerts: list[Alert],
        *,
        received_at: float,
        receiver: str,
        group_key: str,
        duplicate_interval: float = 0.0,
    ) -> IngestResult:
        return await self._write_op(
            ingest,
            alerts,
            now=received_at,
            receiver=receiver,
            group_key=group_key,
            duplicate_interval=duplicate_interval,
            recording=self.recording,
            lock=self.intake_lock,
        )

    async def claim(self, *, worker: str, now: float, lease: float, limit: int) -> list[InboxItem]:
        return await self._write_op(
            claim, worker=worker, now=now, lease=lease, limit=limit, recording=self.recording
        )

    async def complete(self, item_id: int, *, events: list[Event], outcome: str) -> list[Event]:
        return await self._write_op(complete, item_id, events=events, outcome=outcome)

    async def extend_leases(self, item_ids: list[int], *, worker: str, until: float) -> None:
        if item_ids:
            await self._write_op(extend_leases, item_ids, worker=worker, until=until)

    async def pending_count(self) -> int:
        return await self._read_op(pending_count)
