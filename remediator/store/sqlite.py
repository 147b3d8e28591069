"""The embedded SQLite store: WAL, ``synchronous=FULL``, one writer thread with group commit.

Every write is a job run by a single writer thread. The thread takes all jobs waiting at that
moment, runs each inside its own SAVEPOINT of one transaction, and commits once: concurrent
webhook requests share one fsync, and a job that fails rolls back alone. A job's future is
resolved only after the COMMIT returned, so an acknowledged write is on disk. Reads use their own
connections (WAL readers never block the writer).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from remediator.alerts import Alert
from remediator.episodes import Episode
from remediator.errors import StoreUnavailable
from remediator.events import GENESIS_HASH, Event
from remediator.recording import Recording
from remediator.store.base import (
    AuditAnchor,
    EventQuery,
    InboxItem,
    IngestResult,
    checkpoint_event,
)
from remediator.store.ingest_logic import (
    INBOX_INSERT_COLUMNS,
    SEVERITY_PRIORITY,
    decide,
    episode_alertname,
    inbox_values,
    intake_event,
    recorded_repeat,
    repeat_params,
    repeat_sql,
)
from remediator.store.roles import Roles
from remediator.store.rows import events_sql
from remediator.store.schema import SQLITE_MIGRATIONS
from remediator.store.sqlite_driver import SqliteDriver
from remediator.store.sqlite_outbox import SqliteOutboxOps
from remediator.store.sqlite_rows import (
    COMMITTING,
    EVENT_COLUMNS,
    append_events,
    event_from_row,
    item_from_row,
)
from remediator.store.sqlite_writer import Readers, Writer, connect

T = TypeVar("T")
REPEAT_SQL = repeat_sql("?")
log = logging.getLogger("remediator.store")
__all__ = ["SEVERITY_PRIORITY", "SqliteStore", "migrate", "sqlite_path"]


def sqlite_path(url: str) -> Path:
    """``sqlite:///data/x.db`` → ``data/x.db`` (relative); ``sqlite:////abs/x.db`` → absolute."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a sqlite URL: {url!r}")
    return Path(url.removeprefix("sqlite:///"))


class SqliteStore(Roles, SqliteOutboxOps, SqliteDriver):
    def __init__(self, url: str) -> None:
        self.path = sqlite_path(url)
        self._writer: Writer | None = None
        self._readers = Readers(self.path)
        self._on_commit: Callable[[list[Event]], None] | None = None
        self.recording = Recording()

    def configure(self, recording: Recording) -> None:
        """Use this recording policy for every event appended from now on (and for reads)."""
        self.recording = recording
        if self._writer is not None:
            self._writer.recording = recording

    @property
    def shared(self) -> bool:
        """An embedded SQLite file serves one remediator process."""
        return False

    def subscribe(self, callback: Callable[[list[Event]], None]) -> None:
        """Call ``callback`` (from the writer thread) with the events of each commit, in
        commit order, right after the commit."""
        self._on_commit = callback
        if self._writer is not None:
            self._writer.on_commit = callback

    async def open(self) -> None:
        conn = await asyncio.to_thread(self._open_sync)
        self._writer = Writer(conn, self._on_commit, self.recording)

    def _open_sync(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = connect(self.path)
            migrate(conn)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open the store at {self.path}: {exc}") from None
        return conn

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.stop()
            self._writer = None
        self._readers.close()

    async def _write(self, job: Callable[[sqlite3.Connection], T], *, heavy: bool = False) -> T:
        if self._writer is None:
            raise StoreUnavailable("the store is not open")
        return await self._writer.run(job, heavy=heavy)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._readers.run(fn)

    def _peek(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A read by index on the calling thread (cheaper than :meth:`_read`'s hand-off)."""
        return self._readers.now(fn)

    # -- operations --------------------------------------------------------------------------

    async def ping(self) -> None:
        await self._write(lambda conn: conn.execute("SELECT 1").fetchone())

    async def ingest(
        self,
        alerts: list[Alert],
        *,
        received_at: float,
        receiver: str,
        group_key: str,
        duplicate_interval: float = 0.0,
    ) -> IngestResult:
        return await self._write(
            lambda conn: _ingest(conn, alerts, received_at, receiver, group_key, duplicate_interval)
        )

    async def claim(self, *, worker: str, now: float, lease: float, limit: int) -> list[InboxItem]:
        def job(conn: sqlite3.Connection) -> list[InboxItem]:
            rows = conn.execute(
                "SELECT id, fingerprint, episode_id, status, alertname, labels, annotations, "
                "starts_at, ends_at, generator_url, received_at, priority, attempts FROM inbox "
                "WHERE state = 'pending' AND (lease_until IS NULL OR lease_until < ?) "
                "ORDER BY priority, id LIMIT ?",
                (now, limit),
            ).fetchall()
            conn.executemany(
                "UPDATE inbox SET claimed_by = ?, lease_until = ?, attempts = attempts + 1 "
                "WHERE id = ?",
                [(worker, now + lease, row[0]) for row in rows],
            )
            return [item_from_row(row, self.recording) for row in rows]

        return await self._write(job)

    async def complete(self, item_id: int, *, events: list[Event], outcome: str) -> list[Event]:
        def job(conn: sqlite3.Connection) -> list[Event]:
            conn.execute(
                "UPDATE inbox SET state = 'done', outcome = ?, done_at = ?, lease_until = NULL "
                "WHERE id = ?",
                (outcome, events[-1].time if events else None, item_id),
            )
            return append_events(conn, events)

        return await self._write(job)

    async def extend_leases(self, item_ids: list[int], *, worker: str, until: float) -> None:
        await self._write(
            lambda conn: conn.executemany(
                "UPDATE inbox SET lease_until = ? WHERE id = ? AND claimed_by = ? AND state = 'pending'",
                [(until, i, worker) for i in item_ids],
            )
        )

    async def append(self, events: list[Event]) -> list[Event]:
        return await self._write(lambda conn: append_events(conn, events))

    async def events(self, query: EventQuery) -> list[Event]:
        sql, params = events_sql(query, "?")
        rows = await self._read(lambda conn: conn.execute(sql, params).fetchall())
        return [event_from_row(row, self.recording) for row in rows]

    async def pending_count(self) -> int:
        row = await self._read(
            lambda conn: conn.execute(
                "SELECT count(*) FROM inbox WHERE state = 'pending'"
            ).fetchone()
        )
        return int(row[0])

    async def schema_version(self) -> int:
        row = await self._read(
            lambda conn: conn.execute("SELECT max(version) FROM schema_version").fetchone()
        )
        return int(row[0] or 0)

    async def raw(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """A read-only query in SQLite's paramstyle (``?``)."""
        return await self._read(lambda conn: conn.execute(sql, params).fetchall())

    async def events_after(self, after_id: int, limit: int) -> list[Event]:
        rows = await self._read(
            lambda conn: conn.execute(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE id > ? ORDER BY id LIMIT ?",  # noqa: S608
                (after_id, limit),
            ).fetchall()
        )
        return [event_from_row(row, self.recording) for row in rows]

    async def audit_anchor(self) -> AuditAnchor:
        return await self._read(audit_anchor)

    async def prune(self, *, before: float, now: float, recording: Recording) -> int:
        """Retention, as one job of the writer (its events are published like any other)."""
        return await self._write(
            lambda conn: prune_events(conn, before=before, now=now, recording=recording),
            heavy=True,
        )


def audit_anchor(conn: sqlite3.Connection) -> AuditAnchor:
    """The chain's head and retention checkpoint, read in one statement."""
    row = conn.execute(
        "SELECT (SELECT last_id FROM audit_head WHERE id = 1), "
        "(SELECT last_hash FROM audit_head WHERE id = 1), "
        "(SELECT through_id FROM audit_checkpoint WHERE id = 1), "
        "(SELECT hash FROM audit_checkpoint WHERE id = 1)"
    ).fetchone()
    return AuditAnchor(row[0], row[1], row[2] or 0, row[3] or GENESIS_HASH)


# -- write jobs (run on the writer thread, inside a savepoint) ----------------------------------


def prune_events(
    conn: sqlite3.Connection, *, before: float, now: float, recording: Recording
) -> int:
    """Delete the events through the last one older than ``before`` (never the newest), move
    the checkpoint there and append the ``audit:checkpoint`` event; the number deleted. The
    caller holds the write transaction (the writer's savepoint, or ``audit.prune``'s)."""
    row = conn.execute(
        "SELECT max(id) FROM events WHERE time < ? AND id < (SELECT max(id) FROM events)",
        (before,),
    ).fetchone()
    through = row[0]
    if through is None:
        return 0
    last = str(conn.execute("SELECT hash FROM events WHERE id = ?", (through,)).fetchone()[0])
    deleted = int(conn.execute("DELETE FROM events WHERE id <= ?", (through,)).rowcount)
    conn.execute(
        "INSERT INTO audit_checkpoint (id, through_id, hash, pruned_at) VALUES (1, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET through_id = excluded.through_id, "
        "hash = excluded.hash, pruned_at = excluded.pruned_at",
        (through, last, now),
    )
    previous = getattr(COMMITTING, "recording", None)
    COMMITTING.recording = recording
    try:
        append_events(
            conn, [checkpoint_event(deleted=deleted, through=through, hash_=last, now=now)]
        )
    finally:
        COMMITTING.recording = previous
    return deleted


def migrate(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    current = row[0] or 0
    for number, script in enumerate(SQLITE_MIGRATIONS, start=1):
        if number <= current:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _statements(script: str) -> list[str]:
    """Split a migration script into statements, keeping trigger bodies whole."""
    out: list[str] = []
    current = ""
    for line in script.strip().splitlines():
        current += line + "\n"
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    if current.strip():
        out.append(current.strip())
    return out


def _latest_episodes(conn: sqlite3.Connection, alert: Alert) -> tuple[list[Episode], set[int]]:
    """The fingerprint's latest episode and the one before it, newest first, and which of
    them already have this alert's state (status) in the inbox."""
    rows = conn.execute(
        "SELECT e.id, e.fingerprint, e.starts_at, e.resolved_at, EXISTS (SELECT 1 FROM inbox i "
        "WHERE i.fingerprint = e.fingerprint AND i.episode_id = e.id AND i.status = ?) "
        "FROM episodes e WHERE e.fingerprint = ? ORDER BY e.id DESC LIMIT 2",
        (alert.status, alert.fingerprint),
    ).fetchall()
    return [Episode(*row[:4]) for row in rows], {row[0] for row in rows if row[4]}


def _ingest(
    conn: sqlite3.Connection,
    alerts: list[Alert],
    now: float,
    receiver: str,
    group_key: str,
    duplicate_interval: float = 0.0,
) -> IngestResult:
    new = duplicates = 0
    events: list[Event] = []
    recording: Recording | None = getattr(COMMITTING, "recording", None)  # the writer's policy
    for alert in alerts:
        found, queued = _latest_episodes(conn, alert)
        intake = decide(
            found[0] if found else None, alert, now, found[1] if len(found) > 1 else None
        )
        if intake.episode_id is None:
            episode_id = _insert_episode(
                conn, alert, now, resolved_at=intake.new_resolved_at, recording=recording
            )
        else:
            episode_id = intake.episode_id
            if intake.close_at is not None:
                conn.execute(
                    "UPDATE episodes SET resolved_at = ? WHERE id = ?",
                    (intake.close_at, episode_id),
                )
            elif intake.move_start is not None:
                conn.execute(
                    "UPDATE episodes SET starts_at = ? WHERE id = ?",
                    (intake.move_start, episode_id),
                )
        inserted = 0
        if not intake.late_repeat and episode_id not in queued:
            values = inbox_values(
                alert,
                episode_id=episode_id,
                now=now,
                receiver=receiver,
                group_key=group_key,
                recording=recording,
            )
            inserted = conn.execute(
                f"INSERT OR IGNORE INTO inbox ({INBOX_INSERT_COLUMNS}) "  # noqa: S608
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            ).rowcount
        repeats = None
        if inserted:
            new += 1
        else:
            duplicates += 1
            row = conn.execute(
                REPEAT_SQL,
                repeat_params(alert, episode_id=episode_id, now=now, interval=duplicate_interval),
            ).fetchone()
            recorded, repeats = recorded_repeat(row)
            if not recorded:
                continue
        events.append(
            intake_event(
                alert,
                inserted=bool(inserted),
                episode_id=episode_id,
                now=now,
                receiver=receiver,
                repeats=repeats,
            )
        )
    appended = append_events(conn, events)
    return IngestResult(received=len(alerts), new=new, duplicates=duplicates, events=appended)


def _insert_episode(
    conn: sqlite3.Connection,
    alert: Alert,
    now: float,
    *,
    resolved_at: float | None,
    recording: Recording | None = None,
) -> int:
    name = episode_alertname(alert, recording)
    cursor = conn.execute(
        "INSERT INTO episodes (fingerprint, alertname, starts_at, opened_at, resolved_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (alert.fingerprint, name, alert.starts_ts, now, resolved_at),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid
