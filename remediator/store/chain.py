"""The audit chain, written once for both backends: append, read, anchor, retention.

:func:`link` is what appending means on every backend (see remediator/store/rows.py): read the
head (locked on PostgreSQL, so the replicas' appends queue there; created from the events if
missing), redact, chain and seal the events, insert them, move the head, and insert the outbox
rows the recording's router gives them. The backend's driver supplies the recording policy and,
on SQLite, the head its batch already holds (the writer moves the head once per commit).

:func:`prune` is retention: under the head's lock, delete the events through the last one older
than ``before`` (never the head), move the checkpoint there and append ``audit:checkpoint``, so
the chain still verifies from the checkpoint on. The verifier itself (remediator/engine/verifier.py) only
checks hashes over what :class:`ChainOps` reads: ``audit_anchor`` and ``events_after``.
"""

from __future__ import annotations

from remediator.audit.events import GENESIS_HASH, Event
from remediator.audit.recording import Recording
from remediator.store.base import AuditAnchor, EventQuery, checkpoint_event
from remediator.store.dialect import Dialect
from remediator.store.ops import Append, Driven, Op, all_, many, one, run
from remediator.store.rows import (
    EVENT_COLUMNS,
    OUTBOX_COLUMNS,
    event_from_row,
    events_sql,
    link_rows,
    outbox_rows,
)

INSERT_EVENTS = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES ({', '.join(['?'] * 19)})"  # noqa: S608
INSERT_OUTBOX = (
    f"INSERT INTO outbox ({OUTBOX_COLUMNS}) VALUES ({', '.join(['?'] * 9)}) "  # noqa: S608
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


def head(d: Dialect) -> Op[tuple[int, str]]:
    """The chain's head (last id and hash), its row locked; created from the events if missing."""
    row = yield one(d.sql(HEAD) + d.for_update)
    if row is None:
        yield run(d.sql(CREATE_HEAD), GENESIS_HASH)
        row = yield one(d.sql(HEAD) + d.for_update)
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
    yield many(d.sql(INSERT_EVENTS), rows)
    if save_head:
        yield run(d.sql(SAVE_HEAD), out[-1].id, out[-1].hash)
    notes = outbox_rows(out, recording)
    if notes:
        yield many(d.sql(INSERT_OUTBOX), notes)
    return out


def anchor(d: Dialect) -> Op[AuditAnchor]:
    """The chain's head and retention checkpoint, read in one statement."""
    row = yield one(ANCHOR)
    return AuditAnchor(row[0], row[1], row[2] or 0, row[3] or GENESIS_HASH)


def records(
    d: Dialect, after_id: int, limit: int, *, recording: Recording | None
) -> Op[list[Event]]:
    """The events after ``after_id``, in id order, at most ``limit``."""
    rows = yield all_(d.sql(AFTER), after_id, limit)
    return [event_from_row(row, recording) for row in rows]


def events(d: Dialect, query: EventQuery, *, recording: Recording) -> Op[list[Event]]:
    sql, params = events_sql(query, d.placeholder)
    rows = yield all_(sql, *params)
    return [event_from_row(row, recording) for row in rows]


def append(d: Dialect, events: list[Event]) -> Op[list[Event]]:
    linked: list[Event] = yield Append(events)
    return linked


def prune(d: Dialect, *, before: float, now: float) -> Op[int]:
    """Retention (see the module's docstring); the number of events deleted. The caller makes
    the recording policy of the ``audit:checkpoint`` event the transaction's."""
    locked = yield one(d.sql("SELECT last_id FROM audit_head WHERE id = 1") + d.for_update)
    if locked is None:
        return 0  # nothing was ever appended
    row = yield one(
        d.sql("SELECT max(id) FROM events WHERE time < ? AND id < ?"), before, locked[0]
    )
    if row is None or row[0] is None:
        return 0
    through = int(row[0])
    found = yield one(d.sql("SELECT hash FROM events WHERE id = ?"), through)
    assert found is not None
    last = str(found[0])
    deleted: int = yield run(d.sql("DELETE FROM events WHERE id <= ?"), through)
    yield run(
        d.sql(
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
