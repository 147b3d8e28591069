"""The PostgreSQL driver of store operations (remediator/store/ops.py).

A write runs the operation in one transaction (:meth:`PgBase._write`, run again after a
deadlock: the operation is made anew for each attempt) if it is urgent
(remediator/store/lanes.py) or reads its own appended events (intake); every other write is
one job of a group-committed batch (remediator/store/postgres_batch.py), whose appends are
linked together at its end. A read runs it on one pooled connection in autocommit, again on
another connection if that one had been closed.
"""

from __future__ import annotations

from typing import Any, TypeVar

from remediator.audit.events import Event
from remediator.store import chain
from remediator.store.lanes import URGENT
from remediator.store.ops import POSTGRES, Driven, Op, OpFn, P, Query
from remediator.store.postgres_batch import IMMEDIATE, Batcher, Make
from remediator.store.postgres_conn import Connection
from remediator.store.postgres_tx import PgBase, Tx

T = TypeVar("T")


async def drive(op: Op[T], tx: Tx) -> T:
    """Run ``op`` in the transaction ``tx``; its value."""
    return await _run(op, tx.conn, tx)


async def drive_read(op: Op[T], conn: Connection) -> T:
    """Run ``op`` (which must not append) on ``conn``; its value."""
    return await _run(op, conn, None)


async def _run(op: Op[T], conn: Connection, tx: Tx | None) -> T:
    sent: Any = None
    try:
        while True:
            step = op.send(sent)
            if isinstance(step, Query):
                if tx is not None and tx.deferred is not None and step.sql.startswith(chain.HEAD):
                    tx.head_taken = True  # its batch closes after this job
                sent = await _execute(conn, step)
            elif tx is not None:
                sent = await append(tx, step.events)
            else:
                raise TypeError("a read cannot append to the audit chain")
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def append(tx: Tx, events: list[Event]) -> list[Event]:
    """Append ``events`` to the audit chain in ``tx`` (:func:`remediator.store.chain.link`,
    under the head's row lock), reserving the transaction's place among the publications. In a
    batch: kept, and linked with the batch's (the list sent back is filled in then)."""
    if not events:
        return []
    if tx.deferred is not None:
        sent: list[Event] = []
        tx.deferred.append((events, sent))
        return sent
    out = await drive(chain.link(POSTGRES, events, recording=tx.recording), tx)
    if tx.ticket is None:
        first = out[0].id
        assert first is not None
        tx.ticket = tx.publisher.reserve(first)
    tx.appended.extend(out)
    return out


async def _execute(conn: Connection, query: Query) -> Any:
    fetch = query.fetch
    sql = POSTGRES.sql(query.sql)  # statements are written with ``?``
    if fetch == "many":
        if query.params:
            async with conn.cursor() as cur:
                await cur.executemany(sql, query.params)
        return None
    if fetch == "id":
        cur = await conn.execute(sql + " RETURNING id", query.params)
        row = await cur.fetchone()
        return None if row is None else row[0]
    cur = await conn.execute(sql, query.params)
    if fetch == "one":
        return await cur.fetchone()
    if fetch == "all":
        return await cur.fetchall()
    return cur.rowcount if fetch == "count" else None


async def link(tx: Tx, events: list[Event]) -> list[Event]:
    """Append ``events`` in ``tx`` now (a batch's, at its end)."""
    return await append(tx, events)


class PgDriver(PgBase, Driven):
    """Writes outside the urgent lane are group-committed (remediator/store/postgres_batch.py)."""

    dialect = POSTGRES
    _batcher: Batcher | None = None

    async def _write_op(self, op: OpFn[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        if URGENT.get() or op in IMMEDIATE:
            return await self._write(lambda tx: drive(op(POSTGRES, *args, **kwargs), tx))
        value: T = await self._batched(lambda: op(POSTGRES, *args, **kwargs))
        return value

    async def _batched(self, make: Make) -> Any:
        """Run the operation ``make()`` makes in this replica's next batch; its value."""
        if self._batcher is None:
            self._batcher = Batcher(self, drive=drive, link=link)
        return await self._batcher.run(make)

    async def _read_op(self, op: OpFn[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._reading(lambda conn: drive_read(op(POSTGRES, *args, **kwargs), conn))
