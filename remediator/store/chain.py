"""The audit chain, written once for both backends: append, read, anchor, retention.

:func:`link` is what appending means on every backend (see remediator/store/records.py): read the
head (locked on PostgreSQL, so the replicas' appends queue there; created from the events if
missing), redact, chain and seal the events, insert them, move the head, and insert the outbox
rows the recording's router gives them. The backend's driver supplies the recording policy and,
on SQLite, the head its batch already holds (the writer moves the head once per commit).

:func:`prune` is retention: under the head's lock, delete the events through the last one older
than ``before`` (never the head), move the checkpoint there and append ``audit:checkpoint``, so
the chain still verifies from the checkpoint on. The verifier itself (remediator/engine/verifier.py) only
checks hashes over what :class:`ChainOps` reads: ``audit_anchor`` and ``events_after``.

The notification outbox and the Slack threads, written once for both backends.

Rows are written by the recording policy in the transaction of the event that causes them
(remediator/store/chain.py), so their ids follow commit order. A row is claimable when it is
due, not leased (PostgreSQL: nor locked by another replica's claim, ``SKIP LOCKED``), and no
earlier row of the same (channel, destination, incident) is still pending: a Slack incident's
first message always lands before its updates, whichever replica delivers them.
"""

from __future__ import annotations

from remediator.audit.events import GENESIS_HASH, Event
from remediator.audit.recording import SEALED, Recording
from remediator.store.base import checkpoint_event
from remediator.store.ops import Append, Dialect, Driven, Op, all_, many, one, run
from remediator.store.records import (
    EVENT_COLUMNS,
    OUTBOX_COLUMNS,
    AuditAnchor,
    EventQuery,
    OutboxItem,
    event_from_row,
    events_sql,
    link_rows,
    outbox_item,
    outbox_rows,
)

INSERT_EVENTS = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES ({', '.join(['?'] * 19)})"  # noqa: S608
INSERT_OUTBOX = (
    f"INSERT INTO outbox ({OUTBOX_COLUMNS}) VALUES ({', '.join(['?'] * 10)}) "  # noqa: S608
    "ON CONFLICT (dedupe_key) DO NOTHING"
)
HEAD = "SELECT last_id, last_hash FROM audit_head WHERE id = 1"
CREATE_HEAD = (
    "INSERT INTO audit_head (id, last_id, last_hash) SELECT 1, "
    "coalesce((SELECT max(id) FROM events), 0), "
    "coalesce((SELECT hash FROM events ORDER BY id DESC LIMIT 1), ?) WHERE true "
    "ON CONFLICT (id) DO NOTHING"
)
SAVE_HEAD = (
    "INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET last_id = excluded.last_id, last_hash = excluded.last_hash"
)
ANCHOR = (
    "SELECT (SELECT last_id FROM audit_head WHERE id = 1), "
    "(SELECT last_hash FROM audit_head WHERE id = 1), "
    "(SELECT through_id FROM audit_checkpoint WHERE id = 1), "
    "(SELECT hash FROM audit_checkpoint WHERE id = 1)"
)
AFTER = f"SELECT {EVENT_COLUMNS} FROM events WHERE id > ? ORDER BY id LIMIT ?"  # noqa: S608
# The first record after ``?`` stored in the clear (message or details) once an earlier one was
# sealed: a store that encrypts seals every record from its first sealed one on.
PLAINTEXT = (
    "SELECT min(id) FROM events WHERE id > ? "  # noqa: S608
    f"AND (substr(message, 1, {len(SEALED)}) <> ? OR substr(details, 1, {len(SEALED)}) <> ?) "
    f"AND id > (SELECT min(id) FROM events WHERE substr(message, 1, {len(SEALED)}) = ?)"
)


def head(d: Dialect) -> Op[tuple[int, str]]:
    """The chain's head (last id and hash), its row locked; created from the events if missing."""
    row = yield one(HEAD + d.for_update)
    if row is None:
        yield run(CREATE_HEAD, GENESIS_HASH)
        row = yield one(HEAD + d.for_update)
    assert row is not None
    return int(row[0]), str(row[1])


def link(
    d: Dialect,
    events: list[Event],
    *,
    recording: Recording,
    after: tuple[int, str] | None = None,
    save_head: bool = True,
) -> Op[list[Event]]:
    """Append ``events`` (not empty) after the head ``after`` (None: read and lock it) with the
    ``recording`` policy; the linked events. ``save_head``: move the head row now (SQLite's
    writer moves it once per batch instead)."""
    if after is None:
        after = yield from head(d)
    out, rows = link_rows(events, recording, after[0], after[1])
    yield many(INSERT_EVENTS, rows)
    if save_head:
        yield run(SAVE_HEAD, out[-1].id, out[-1].hash)
    notes = outbox_rows(out, recording)
    if notes:
        yield many(INSERT_OUTBOX, notes)
    return out


def anchor(d: Dialect) -> Op[AuditAnchor]:
    """The chain's head and retention checkpoint, read in one statement."""
    row = yield one(ANCHOR)
    return AuditAnchor(row[0], row[1], row[2] or 0, row[3] or GENESIS_HASH)


def records(
    d: Dialect, after_id: int, limit: int, *, recording: Recording | None
) -> Op[list[Event]]:
    """The events after ``after_id``, in id order, at most ``limit``."""
    rows = yield all_(AFTER, after_id, limit)
    return [event_from_row(row, recording) for row in rows]


def plaintext(d: Dialect, after_id: int) -> Op[int | None]:
    """The id of the first record after ``after_id`` stored in the clear although an earlier
    record is sealed (None: there is none): what an attacker without the key would insert."""
    row = yield one(PLAINTEXT, after_id, SEALED, SEALED, SEALED)
    return None if row is None or row[0] is None else int(row[0])


def events(d: Dialect, query: EventQuery, *, recording: Recording) -> Op[list[Event]]:
    sql, params = events_sql(query, "?")
    rows = yield all_(sql, *params)
    return [event_from_row(row, recording) for row in rows]


def append(d: Dialect, events: list[Event]) -> Op[list[Event]]:
    linked: list[Event] = yield Append(events)
    return linked


def prune(d: Dialect, *, before: float, now: float) -> Op[int]:
    """Retention (see the module's docstring); the number of events deleted. The caller makes
    the recording policy of the ``audit:checkpoint`` event the transaction's."""
    locked = yield one("SELECT last_id FROM audit_head WHERE id = 1" + d.for_update)  # noqa: S608
    if locked is None:
        return 0  # nothing was ever appended
    row = yield one("SELECT max(id) FROM events WHERE time < ? AND id < ?", before, locked[0])
    if row is None or row[0] is None:
        return 0
    through = int(row[0])
    found = yield one("SELECT hash FROM events WHERE id = ?", through)
    assert found is not None
    last = str(found[0])
    deleted: int = yield run("DELETE FROM events WHERE id <= ?", through)
    yield run(
        (
            "INSERT INTO audit_checkpoint (id, through_id, hash, pruned_at) VALUES (1, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET through_id = excluded.through_id, "
            "hash = excluded.hash, pruned_at = excluded.pruned_at"
        ),
        through,
        last,
        now,
    )
    yield Append([checkpoint_event(deleted=deleted, through=through, hash_=last, now=now)])
    return deleted


class ChainOps(Driven):
    """The :class:`~remediator.store.base.AuditChain` role (retention is the backend's, since
    its checkpoint event takes the ``recording`` given)."""

    recording: Recording

    async def append(self, events: list[Event]) -> list[Event]:
        return await self._write_op(append, events)

    async def events(self, query: EventQuery) -> list[Event]:
        return await self._read_op(events, query, recording=self.recording)

    async def events_after(self, after_id: int, limit: int) -> list[Event]:
        return await self._read_op(records, after_id, limit, recording=self.recording)

    async def audit_anchor(self) -> AuditAnchor:
        return await self._read_op(anchor)

    async def audit_plaintext(self, after_id: int) -> int | None:
        return await self._read_op(plaintext, after_id)


def claim(
    d: Dialect, *, worker: str, now: float, lease: float, limit: int, recording: Recording
) -> Op[list[OutboxItem]]:
    rows = yield all_(
        (
            "WITH picked AS (SELECT o.id FROM outbox o WHERE o.state = 'pending' "  # noqa: S608
            "AND o.next_attempt_at <= ? AND (o.lease_until IS NULL OR o.lease_until < ?) "
            "AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.state = 'pending' "
            "AND p.channel = o.channel AND p.destination = o.destination "
            f"AND p.incident = o.incident AND p.id < o.id) ORDER BY o.next_attempt_at, o.id "
            f"LIMIT ?{d.skip_locked}) "
            "UPDATE outbox SET claimed_by = ?, lease_until = ? WHERE id IN (SELECT id FROM picked) "
            "RETURNING id, event_id, channel, destination, incident, phase, payload, attempts, batch_key"
        ),
        now,
        now,
        limit,
        worker,
        now + lease,
    )
    return [outbox_item(r, recording) for r in sorted(rows, key=lambda r: int(r[0]))]


def claim_batch(
    d: Dialect,
    head: OutboxItem,
    *,
    worker: str,
    now: float,
    lease: float,
    limit: int,
    recording: Recording,
) -> Op[list[OutboxItem]]:
    """Lease up to ``limit`` more rows of ``head``'s batch (same channel, destination and batch
    key; due, unleased, first of their incident), in id order: delivered with ``head``."""
    rows = yield all_(
        (
            "WITH picked AS (SELECT o.id FROM outbox o WHERE o.state = 'pending' "  # noqa: S608
            "AND o.channel = ? AND o.destination = ? AND o.batch_key = ? AND o.id > ? "
            "AND o.next_attempt_at <= ? AND (o.lease_until IS NULL OR o.lease_until < ?) "
            "AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.state = 'pending' "
            "AND p.channel = o.channel AND p.destination = o.destination "
            f"AND p.incident = o.incident AND p.id < o.id) ORDER BY o.id LIMIT ?{d.skip_locked}) "
            "UPDATE outbox SET claimed_by = ?, lease_until = ? WHERE id IN (SELECT id FROM picked) "
            "RETURNING id, event_id, channel, destination, incident, phase, payload, attempts, batch_key"
        ),
        head.channel,
        head.destination,
        head.batch_key,
        head.id,
        now,
        now,
        limit,
        worker,
        now + lease,
    )
    return [outbox_item(r, recording) for r in sorted(rows, key=lambda r: int(r[0]))]


def finish(
    d: Dialect,
    item_id: int,
    *,
    state: str,
    now: float,
    error: str | None,
    events: list[Event],
    batch: tuple[int, ...] = (),
) -> Op[None]:
    """Mark the row (and the rows of its ``batch``) sent or dead (with the last error) and
    append ``events`` in the same commit."""
    yield many(
        (
            "UPDATE outbox SET state = ?, sent_at = ?, attempts = attempts + 1, "
            "last_error = coalesce(?, last_error), lease_until = NULL WHERE id = ?"
        ),
        [(state, now, error, i) for i in (item_id, *batch)],
    )
    yield Append(events)


def retry(
    d: Dialect, item_id: int, *, next_at: float, error: str, batch: tuple[int, ...] = ()
) -> Op[None]:
    yield many(
        (
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?, "
            "lease_until = NULL WHERE id = ?"
        ),
        [(next_at, error, i) for i in (item_id, *batch)],
    )


def pending(d: Dialect) -> Op[int]:
    row = yield one("SELECT count(*) FROM outbox WHERE state = 'pending'")
    return int(row[0]) if row else 0


def states(d: Dialect) -> Op[dict[str, int]]:
    rows = yield all_("SELECT state, count(*) FROM outbox GROUP BY state")
    return {str(state): int(n) for state, n in rows}


def thread(d: Dialect, incident: str, destination: str) -> Op[tuple[str, str] | None]:
    row = yield one(
        "SELECT channel, ts FROM slack_threads WHERE incident = ? AND destination = ?",
        incident,
        destination,
    )
    return None if row is None else (str(row[0]), str(row[1]))


def save_thread(d: Dialect, incident: str, destination: str, *, channel: str, ts: str) -> Op[None]:
    yield run(
        (
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

    async def claim_outbox_batch(
        self, head: OutboxItem, *, worker: str, now: float, lease: float, limit: int
    ) -> list[OutboxItem]:
        if head.batch_key is None or limit <= 0:
            return []
        return await self._write_op(
            claim_batch, head, worker=worker, now=now, lease=lease, limit=limit,
            recording=self.recording,
        )  # fmt: skip

    async def outbox_sent(
        self, item_id: int, *, now: float, events: list[Event], batch: tuple[int, ...] = ()
    ) -> None:
        await self._write_op(
            finish, item_id, state="sent", now=now, error=None, events=events, batch=batch
        )

    async def outbox_retry(
        self, item_id: int, *, next_at: float, error: str, batch: tuple[int, ...] = ()
    ) -> None:
        sealed = self.recording.seal_text(error)
        await self._write_op(retry, item_id, next_at=next_at, error=sealed, batch=batch)

    async def outbox_dead(
        self,
        item_id: int,
        *,
        now: float,
        error: str,
        events: list[Event],
        batch: tuple[int, ...] = (),
    ) -> None:
        """Dead-letter a notification; ``events`` (the escalation) are routed in the same commit."""
        sealed = self.recording.seal_text(error)
        await self._write_op(
            finish, item_id, state="dead", now=now, error=sealed, events=events, batch=batch
        )

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
