"""PostgreSQL transactions: one per write, and what the event-chain append keeps in each.

:meth:`PgBase._write` runs a job in one transaction on a pooled connection. A deadlock or
serialisation failure rolled everything back, so the job is run again (a few times), as is one
whose BEGIN failed on a pooled connection the server had closed (after a restart); any other
driver error — the commit failed, the connection was lost — raises
:class:`~remediator.errors.StoreUnavailable` with nothing changed. (A connection lost *during*
COMMIT cannot tell whether the server committed; every write here is safe to repeat.)

A :class:`Tx` keeps the recording policy, the events appended and the transaction's place
among the publications; :func:`remediator.store.postgres_driver.append` appends to the one
audit chain of every replica by the operation every backend runs (remediator/store/chain.py:
``link``): it takes the row lock of ``audit_head`` (created if missing), so concurrent writers
queue there. A job appends at its end, so the head lock is always the last lock a transaction
takes.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg import errors

from remediator.audit.events import Event
from remediator.audit.recording import Recording
from remediator.errors import StoreUnavailable
from remediator.store.postgres_conn import Connection, Pool, Publisher, brief

T = TypeVar("T")
Row = tuple[Any, ...]
RETRIES = 5
_RETRYABLE = (errors.DeadlockDetected, errors.SerializationFailure)


class Retries:
    """When a write transaction runs again: after a deadlock or serialisation failure (rolled
    back whole; up to :data:`RETRIES` times, after a growing random pause), and when BEGIN
    failed on a pooled connection the server had closed (nothing ran; at most once per
    connection of the pool)."""

    def __init__(self, pool_size: int) -> None:
        self.pool_size = pool_size
        self.deadlocks = 0
        self.stale = 0

    async def again(self, exc: BaseException, *, began: bool) -> bool:
        """Whether to run the transaction again after ``exc`` (``began``: it had a connection)."""
        if isinstance(exc, _RETRYABLE) and self.deadlocks < RETRIES:
            self.deadlocks += 1
            await asyncio.sleep(random.uniform(0.005, 0.05) * self.deadlocks)
            return True
        if isinstance(exc, psycopg.OperationalError) and not began:
            self.stale += 1
            return self.stale <= self.pool_size
        return False


class Tx:
    """One write transaction: its connection, and the events it appended. In a batch
    (remediator/store/postgres_batch.py) ``deferred`` keeps the events its jobs append (each with
    the list its job was sent) until the batch links them all, and ``head_taken`` says a job
    locked the chain's head itself."""

    def __init__(self, conn: Connection, recording: Recording, publisher: Publisher) -> None:
        self.conn = conn
        self.recording = recording
        self.publisher = publisher
        self.appended: list[Event] = []
        self.ticket: int | None = None
        self.deferred: list[tuple[list[Event], list[Event]]] | None = None
        self.head_taken = False

    async def execute(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> int:
        """Run a statement; the number of rows it touched."""
        cur = await self.conn.execute(sql, params)
        return cur.rowcount

    async def one(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> Row | None:
        cur = await self.conn.execute(sql, params)
        return await cur.fetchone()

    async def all(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[Row]:
        cur = await self.conn.execute(sql, params)
        return await cur.fetchall()

    async def many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            async with self.conn.cursor() as cur:
                await cur.executemany(sql, rows)


class PgBase:
    """What the PostgreSQL store's parts share: the pool, the policy, the subscriber."""

    def __init__(self) -> None:
        self._pool: Pool | None = None
        self._publisher = Publisher()
        self.recording = Recording()

    @property
    def pool(self) -> Pool:
        if self._pool is None:
            raise StoreUnavailable("the store is not open")
        return self._pool

    async def _write(self, job: Callable[[Tx], Awaitable[T]]) -> T:
        """Run ``job`` in one transaction; StoreUnavailable if it cannot commit.

        Run again after a deadlock or serialisation failure (rolled back whole), and on a fresh
        connection when BEGIN failed on one the server had closed (nothing ran)."""
        retries = Retries(self.pool.size)
        while True:
            tx: Tx | None = None
            try:
                async with self.pool.connection() as conn, conn.transaction():
                    tx = Tx(conn, self.recording, self._publisher)
                    result = await job(tx)
            except BaseException as exc:
                self._publisher.abandoned(tx.ticket if tx else None)
                if await retries.again(exc, began=tx is not None):
                    continue
                if isinstance(exc, psycopg.Error):
                    raise StoreUnavailable(f"the store could not commit: {brief(exc)}") from None
                raise
            self._publisher.committed(tx.ticket, tx.appended)
            return result

    async def _rows(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[Row]:
        """A read (autocommit); again on another connection if this one had been closed."""

        async def fetch(conn: Connection) -> list[Row]:
            cur = await conn.execute(sql, params)
            return await cur.fetchall()

        return await self._reading(fetch)

    async def _reading(self, read: Callable[[Connection], Awaitable[T]]) -> T:
        """``read`` on a pooled connection (autocommit); again on another connection if this
        one had been closed."""
        stale = 0
        while True:
            try:
                async with self.pool.connection() as conn:
                    return await read(conn)
            except psycopg.OperationalError as exc:
                stale += 1
                if stale > self.pool.size:
                    raise StoreUnavailable(f"the store could not be read: {brief(exc)}") from None
            except psycopg.Error as exc:
                raise StoreUnavailable(f"the store could not be read: {brief(exc)}") from None

    async def _row(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> Row | None:
        rows = await self._rows(sql, params)
        return rows[0] if rows else None
