"""PostgreSQL plumbing: a small pool of autocommit connections, and ordered publication.

The pool hands out at most ``size`` connections at once (most recently used first); one that
broke, or that was left inside a transaction, is closed instead of being reused. One that the
server closed while it sat idle (a restart) fails on its first statement: the callers
(remediator/store/postgres_tx.py) then try again on another, since nothing ran. Writes open their
own transaction on it; reads run in autocommit.

A quarter of the connections (at least one, with two or more) is kept for urgent work
(remediator/store/lanes.py: the webhook's writes and ``/health``): the worker's batches
(remediator/store/postgres_batch.py), which queue on the audit chain's head lock, hold at most
the rest, so a webhook never waits for a connection behind them. The intake's own transactions no longer take that lock
(remediator/store/arrivals.py).

Committed events are handed to the subscriber in commit order: every appending transaction
reserves its place (its first event id) while it holds the audit-head lock, so this process's
reservations are ordered like its commits, and a batch is published only when every batch
before it has committed or rolled back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import psycopg
from psycopg import pq
from psycopg.rows import TupleRow

from remediator.audit.events import Event
from remediator.errors import StoreUnavailable
from remediator.store.lanes import URGENT

log = logging.getLogger("remediator.store")

Connection = psycopg.AsyncConnection[TupleRow]
IDLE_IN_TX_MS = 30_000  # no job waits on anything but the database inside a transaction


def urgent_reserve(size: int) -> int:
    """The connections of a pool of ``size`` that only urgent work may take."""
    return max(1, size // 4) if size > 1 else 0


class Pool:
    """At most ``size`` connections to ``conninfo``, reused while healthy; at most ``size`` -
    :func:`urgent_reserve` of them for work outside the urgent lane."""

    def __init__(self, conninfo: str, *, size: int, connect_timeout: int = 10) -> None:
        self.conninfo = conninfo
        self.size = size
        self.connect_timeout = connect_timeout
        self._slots = asyncio.Semaphore(size)
        self._background = asyncio.Semaphore(size - urgent_reserve(size))
        self._idle: list[Connection] = []
        self._closed = False

    async def connect(self) -> Connection:
        """A new autocommit connection; :class:`StoreUnavailable` if the server can't be had."""
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.conninfo,
                autocommit=True,
                connect_timeout=self.connect_timeout,
                application_name="remediator",
            )
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot connect to the store: {brief(exc)}") from None
        try:
            # A replica that stalls inside a transaction (paused, partitioned) must not hold
            # its locks (a fingerprint, the audit head) for long: the server aborts it.
            await conn.execute(f"SET idle_in_transaction_session_timeout = {IDLE_IN_TX_MS}")
        except psycopg.Error as exc:
            await _close(conn)
            raise StoreUnavailable(f"cannot set up the store connection: {brief(exc)}") from None
        return conn

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        if self._closed:
            raise StoreUnavailable("the store is not open")
        async with contextlib.AsyncExitStack() as held:
            if not URGENT.get():
                await held.enter_async_context(self._background)
            await held.enter_async_context(self._slots)
            conn = await self._take()
            try:
                yield conn
            finally:
                await self._give_back(conn)

    async def _take(self) -> Connection:
        while self._idle:
            conn = self._idle.pop()
            if not (conn.closed or conn.broken):
                return conn
            await _close(conn)
        return await self.connect()

    async def _give_back(self, conn: Connection) -> None:
        reusable = (
            not self._closed
            and not conn.closed
            and not conn.broken
            and conn.info.transaction_status == pq.TransactionStatus.IDLE
        )
        if reusable:
            self._idle.append(conn)
        else:
            await _close(conn)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await _close(conn)
        # Connections still in use are closed when they are given back.


async def _close(conn: Connection) -> None:
    with contextlib.suppress(Exception):
        await conn.close()


def brief(exc: BaseException) -> str:
    """The first line of a driver error (no DSN, no multi-line server detail)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class Publisher:
    """Hands committed events to the subscriber, in commit order."""

    def __init__(self) -> None:
        self.callback: Callable[[list[Event]], None] | None = None
        self._waiting: dict[int, list[Event] | None] = {}

    def reserve(self, first_id: int) -> int:
        """Called while holding the audit-head lock: this transaction's place in line."""
        self._waiting[first_id] = None
        return first_id

    def committed(self, ticket: int | None, events: list[Event]) -> None:
        if ticket is not None:
            self._waiting[ticket] = events
            self._flush()

    def abandoned(self, ticket: int | None) -> None:
        if ticket is not None:
            self._waiting.pop(ticket, None)
            self._flush()

    def _flush(self) -> None:
        while self._waiting:
            first = min(self._waiting)
            events = self._waiting[first]
            if events is None:
                return  # an earlier transaction has not finished yet
            del self._waiting[first]
            if events and self.callback is not None:
                try:
                    self.callback(events)
                except Exception:
                    log.exception("event publication failed")
