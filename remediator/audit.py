"""The audit chain: verification and retention.

Every event carries ``prev_hash`` and ``hash = SHA-256(canonical record incl. prev_hash)``; the
store keeps the chain's head (last id and hash) in the same transaction as each append. A walk
from the start (or from the retention checkpoint) finds:

- a modified record: its hash no longer matches its content;
- a deleted record: the ids jump, or the next record's ``prev_hash`` does not match;
- reordered records: ``prev_hash`` links break;
- a truncated tail: the last record is not the recorded head.

Retention deletes events older than ``audit.retention`` and moves the checkpoint (the last pruned
id and hash), recording an ``audit:checkpoint`` event, so verification still works afterwards.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from remediator.events import GENESIS_HASH, Event, record_hash
from remediator.recording import SEALED, Recording
from remediator.store.sqlite_rows import EVENT_COLUMNS, append_events, event_from_row
from remediator.store.sqlite_writer import connect, connect_reader

CHECKPOINT = "audit:checkpoint"
PAGE = 5000


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    checked: int
    first_bad_id: int | None = None
    problem: str = ""
    head_id: int = 0

    def line(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.checked} records verified (head {self.head_id})"
        return f"audit chain BROKEN at record {self.first_bad_id}: {self.problem} ({self.checked} verified before it)"


def _rows(conn: sqlite3.Connection, after: int) -> Iterator[tuple[object, ...]]:
    last = after
    while True:
        page = conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE id > ? ORDER BY id LIMIT ?",  # noqa: S608
            (last, PAGE),
        ).fetchall()
        if not page:
            return
        yield from page
        last = int(page[-1][0])


def verify_connection(conn: sqlite3.Connection, recording: Recording) -> Verdict:
    checkpoint = conn.execute(
        "SELECT through_id, hash FROM audit_checkpoint WHERE id = 1"
    ).fetchone()
    expected_id, prev = (checkpoint[0], checkpoint[1]) if checkpoint else (0, GENESIS_HASH)
    head = conn.execute("SELECT last_id, last_hash FROM audit_head WHERE id = 1").fetchone()
    checked = 0
    for row in _rows(conn, expected_id):
        event = event_from_row(row, recording)
        expected_id += 1
        if event.id != expected_id:
            return Verdict(
                False, checked, expected_id, f"record {expected_id} is missing (next is {event.id})"
            )
        if event.message.startswith(SEALED) or event.details.get("sealed"):
            return Verdict(
                False,
                checked,
                event.id,
                "record is encrypted and the key is not available (audit.encryption_key_env)",
            )
        if event.prev_hash != prev:
            return Verdict(
                False,
                checked,
                event.id,
                "prev_hash does not match the previous record (deleted or reordered)",
            )
        if record_hash(event) != event.hash:
            return Verdict(
                False, checked, event.id, "hash does not match the record's content (modified)"
            )
        prev = event.hash
        checked += 1
    if head is not None:
        head_id, head_hash = int(head[0]), str(head[1])
        if expected_id != head_id or prev != head_hash:
            return Verdict(False, checked, expected_id + 1,
                           f"the chain ends at record {expected_id} but its head is record {head_id} (truncated tail)")  # fmt: skip
    return Verdict(True, checked, head_id=expected_id)


def verify(path: Path, recording: Recording) -> Verdict:
    """Verify the chain in the SQLite store at ``path`` (read-only)."""
    if not path.exists():
        return Verdict(False, 0, None, f"no store at {path}")
    conn = connect_reader(path)
    try:
        return verify_connection(conn, recording)
    finally:
        conn.close()


def prune(path: Path, recording: Recording, *, before: float, now: float) -> int:
    """Delete events older than ``before``; keep the chain verifiable. Returns the count."""
    conn = connect(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        row = conn.execute(
            "SELECT max(id) FROM events WHERE time < ? AND id < (SELECT max(id) FROM events)",
            (before,),
        ).fetchone()
        through = row[0]
        if through is None:
            conn.execute("COMMIT")
            return 0
        last = conn.execute("SELECT hash FROM events WHERE id = ?", (through,)).fetchone()[0]
        deleted = conn.execute("DELETE FROM events WHERE id <= ?", (through,)).rowcount
        conn.execute(
            "INSERT INTO audit_checkpoint (id, through_id, hash, pruned_at) VALUES (1, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET through_id = excluded.through_id, "
            "hash = excluded.hash, pruned_at = excluded.pruned_at",
            (through, last, now),
        )
        from remediator.store.sqlite_rows import COMMITTING

        COMMITTING.recording = recording
        try:
            append_events(conn, [Event(type=CHECKPOINT, time=now, actor="retention",
                                       message=f"pruned {deleted} events through id {through}",
                                       details={"through_id": through, "hash": last})])  # fmt: skip
        finally:
            COMMITTING.recording = None
        conn.execute("COMMIT")
        return int(deleted)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()
