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
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from remediator.audit.events import Event
from remediator.audit.recording import Recording
from remediator.errors import StoreUnavailable
from remediator.store import chain
from remediator.store.inbox import SEVERITY_PRIORITY
from remediator.store.ops import SQLITE, Driven, OpFn, P
from remediator.store.records import AuditAnchor
from remediator.store.roles import Roles
from remediator.store.schema import SQLITE_MIGRATIONS
from remediator.store.sqlite_writer import (
    COMMITTING,
    Readers,
    Writer,
    connect,
    connect_reader,
    drive,
)

T = TypeVar("T")
log = logging.getLogger("remediator.store")
__all__ = ["SEVERITY_PRIORITY", "ChainFile", "SqliteStore", "migrate", "sqlite_path"]


def sqlite_path(url: str) -> Path:
    """``sqlite:///data/x.db`` → ``data/x.db`` (relative); ``sqlite:////abs/x.db`` → absolute."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a sqlite URL: {url!r}")
    return Path(url.removeprefix("sqlite:///"))


class SqliteStore(Roles, Driven):
    dialect = SQLITE

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

    # The operations written once (remediator/store/ops.py), driven on a writer job or a reader.

    async def _write_op(self, op: OpFn[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._write(partial(drive, op(SQLITE, *args, **kwargs)))

    async def _read_op(self, op: OpFn[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._read(partial(drive, op(SQLITE, *args, **kwargs), write=False))

    async def _peek_op(self, op: OpFn[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """A read by index on the calling thread (cheaper than :meth:`_read_op`'s hand-off)."""
        return self._peek(partial(drive, op(SQLITE, *args, **kwargs), write=False))

    # -- operations --------------------------------------------------------------------------

    async def ping(self) -> None:
        await self._write(lambda conn: conn.execute("SELECT 1").fetchone())

    async def schema_version(self) -> int:
        row = await self._read(
            lambda conn: conn.execute("SELECT max(version) FROM schema_version").fetchone()
        )
        return int(row[0] or 0)

    async def raw(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """A read-only query in SQLite's paramstyle (``?``)."""
        return await self._read(lambda conn: conn.execute(sql, params).fetchall())

    async def size_bytes(self) -> int:
        """The bytes of the database file and its WAL and shared-memory files."""
        return sum(
            f.stat().st_size
            for f in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm"))
            if f.exists()
        )

    async def prune(self, *, before: float, now: float, recording: Recording) -> int:
        """Retention, as one job of the writer (its events are published like any other)."""
        return await self._write(
            lambda conn: prune_events(conn, before=before, now=now, recording=recording),
            heavy=True,
        )


class ChainFile:
    """The audit chain of a SQLite store's file, read (or pruned) directly, without a writer:
    ``remediator audit verify`` (read-only) and ``audit prune`` on a file. Close it after use."""

    def __init__(self, path: Path, *, write: bool = False) -> None:
        self.conn = connect(path) if write else connect_reader(path)

    def anchor(self) -> AuditAnchor:
        return drive(chain.anchor(SQLITE), self.conn, write=False)

    def records(self, after_id: int, limit: int, recording: Recording) -> list[Event]:
        """The events after ``after_id`` in id order, at most ``limit``."""
        op = chain.records(SQLITE, after_id, limit, recording=recording)
        return drive(op, self.conn, write=False)

    def plaintext(self, after_id: int) -> int | None:
        """See :meth:`~remediator.store.base.AuditChain.audit_plaintext`."""
        return drive(chain.plaintext(SQLITE, after_id), self.conn, write=False)

    def prune(self, *, before: float, now: float, recording: Recording) -> int:
        """Retention in one transaction of its own; the number of events deleted."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            deleted = prune_events(self.conn, before=before, now=now, recording=recording)
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        return deleted

    def close(self) -> None:
        self.conn.close()


# -- write jobs (run on the writer thread, inside a savepoint) ----------------------------------


def prune_events(
    conn: sqlite3.Connection, *, before: float, now: float, recording: Recording
) -> int:
    """Retention (remediator/store/chain.py: ``prune``), its ``audit:checkpoint`` event
    recorded with ``recording``; the number deleted. The caller holds the write transaction
    (the writer's savepoint, or ``audit.prune``'s)."""
    previous = getattr(COMMITTING, "recording", None)
    COMMITTING.recording = recording
    try:
        return drive(chain.prune(SQLITE, before=before, now=now), conn)
    finally:
        COMMITTING.recording = previous


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
