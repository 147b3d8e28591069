"""The SQLite driver of store operations (remediator/store/ops.py).

A write runs the operation synchronously inside one job of the single writer
(remediator/store/sqlite_writer.py: batched, each job in its savepoint, committed on the
writer's thread); a read runs it on a reader connection.

An :class:`~remediator.store.ops.Append` runs :func:`remediator.store.chain.link` with the
batch's recording policy (:data:`COMMITTING`); within a batch the head row is read once and
written once, by :func:`flush_head` before the COMMIT.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from remediator.audit.events import Event
from remediator.audit.recording import Recording
from remediator.store import chain
from remediator.store.dialect import SQLITE
from remediator.store.ops import Append, Driven, Op, OpFn, P, Query

T = TypeVar("T")

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


class SqliteDriver(Driven):
    """The host class (:class:`~remediator.store.sqlite.SqliteStore`) provides ``_write``,
    ``_read`` and ``_peek``."""

    dialect = SQLITE

    async def _write(self, job: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    def _peek(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def _write_op(self, op: OpFn[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._write(lambda conn: drive(op(SQLITE, *args, **kwargs), conn))

    async def _read_op(self, op: OpFn[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._read(lambda conn: drive(op(SQLITE, *args, **kwargs), conn, write=False))

    async def _peek_op(self, op: OpFn[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """A read by index on the calling thread (cheaper than :meth:`_read_op`'s hand-off)."""
        return self._peek(lambda conn: drive(op(SQLITE, *args, **kwargs), conn, write=False))
