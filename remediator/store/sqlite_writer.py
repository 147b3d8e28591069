"""SQLite plumbing: the group-committing writer, and the readers.

Every write is a job: a function of the connection. Jobs queued while a commit is in flight
form the next batch. A batch runs in one transaction, each job inside its own SAVEPOINT (a job
that fails rolls back alone), and commits once: concurrent webhook requests share one fsync. A
job's future is resolved only after the COMMIT returned, so an acknowledged write is on disk.

The jobs' statements run on the event loop's own thread, and only the COMMIT (the fsync) runs
on the writer's thread: a batch costs one thread hand-off instead of one per job, and the loop
and a writer thread never take turns on the GIL statement by statement. Jobs are short (a few
rows each); a job that may run long (retention's delete) is queued as ``heavy`` and runs, with
its commit, on the writer's thread. Reads use their own connections (WAL readers never block the
writer): :meth:`Readers.run` on the default executor, :meth:`Readers.now` on the calling
thread for point lookups by index, which cost less than a hand-off.

The SQLite driver of store operations (remediator/store/ops.py).

A write runs the operation synchronously inside one job of the single writer
(remediator/store/sqlite_writer.py: batched, each job in its savepoint, committed on the
writer's thread); a read runs it on a reader connection.

An :class:`~remediator.store.ops.Append` runs :func:`remediator.store.chain.link` with the
batch's recording policy (:data:`COMMITTING`); within a batch the head row is read once and
written once, by :func:`flush_head` before the COMMIT.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from remediator.audit.events import Event
from remediator.audit.recording import Recording
from remediator.errors import StoreUnavailable
from remediator.store import chain
from remediator.store.lanes import URGENT
from remediator.store.ops import SQLITE, Append, Op, Query

# The batch the writer is running (on the thread running it): ``events`` appended so far
# (published once committed), ``recording``, the policy applied to every appended event, and
# ``head``, the chain's head as of the last append of the batch (None: not read yet).
COMMITTING = threading.local()


def append_events(conn: sqlite3.Connection, events: list[Event]) -> list[Event]:
    """Append to the hash chain, with the batch's recording policy (redaction, sealing,
    notification routing). Runs under the write lock, so the chain has one head."""
    if not events:
        return []
    recording: Recording = getattr(COMMITTING, "recording", None) or Recording()
    batched = hasattr(COMMITTING, "head")
    after: tuple[int, str] | None = getattr(COMMITTING, "head", None)
    op = chain.link(SQLITE, events, recording=recording, after=after, save_head=not batched)
    out = drive(op, conn)
    if batched:
        last_id = out[-1].id
        assert last_id is not None
        COMMITTING.head = (last_id, out[-1].hash)
    pending: list[Event] | None = getattr(COMMITTING, "events", None)
    if pending is not None:
        pending.extend(out)
    return out


def flush_head(conn: sqlite3.Connection) -> None:
    """Write the batch's head, if the batch appended (the writer calls it before COMMIT)."""
    head: tuple[int, str] | None = getattr(COMMITTING, "head", None)
    if head is not None:
        conn.execute(chain.SAVE_HEAD, head)


def drive(op: Op[T], conn: sqlite3.Connection, *, write: bool = True) -> T:
    """Run ``op`` on ``conn``; its value. (Intake runs here: the common steps are inline.)"""
    send = op.send
    sent: Any = None
    try:
        while True:
            step = send(sent)
            if type(step) is not Query:
                if not write:
                    raise TypeError("a read cannot append to the audit chain")
                assert isinstance(step, Append)
                sent = append_events(conn, step.events)
                continue
            fetch = step.fetch
            if fetch == "many":
                if step.params:
                    conn.executemany(step.sql, step.params)
                sent = None
                continue
            cur = conn.execute(step.sql, step.params)
            if fetch == "one":
                sent = cur.fetchone()
            elif fetch == "all":
                sent = cur.fetchall()
            else:
                sent = (
                    cur.rowcount if fetch == "count" else cur.lastrowid if fetch == "id" else None
                )
                cur.close()
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]
log = logging.getLogger("remediator.store")

_MAX_BATCH = 512
# A batch stops taking jobs once it has run this long (the rest wait for the next commit), so
# the event loop, which runs the statements, is never held for long.
_BATCH_SECONDS = 0.02
_POLL = 0.001  # seconds between tries for the connection while another batch has it


def create_private(path: Path) -> None:
    """Create the database file readable by its owner only (0600) if it does not exist yet;
    SQLite creates the ``-wal`` and ``-shm`` files with the database file's mode."""
    if str(path) == ":memory:":
        return
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def connect(path: Path) -> sqlite3.Connection:
    create_private(path)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def connect_reader(path: Path) -> sqlite3.Connection:
    """A read-only connection. WAL mode is a property of the file, set by the writer."""
    create_private(path)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("PRAGMA query_only=1")
    return conn


_Queued = tuple[Job, "asyncio.Future[Any]"]


@dataclass(eq=False)
class _Queue:
    """The jobs one event loop queued, and whether that loop is draining them. ``urgent``
    jobs (remediator/store/lanes.py) are taken before ``jobs``."""

    jobs: list[_Queued] = field(default_factory=list)
    urgent: list[_Queued] = field(default_factory=list)
    draining: bool = False
    task: asyncio.Task[None] | None = None


def _interleave(urgent: list[_Queued], jobs: list[_Queued]) -> list[_Queued]:
    """The urgent lane ahead of the backlog, but alternating with its oldest jobs: an urgent
    job waits for at most as many others as are urgent before it, and a flood of urgent ones
    (small webhooks) still leaves the worker half of each batch."""
    mixed: list[_Queued] = []
    for i, job in enumerate(urgent):
        mixed.append(job)
        if i < len(jobs):
            mixed.append(jobs[i])
    mixed.extend(jobs[len(urgent) :])
    return mixed


@dataclass
class _Outcome:
    results: list[tuple[Any, BaseException | None]]
    appended: list[Event]
    error: BaseException | None = None


class Writer:
    """The one writer of a database file."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        on_commit: Callable[[list[Event]], None] | None = None,
        recording: Recording | None = None,
    ) -> None:
        self.conn = conn
        self.on_commit = on_commit
        self.recording = recording or Recording()
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        # One batch at a time on the connection, whichever event loop (tests may use several).
        self._busy = threading.Lock()
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue] = (
            weakref.WeakKeyDictionary()
        )
        self._closed = False

    @property
    def alive(self) -> bool:
        return not self._closed

    async def run(self, job: Callable[[sqlite3.Connection], T], *, heavy: bool = False) -> T:
        if self._closed:
            raise StoreUnavailable("the store is not open")
        loop = asyncio.get_running_loop()
        if heavy:
            await self._acquire()
            outcome = await _finish(loop.run_in_executor(self._thread, self._heavy, job))
            self._publish(outcome)
            result, error = outcome.results[0]
            if error is not None:
                raise error
            return result  # type: ignore[no-any-return]
        future: asyncio.Future[T] = loop.create_future()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = _Queue()
        (queue.urgent if URGENT.get() else queue.jobs).append((job, future))
        if not queue.draining:
            queue.draining = True
            queue.task = loop.create_task(self._drain(queue))
        return await future

    async def stop(self) -> None:
        self._closed = True
        await self._acquire()
        try:
            self.conn.close()
        finally:
            self._busy.release()
        self._thread.shutdown(wait=True)

    async def _acquire(self) -> None:
        """Take the connection. Only contended while a heavy job or another event loop's batch
        runs, so it polls: the lock is only ever taken by this task, never by a thread that
        would keep it if this task were cancelled meanwhile."""
        # A threading.Lock: the holder may be another event loop's task, or the writer's thread,
        # so no asyncio.Event (bound to one loop) can announce its release.
        while not self._busy.acquire(blocking=False):  # noqa: ASYNC110
            await asyncio.sleep(_POLL)

    async def _drain(self, queue: _Queue) -> None:
        loop = asyncio.get_running_loop()
        try:
            while (queue.jobs or queue.urgent) and not self._closed:
                if queue.urgent:
                    queue.jobs[:] = _interleave(queue.urgent, queue.jobs)
                    queue.urgent.clear()
                batch, queue.jobs[:] = queue.jobs[:_MAX_BATCH], queue.jobs[_MAX_BATCH:]
                await self._acquire()
                if self._closed:
                    self._busy.release()
                    queue.jobs[:0] = batch
                    break
                try:
                    outcome = self._batch([job for job, _ in batch], budget=_BATCH_SECONDS)
                except BaseException:
                    self._busy.release()
                    raise
                if len(outcome.results) < len(batch):  # over budget: the rest go next
                    queue.jobs[:0] = batch[len(outcome.results) :]
                    batch = batch[: len(outcome.results)]
                if outcome.error is None:
                    commit = loop.run_in_executor(self._thread, self._commit, outcome)
                    outcome = await _finish(commit)
                else:
                    self._busy.release()
                self._publish(outcome)
                for (_, future), (result, error) in zip(batch, outcome.results, strict=True):
                    if future.done():  # its caller stopped waiting
                        continue
                    if error is not None:
                        future.set_exception(error)
                    else:
                        future.set_result(result)
        finally:
            queue.draining = False
            for _, future in [*queue.urgent, *queue.jobs] if self._closed else ():
                if not future.done():
                    future.set_exception(StoreUnavailable("the store is not open"))

    def _heavy(self, job: Job) -> _Outcome:
        """One job and its commit, on the writer's thread; releases ``_busy``."""
        try:
            outcome = self._batch([job])
            return outcome if outcome.error is not None else self._commit_locked(outcome)
        finally:
            self._busy.release()

    def _commit(self, outcome: _Outcome) -> _Outcome:
        """COMMIT on the writer's thread; releases ``_busy`` once the connection is free."""
        try:
            return self._commit_locked(outcome)
        finally:
            self._busy.release()

    def _batch(self, jobs: list[Job], budget: float | None = None) -> _Outcome:
        """BEGIN and run the jobs, each in its savepoint, until they are done or ``budget``
        seconds have passed (at least one runs); the caller holds ``_busy``."""
        deadline = None if budget is None else time.perf_counter() + budget
        conn = self.conn
        appended: list[Event] = []
        results: list[tuple[Any, BaseException | None]] = []
        COMMITTING.events = appended
        COMMITTING.recording = self.recording
        COMMITTING.head = None
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in jobs:
                if results and deadline is not None and time.perf_counter() > deadline:
                    break
                conn.execute("SAVEPOINT job")
                mark, head = len(appended), COMMITTING.head
                try:
                    result = job(conn)
                except Exception as exc:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    del appended[mark:]
                    COMMITTING.head = head
                    failure: BaseException = exc
                    if isinstance(exc, sqlite3.Error):
                        failure = StoreUnavailable(f"the store could not write: {exc}")
                    results.append((None, failure))
                else:
                    conn.execute("RELEASE job")
                    if isinstance(result, sqlite3.Cursor):
                        result.close()
                        result = None
                    results.append((result, None))
            flush_head(conn)
        except sqlite3.Error as exc:
            return self._failed(jobs, exc)
        finally:
            COMMITTING.events = None
            del COMMITTING.head
        return _Outcome(results, appended)

    def _commit_locked(self, outcome: _Outcome) -> _Outcome:
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            return self._failed(outcome.results, exc)
        return outcome

    def _failed(self, jobs: list[Any], exc: sqlite3.Error) -> _Outcome:
        log.error("store commit failed", extra={"error": str(exc)})
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("ROLLBACK")
        error = StoreUnavailable(f"the store could not commit: {exc}")
        return _Outcome([(None, error) for _ in jobs], [], error)

    def _publish(self, outcome: _Outcome) -> None:
        if outcome.appended and self.on_commit is not None:
            try:
                self.on_commit(outcome.appended)
            except Exception:
                log.exception("event publication failed")


async def _finish(future: asyncio.Future[_Outcome]) -> _Outcome:
    """The outcome of work on the writer's thread. The work goes on if the awaiting task is
    cancelled (a commit cannot be taken back), and releases the lock itself when done."""
    return await asyncio.shield(future)


class Readers:
    """One read connection per thread."""

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

    def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return fn(self._conn())
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"the store could not be read: {exc}") from None

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A read on the default executor (for reads that may touch many rows)."""
        return await asyncio.to_thread(self.call, fn)

    def now(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A read on the calling thread: for lookups by index, cheaper than a hand-off."""
        return self.call(fn)

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
