"""Rows to records and back, and the append to the event hash chain (SQLite)."""

from __future__ import annotations

import json
import sqlite3
import threading
from typing import Any

from remediator.events import GENESIS_HASH, Event
from remediator.store.base import InboxItem

# Events appended by the batch the writer thread is running; published once it has committed.
COMMITTING = threading.local()

EVENT_COLUMNS = (
    "id, time, type, severity, category, target, playbook, action, outcome, duration, "
    "fingerprint, alertname, status, message, actor, config_version, details, prev_hash, hash"
)


def append_events(conn: sqlite3.Connection, events: list[Event]) -> list[Event]:
    """Append to the hash chain. Runs on the single writer, so the chain has one head."""
    if not events:
        return []
    row = conn.execute("SELECT id, hash FROM events ORDER BY id DESC LIMIT 1").fetchone()
    last_id, prev = (row[0], row[1]) if row else (0, GENESIS_HASH)
    out: list[Event] = []
    for event in events:
        last_id += 1
        linked = event.chained(event_id=last_id, prev_hash=prev)
        out.append(linked)
        prev = linked.hash
    conn.executemany(
        f"INSERT INTO events ({EVENT_COLUMNS}) VALUES "  # noqa: S608
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [_event_row(e) for e in out],
    )
    pending: list[Event] | None = getattr(COMMITTING, "events", None)
    if pending is not None:
        pending.extend(out)
    return out


def _event_row(e: Event) -> tuple[Any, ...]:
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
        e.message,
        e.actor,
        e.config_version,
        json.dumps(e.details, sort_keys=True),
        e.prev_hash,
        e.hash,
    )


def event_from_row(row: tuple[Any, ...]) -> Event:
    (id_, time, type_, sev, cat, target, book, action, outcome, duration, fp, name, status, msg,
     actor, version, details, prev_hash, hash_) = row  # fmt: skip
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
        message=msg,
        actor=actor,
        config_version=version,
        details=json.loads(details),
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
