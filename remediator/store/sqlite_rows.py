"""The append to the event hash chain in SQLite (the row helpers live in store/rows.py)."""

from __future__ import annotations

import sqlite3
import threading

from remediator.events import GENESIS_HASH, Event
from remediator.recording import Recording
from remediator.store.rows import (
    EVENT_COLUMNS,
    OUTBOX_COLUMNS,
    event_from_row,
    event_row,
    item_from_row,
    link_rows,
    outbox_rows,
)

__all__ = [
    "COMMITTING",
    "EVENT_COLUMNS",
    "append_events",
    "event_from_row",
    "event_row",
    "flush_head",
    "item_from_row",
]

# The batch the writer is running (on the thread running it): ``events`` appended so far
# (published once committed), ``recording``, the policy applied to every appended event, and
# ``head``, the chain's head as of the last append of the batch (None: not read yet). Within a
# batch the head row is read once and written once, by :func:`flush_head` before the COMMIT.
COMMITTING = threading.local()


def append_events(conn: sqlite3.Connection, events: list[Event]) -> list[Event]:
    """Append to the hash chain, with the batch's recording policy (redaction, sealing,
    notification routing). Runs under the write lock, so the chain has one head."""
    if not events:
        return []
    recording: Recording = getattr(COMMITTING, "recording", None) or Recording()
    batched = hasattr(COMMITTING, "head")
    head: tuple[int, str] | None = getattr(COMMITTING, "head", None)
    if head is None:
        row = conn.execute("SELECT last_id, last_hash FROM audit_head WHERE id = 1").fetchone()
        head = (row[0], row[1]) if row else (0, GENESIS_HASH)
    out, rows = link_rows(events, recording, head[0], head[1])
    conn.executemany(
        f"INSERT INTO events ({EVENT_COLUMNS}) VALUES "  # noqa: S608
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    last_id = out[-1].id
    assert last_id is not None
    if batched:
        COMMITTING.head = (last_id, out[-1].hash)
    else:
        _write_head(conn, last_id, out[-1].hash)
    notes = outbox_rows(out, recording)
    if notes:
        conn.executemany(
            f"INSERT OR IGNORE INTO outbox ({OUTBOX_COLUMNS}) "  # noqa: S608
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            notes,
        )
    pending: list[Event] | None = getattr(COMMITTING, "events", None)
    if pending is not None:
        pending.extend(out)
    return out


def flush_head(conn: sqlite3.Connection) -> None:
    """Write the batch's head, if the batch appended (the writer calls it before COMMIT)."""
    head: tuple[int, str] | None = getattr(COMMITTING, "head", None)
    if head is not None:
        _write_head(conn, head[0], head[1])


def _write_head(conn: sqlite3.Connection, last_id: int, last_hash: str) -> None:
    conn.execute(
        "INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET last_id = excluded.last_id, last_hash = excluded.last_hash",
        (last_id, last_hash),
    )
