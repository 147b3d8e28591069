"""The notification outbox and the Slack threads, written once for both backends.

Rows are written by the recording policy in the transaction of the event that causes them
(remediator/store/chain.py), so their ids follow commit order. A row is claimable when it is
due, not leased (PostgreSQL: nor locked by another replica's claim, ``SKIP LOCKED``), and no
earlier row of the same (channel, destination, incident) is still pending: a Slack incident's
first message always lands before its updates, whichever replica delivers them.
"""

from __future__ import annotations

from remediator.audit.events import Event
from remediator.audit.recording import Recording
from remediator.store.dialect import Dialect
from remediator.store.ops import Append, Driven, Op, all_, one, run
from remediator.store.records import OutboxItem
from remediator.store.rows import outbox_item


def claim(
    d: Dialect, *, worker: str, now: float, lease: float, limit: int, recording: Recording
) -> Op[list[OutboxItem]]:
    rows = yield all_(
        d.sql(
            "WITH picked AS (SELECT o.id FROM outbox o WHERE o.state = 'pending' "  # noqa: S608
            "AND o.next_attempt_at <= ? AND (o.lease_until IS NULL OR o.lease_until < ?) "
            "AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.state = 'pending' "
            "AND p.channel = o.channel AND p.destination = o.destination "
            f"AND p.incident = o.incident AND p.id < o.id) ORDER BY o.id LIMIT ?{d.skip_locked}) "
            "UPDATE outbox SET claimed_by = ?, lease_until = ? WHERE id IN (SELECT id FROM picked) "
            "RETURNING id, event_id, channel, destination, incident, phase, payload, attempts"
        ),
        now,
        now,
        limit,
        worker,
        now + lease,
    )
    return [outbox_item(r, recording) for r in sorted(rows, key=lambda r: int(r[0]))]


def finish(
    d: Dialect, item_id: int, *, state: str, now: float, error: str | None, events: list[Event]
) -> Op[None]:
    """Mark the row sent or dead (with its last error) and append ``events`` in the same commit."""
    yield run(
        d.sql(
            "UPDATE outbox SET state = ?, sent_at = ?, attempts = attempts + 1, "
            "last_error = coalesce(?, last_error), lease_until = NULL WHERE id = ?"
        ),
        state,
        now,
        error,
        item_id,
    )
    yield Append(events)


def retry(d: Dialect, item_id: int, *, next_at: float, error: str) -> Op[None]:
    yield run(
        d.sql(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?, "
            "lease_until = NULL WHERE id = ?"
        ),
        next_at,
        error,
        item_id,
    )


def pending(d: Dialect) -> Op[int]:
    row = yield one("SELECT count(*) FROM outbox WHERE state = 'pending'")
    return int(row[0]) if row else 0


def states(d: Dialect) -> Op[dict[str, int]]:
    rows = yield all_("SELECT state, count(*) FROM outbox GROUP BY state")
    return {str(state): int(n) for state, n in rows}


def thread(d: Dialect, incident: str, destination: str) -> Op[tuple[str, str] | None]:
    row = yield one(
        d.sql("SELECT channel, ts FROM slack_threads WHERE incident = ? AND destination = ?"),
        incident,
        destination,
    )
    return None if row is None else (str(row[0]), str(row[1]))


def save_thread(d: Dialect, incident: str, destination: str, *, channel: str, ts: str) -> Op[None]:
    yield run(
        d.sql(
            "INSERT INTO slack_threads (incident, destination, channel, ts) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (incident, destination) DO UPDATE SET channel = excluded.channel, "
            "ts = excluded.ts"
        ),
        incident,
        destination,
        channel,
        ts,
    )


class OutboxOps(Driven):
    """The :class:`~remediator.store.base.Outbox` and
    :class:`~remediator.store.base.SlackThreads` roles."""

    recording: Recording

    async def claim_outbox(
        self, *, worker: str, now: float, lease: float, limit: int
    ) -> list[OutboxItem]:
        return await self._write_op(
            claim, worker=worker, now=now, lease=lease, limit=limit, recording=self.recording
        )

    async def outbox_sent(self, item_id: int, *, now: float, events: list[Event]) -> None:
        await self._write_op(finish, item_id, state="sent", now=now, error=None, events=events)

    async def outbox_retry(self, item_id: int, *, next_at: float, error: str) -> None:
        await self._write_op(retry, item_id, next_at=next_at, error=self.recording.seal_text(error))

    async def outbox_dead(
        self, item_id: int, *, now: float, error: str, events: list[Event]
    ) -> None:
        """Dead-letter a notification; ``events`` (the escalation) are routed in the same commit."""
        sealed = self.recording.seal_text(error)
        await self._write_op(finish, item_id, state="dead", now=now, error=sealed, events=events)

    async def outbox_pending(self) -> int:
        return await self._read_op(pending)

    async def outbox_states(self) -> dict[str, int]:
        return await self._read_op(states)

    async def slack_thread(self, incident: str, destination: str) -> tuple[str, str] | None:
        return await self._read_op(thread, incident, destination)

    async def save_slack_thread(
        self, incident: str, destination: str, *, channel: str, ts: str
    ) -> None:
        await self._write_op(save_thread, incident, destination, channel=channel, ts=ts)
