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
    link,
    outbox_rows,
)

__all__ = [
    "COMMITTING",
    "EVENT_COLUMNS",
    "append_events",
    "event_from_row",
    "event_row",
    "item_from_row",
]

# The batch the writer thread is running: ``events`` appended so far (published once committed)
# and ``recording``, the policy applied to every appended event.
COMMITTING = threading.local()


def append_events(conn: sqlite3.Connection, events: list[Event]) -> list[Event]:
    """Append to the hash chain, with the batch's recording policy (redaction, sealing,
    notification routing). Runs on the single writer, so the chain has one head."""
    if not events:
        return []
    recording: Recording = getattr(COMMITTING, "recording", None) or Recording()
    row = conn.execute("SELECT last_id, last_hash FROM audit_head WHERE id = 1").fetchone()
    last_id, prev = (row[0], row[1]) if row else (0, GENESIS_HASH)
    out = link(events, recording, last_id, prev)
    conn.executemany(
        f"INSERT INTO events ({EVENT_COLUMNS}) VALUES "  # noqa: S608
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [event_row(e, recording) for e in out],
    )
    conn.execute(
        "INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET last_id = excluded.last_id, last_hash = excluded.last_hash",
        (out[-1].id, out[-1].hash),
    )
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
