"""SQLite plumbing: one writer thread with group commit, and per-thread readers.

Every write is a job run by the single writer thread. The thread takes all jobs waiting at that
moment, runs each inside its own SAVEPOINT of one transaction, and commits once: concurrent
webhook requests share one fsync, and a job that fails rolls back alone. A job's future is
resolved only after the COMMIT returned, so an acknowledged write is on disk. Reads use their own
connections (WAL readers never block the writer).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from remediator.errors import StoreUnavailable
from remediator.events import Event
from remediator.recording import Recording
from remediator.store.sqlite_rows import COMMITTING

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]
log = logging.getLogger("remediator.store")

_MAX_BATCH = 512
_STOP = object()


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def connect_reader(path: Path) -> sqlite3.Connection:
    """A read-only connection. WAL mode is a property of the file, set by the writer."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("PRAGMA query_only=1")
    return conn


class Writer:
    """The single writer thread of one database."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        on_commit: Callable[[list[Event]], None] | None = None,
        recording: Recording | None = None,
    ) -> None:
        self.conn = conn
        self.on_commit = on_commit
        self.recording = recording or Recording()
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="store-writer", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    async def run(self, job: Callable[[sqlite3.Connection], T]) -> T:
        if not self._thread.is_alive():
            raise StoreUnavailable("the store is not open")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put((job, future))
        return await asyncio.wrap_future(future)

    async def stop(self) -> None:
        self._jobs.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        self.conn.close()

    def _loop(self) -> None:
        while True:
            first = self._jobs.get()
            if first is _STOP:
                return
            batch = [first]
            stop = False
            while len(batch) < _MAX_BATCH:
                try:
                    nxt = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                batch.append(nxt)
            self._run_batch(batch)
            if stop:
                return

    def _run_batch(self, batch: list[tuple[Job, concurrent.futures.Future[Any]]]) -> None:
        conn = self.conn
        outcomes: list[tuple[concurrent.futures.Future[Any], Any, BaseException | None]] = []
        appended: list[Event] = []
        COMMITTING.events = appended
        COMMITTING.recording = self.recording
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job, future in batch:
                conn.execute("SAVEPOINT job")
                mark = len(appended)
                try:
                    result = job(conn)
                except Exception as exc:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    del appended[mark:]
                    outcomes.append((future, None, exc))
                else:
                    conn.execute("RELEASE job")
                    if isinstance(result, sqlite3.Cursor):
                        # A cursor belongs to this thread's connection: finalise it here, never
                        # on the event loop's thread while this thread runs the statement.
                        result.close()
                        result = None
                    outcomes.append((future, result, None))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("store commit failed", extra={"error": str(exc)})
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            for _, future in batch:
                _settle(future, error=StoreUnavailable(f"the store could not commit: {exc}"))
            return
        finally:
            COMMITTING.events = None
        if appended and self.on_commit is not None:
            try:
                self.on_commit(appended)
            except Exception:
                log.exception("event publication failed")
        for future, result, error in outcomes:
            if isinstance(error, sqlite3.Error):
                error = StoreUnavailable(f"the store could not write: {error}")
            _settle(future, result, error)


def _settle(
    future: concurrent.futures.Future[Any], result: Any = None, error: BaseException | None = None
) -> None:
    """Hand a job's outcome to its caller. A caller that stopped waiting (its task was
    cancelled, which cancels the future) gets nothing; the writer thread must not die of it."""
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


class Readers:
    """One read connection per thread of the default executor."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect_reader(self.path)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            try:
                return fn(self._conn())
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"the store could not be read: {exc}") from None

        return await asyncio.to_thread(call)

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
