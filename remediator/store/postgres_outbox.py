"""The notification outbox in PostgreSQL: claimed with SKIP LOCKED and a lease, in order.

Rows are written by the recording policy in the transaction of the event that causes them
(remediator/store/postgres_tx.py), under the audit-head lock, so their ids follow commit order.
A row is claimable when it is due, not leased, and no earlier row of the same (channel,
destination, incident) is still pending: a Slack incident's first message always lands before
its updates, whichever replica delivers them.
"""

from __future__ import annotations

from remediator.events import Event
from remediator.store.postgres_tx import PgBase, Tx
from remediator.store.records import OutboxItem
from remediator.store.rows import outbox_item


class PostgresOutboxOps(PgBase):
    async def claim_outbox(
        self, *, worker: str, now: float, lease: float, limit: int
    ) -> list[OutboxItem]:
        async def job(tx: Tx) -> list[OutboxItem]:
            rows = await tx.all(
                "WITH picked AS (SELECT o.id FROM outbox o WHERE o.state = 'pending' "
                "AND o.next_attempt_at <= %s AND (o.lease_until IS NULL OR o.lease_until < %s) "
                "AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.state = 'pending' "
                "AND p.channel = o.channel AND p.destination = o.destination "
                "AND p.incident = o.incident AND p.id < o.id) "
                "ORDER BY o.id LIMIT %s FOR UPDATE OF o SKIP LOCKED) "
                "UPDATE outbox AS u SET claimed_by = %s, lease_until = %s FROM picked "
                "WHERE u.id = picked.id RETURNING u.id, u.event_id, u.channel, u.destination, "
                "u.incident, u.phase, u.payload, u.attempts",
                (now, now, limit, worker, now + lease),
            )
            return [outbox_item(r, tx.recording) for r in sorted(rows, key=lambda r: int(r[0]))]

        return await self._write(job)

    async def outbox_sent(self, item_id: int, *, now: float, events: list[Event]) -> None:
        async def job(tx: Tx) -> None:
            await tx.execute(
                "UPDATE outbox SET state = 'sent', sent_at = %s, attempts = attempts + 1, "
                "lease_until = NULL WHERE id = %s",
                (now, item_id),
            )
            await tx.append(events)

        await self._write(job)

    async def outbox_retry(self, item_id: int, *, next_at: float, error: str) -> None:
        await self._write(
            lambda tx: tx.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = %s, "
                "last_error = %s, lease_until = NULL WHERE id = %s",
                (next_at, self.recording.seal_text(error), item_id),
            )
        )

    async def outbox_dead(
        self, item_id: int, *, now: float, error: str, events: list[Event]
    ) -> None:
        """Dead-letter a notification; ``events`` (the escalation) are routed in the same commit."""

        async def job(tx: Tx) -> None:
            await tx.execute(
                "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = %s, "
                "lease_until = NULL, sent_at = %s WHERE id = %s",
                (self.recording.seal_text(error), now, item_id),
            )
            await tx.append(events)

        await self._write(job)

    async def outbox_pending(self) -> int:
        row = await self._row("SELECT count(*) FROM outbox WHERE state = 'pending'")
        return int(row[0]) if row else 0

    async def outbox_states(self) -> dict[str, int]:
        rows = await self._rows("SELECT state, count(*) FROM outbox GROUP BY state")
        return {str(state): int(n) for state, n in rows}

    async def slack_thread(self, incident: str, destination: str) -> tuple[str, str] | None:
        row = await self._row(
            "SELECT channel, ts FROM slack_threads WHERE incident = %s AND destination = %s",
            (incident, destination),
        )
        return None if row is None else (str(row[0]), str(row[1]))

    async def save_slack_thread(
        self, incident: str, destination: str, *, channel: str, ts: str
    ) -> None:
        await self._write(
            lambda tx: tx.execute(
                "INSERT INTO slack_threads (incident, destination, channel, ts) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (incident, destination) DO UPDATE SET "
                "channel = excluded.channel, ts = excluded.ts",
                (incident, destination, channel, ts),
            )
        )
