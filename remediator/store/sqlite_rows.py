"""Rows to records and back, and the append to the event hash chain (SQLite)."""

from __future__ import annotations

import json
import sqlite3
import threading
from typing import Any

from remediator.events import GENESIS_HASH, Event
from remediator.recording import Recording
from remediator.store.base import InboxItem

# The batch the writer thread is running: ``events`` appended so far (published once committed)
# and ``recording``, the policy applied to every appended event.
COMMITTING = threading.local()

EVENT_COLUMNS = (
    "id, time, type, severity, category, target, playbook, action, outcome, duration, "
    "fingerprint, alertname, status, message, actor, config_version, details, prev_hash, hash"
)


def append_events(conn: sqlite3.Connection, events: list[Event]) -> list[Event]:
    """Append to the hash chain, with the batch's recording policy (redaction, sealing,
    notification routing). Runs on the single writer, so the chain has one head."""
    if not events:
        return []
    recording: Recording = getattr(COMMITTING, "recording", None) or Recording()
    row = conn.execute("SELECT last_id, last_hash FROM audit_head WHERE id = 1").fetchone()
    last_id, prev = (row[0], row[1]) if row else (0, GENESIS_HASH)
    out: list[Event] = []
    for event in events:
        last_id += 1
        linked = recording.redact(event).chained(event_id=last_id, prev_hash=prev)
        out.append(linked)
        prev = linked.hash
    conn.executemany(
        f"INSERT INTO events ({EVENT_COLUMNS}) VALUES "  # noqa: S608
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [event_row(e, recording) for e in out],
    )
    conn.execute(
        "INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET last_id = excluded.last_id, last_hash = excluded.last_hash",
        (last_id, prev),
    )
    if recording.route is not None:
        _enqueue(conn, out, recording)
    pending: list[Event] | None = getattr(COMMITTING, "events", None)
    if pending is not None:
        pending.extend(out)
    return out


def _enqueue(conn: sqlite3.Connection, events: list[Event], recording: Recording) -> None:
    assert recording.route is not None
    rows = []
    for event in events:
        for note in recording.route(event):
            payload = json.dumps(note.payload, sort_keys=True)
            rows.append(
                (
                    event.id,
                    note.channel,
                    note.destination,
                    note.incident,
                    note.phase,
                    payload,
                    note.dedupe_key,
                    event.time,
                    event.time,
                )
            )
    if rows:
        conn.executemany(
            "INSERT OR IGNORE INTO outbox (event_id, channel, destination, incident, phase, "
            "payload, dedupe_key, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


def event_row(e: Event, recording: Recording) -> tuple[Any, ...]:
    return (
        e.id,
        e.time,
        e.type,
        e.severity,
        e.category,
        e.target,
        e.playbook,
        e.action,
        e.outcome,
        e.duration,
        e.fingerprint,
        e.alertname,
        e.status,
        recording.seal_text(e.message),
        e.actor,
        e.config_version,
        recording.seal_details(e.details),
        e.prev_hash,
        e.hash,
    )


def event_from_row(row: tuple[Any, ...], recording: Recording | None = None) -> Event:
    """An event as stored; with a recording that holds the key, sealed text is opened."""
    opener = recording or Recording()
    (
        id_,
        time,
        type_,
        sev,
        cat,
        target,
        book,
        action,
        outcome,
        duration,
        fp,
        name,
        status,
        msg,
        actor,
        version,
        details,
        prev_hash,
        hash_,
    ) = row
    return Event(
        id=id_,
        time=time,
        type=type_,
        severity=sev,
        category=cat,
        target=target,
        playbook=book,
        action=action,
        outcome=outcome,
        duration=duration,
        fingerprint=fp,
        alertname=name,
        status=status,
        message=opener.open_text(msg),
        actor=actor,
        config_version=version,
        details=opener.open_details(details),
        prev_hash=prev_hash,
        hash=hash_,
    )


def item_from_row(row: tuple[Any, ...]) -> InboxItem:
    return InboxItem(
        id=row[0],
        fingerprint=row[1],
        episode_id=row[2],
        status=row[3],
        alertname=row[4],
        labels=json.loads(row[5]),
        annotations=json.loads(row[6]),
        starts_at=row[7],
        ends_at=row[8],
        generator_url=row[9],
        received_at=row[10],
        priority=row[11],
        attempts=row[12] + 1,
    )
