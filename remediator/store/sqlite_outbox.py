"""The notification outbox in SQLite: claimed with a lease, one incident's messages in order.

Rows are written by the recording policy in the transaction of the event that causes them
(see remediator/store/sqlite_rows.py). A row is claimable when it is due and no earlier row of
the same (channel, destination, incident) is still pending, so a Slack incident's first message
always lands before its updates.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

from remediator.events import Event
from remediator.recording import Recording
from remediator.store.records import OutboxItem
from remediator.store.rows import outbox_item
from remediator.store.sqlite_rows import append_events

T = TypeVar("T")


class SqliteOutboxOps:
    recording: Recording

    async def _write(self, job: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def claim_outbox(
        self, *, worker: str, now: float, lease: float, limit: int
    ) -> list[OutboxItem]:
        def job(c: sqlite3.Connection) -> list[OutboxItem]:
            rows = c.execute(
                "SELECT o.id, o.event_id, o.channel, o.destination, o.incident, o.phase, "
                "o.payload, o.attempts FROM outbox o WHERE o.state = 'pending' "
                "AND o.next_attempt_at <= ? AND (o.lease_until IS NULL OR o.lease_until < ?) "
                "AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.state = 'pending' "
                "AND p.channel = o.channel AND p.destination = o.destination "
                "AND p.incident = o.incident AND p.id < o.id) ORDER BY o.id LIMIT ?",
                (now, now, limit),
            ).fetchall()
            c.executemany(
                "UPDATE outbox SET claimed_by = ?, lease_until = ? WHERE id = ?",
                [(worker, now + lease, row[0]) for row in rows],
            )
            return [outbox_item(r, self.recording) for r in rows]

        return await self._write(job)

    async def outbox_sent(self, item_id: int, *, now: float, events: list[Event]) -> None:
        def job(c: sqlite3.Connection) -> None:
            c.execute(
                "UPDATE outbox SET state = 'sent', sent_at = ?, attempts = attempts + 1, "
                "lease_until = NULL WHERE id = ?",
                (now, item_id),
            )
            append_events(c, events)

        await self._write(job)

    async def outbox_retry(self, item_id: int, *, next_at: float, error: str) -> None:
        await self._write(
            lambda c: c.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?, "
                "lease_until = NULL WHERE id = ?",
                (next_at, self.recording.seal_text(error), item_id),
            )
        )

    async def outbox_dead(
        self, item_id: int, *, now: float, error: str, events: list[Event]
    ) -> None:
        """Dead-letter a notification; ``events`` (the escalation) are routed in the same commit."""

        def job(c: sqlite3.Connection) -> None:
            c.execute(
                "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = ?, "
                "lease_until = NULL, sent_at = ? WHERE id = ?",
                (self.recording.seal_text(error), now, item_id),
            )
            append_events(c, events)

        await self._write(job)

    async def outbox_pending(self) -> int:
        row = await self._read(
            lambda c: c.execute("SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone()
        )
        return int(row[0])

    async def outbox_states(self) -> dict[str, int]:
        rows = await self._read(
            lambda c: c.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall()
        )
        return {str(state): int(n) for state, n in rows}

    async def slack_thread(self, incident: str, destination: str) -> tuple[str, str] | None:
        row = await self._read(
            lambda c: c.execute(
                "SELECT channel, ts FROM slack_threads WHERE incident = ? AND destination = ?",
                (incident, destination),
            ).fetchone()
        )
        return None if row is None else (str(row[0]), str(row[1]))

    async def save_slack_thread(
        self, incident: str, destination: str, *, channel: str, ts: str
    ) -> None:
        await self._write(
            lambda c: c.execute(
                "INSERT INTO slack_threads (incident, destination, channel, ts) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (incident, destination) DO UPDATE SET channel = excluded.channel, "
                "ts = excluded.ts",
                (incident, destination, channel, ts),
            )
        )
