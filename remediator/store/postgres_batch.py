"""PostgreSQL group commit: the writes of one replica queued together run in one transaction.

Every write of the replica outside the urgent lane (remediator/store/lanes.py: the webhook's and
``/health``'s run alone, on the pool's reserve) is a job queued here. The jobs queued in the
same turn of the event loop as the first one (:data:`WINDOW`), or while a batch is in flight,
form the next batch (at most :data:`MAX_JOBS`, and no more once it has run :data:`BUDGET`): one
transaction on one connection, each job inside its own SAVEPOINT (a job that fails rolls back
alone; its caller gets its error, its batch-mates commit), and one COMMIT. A job's future is
resolved only after that COMMIT returned.

The audit chain's head is taken once per batch, at its end: a job's
:class:`~remediator.store.ops.Append` is not linked when the job yields it; its events are kept
(the job is sent a list that is filled in before the COMMIT) and :func:`flush` links the events
of every job that succeeded, in queue order, under one ``audit_head`` row lock, just before the
COMMIT, as SQLite's writer moves its head once per batch. So the head lock is still the last
lock a transaction takes (no replica holds it while waiting for another row), and three
replicas' workers queue on it once per batch instead of once per decided alert. A job that
locks the head itself (a claim chaining arrivals in queue order, remediator/store/arrivals.py)
is the last of its batch.

A deadlock or serialisation failure rolls the whole batch back and runs it again (a few times,
as :meth:`~remediator.store.postgres_tx.PgBase._write` does), as does a BEGIN on a pooled
connection the server had closed. A connection lost (perhaps during COMMIT, when whether it
committed is unknown) fails every job of the batch with
:class:`~remediator.errors.StoreUnavailable`, as it fails a lone write. If the batch fails as a
whole for any other reason (an event the server refuses when the batch links it at the end),
each of its jobs is run again alone, in its own transaction: a bad job fails alone, whichever
step it breaks. Operations that read the events they appended before returning (intake) are
never batched (:data:`IMMEDIATE`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import psycopg
from psycopg import pq

from remediator.audit.events import Event
from remediator.errors import StoreUnavailable
from remediator.store.inbox import ingest
from remediator.store.ops import Op
from remediator.store.postgres_conn import brief
from remediator.store.postgres_tx import _RETRYABLE, PgBase, Retries, Tx

T = TypeVar("T")
# Seconds the first job of a batch waits for others: none but the loop's turn (1 ms measured
# no better, docs/performance.md section 9); the jobs queued while a batch runs join the next.
WINDOW = 0.0
MAX_JOBS = 64  # jobs in one batch at most
BUDGET = 0.02  # a batch stops taking jobs once it has run this long
# Operations whose job reads the events it appended before it returns: never batched.
IMMEDIATE: frozenset[Callable[..., Any]] = frozenset({ingest})
Make = Callable[[], Op[Any]]
Drive = Callable[[Op[Any], Tx], Awaitable[Any]]
Link = Callable[[Tx, list[Event]], Awaitable[list[Event]]]
Outcome = tuple[Any, BaseException | None]
INTRANS = pq.TransactionStatus.INTRANS


@dataclass(eq=False)
class _Job:
    make: Make
    future: asyncio.Future[Any]


class Batcher:
    """The group-committing queue of one PostgreSQL store's non-urgent writes."""

    def __init__(self, base: PgBase, *, drive: Drive, link: Link) -> None:
        self._base = base
        self._drive = drive  # runs an op in a transaction
        self._link = link  # appends events in a transaction now (under the head lock)
        self._jobs: list[_Job] = []
        self._task: asyncio.Task[None] | None = None

    async def run(self, make: Make) -> Any:
        """Run the operation ``make()`` makes in the next batch; its value, once committed."""
        loop = asyncio.get_running_loop()
        job = _Job(make, loop.create_future())
        self._jobs.append(job)
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain(), name="remediator-pg-batch")
        return await job.future

    async def _drain(self) -> None:
        batch: list[_Job] = []
        try:
            await asyncio.sleep(WINDOW)
            while self._jobs:
                batch = [j for j in self._jobs[:MAX_JOBS] if not j.future.done()]
                del self._jobs[:MAX_JOBS]
                if not batch:
                    continue
                outcomes = await self._commit(batch)
                self._jobs[:0] = batch[len(outcomes) :]  # the batch closed early: next one
                for job, (value, error) in zip(batch, outcomes, strict=False):
                    if job.future.done():  # its caller stopped waiting
                        continue
                    if error is not None:
                        job.future.set_exception(error)
                    else:
                        job.future.set_result(value)
                batch = []
        except BaseException as exc:
            failure = exc if isinstance(exc, Exception) else StoreUnavailable("the store closed")
            for job in [*batch, *self._jobs]:
                if not job.future.done():
                    job.future.set_exception(failure)
            self._jobs.clear()
            raise

    async def _commit(self, jobs: list[_Job]) -> list[Outcome]:
        """Run ``jobs`` (or their first ones) in one transaction; each one's value or error."""
        base = self._base
        retries = Retries(base.pool.size)
        while True:
            tx: Tx | None = None
            tried: list[_Job] = []
            try:
                async with base.pool.connection() as conn, conn.transaction():
                    tx = Tx(conn, base.recording, base._publisher)
                    tx.deferred = []
                    outcomes = await self._jobs_in(tx, jobs, tried)
                    await self.flush(tx)
            except BaseException as exc:
                base._publisher.abandoned(tx.ticket if tx else None)
                if await retries.again(exc, began=tx is not None):
                    continue
                if not isinstance(exc, Exception):
                    raise
                if tx is None or isinstance(exc, (psycopg.OperationalError, StoreUnavailable)):
                    # no connection, or lost (perhaps at COMMIT: whether it committed is unknown)
                    failure = exc
                    if isinstance(exc, psycopg.Error):
                        failure = StoreUnavailable(f"the store could not commit: {brief(exc)}")
                    return [(None, failure)] * (len(jobs) if tx is None else len(tried))
                return await self._alone(tried)
            base._publisher.committed(tx.ticket, tx.appended)
            return outcomes

    async def _jobs_in(self, tx: Tx, jobs: list[_Job], tried: list[_Job]) -> list[Outcome]:
        """Each job in its savepoint, until the batch closes (the head taken, the budget spent);
        ``tried`` gets the jobs run."""
        conn, deadline = tx.conn, time.perf_counter() + BUDGET
        outcomes: list[Outcome] = []
        for job in jobs:
            if outcomes and (tx.head_taken or time.perf_counter() > deadline):
                break
            mark = len(tx.deferred or [])
            tried.append(job)
            try:
                async with conn.transaction():  # SAVEPOINT ... RELEASE, or ROLLBACK TO
                    value = await self._drive(job.make(), tx)
            except Exception as exc:
                status = conn.info.transaction_status
                if isinstance(exc, _RETRYABLE) or conn.broken or status != INTRANS:
                    raise  # the batch as a whole
                del (tx.deferred or [])[mark:]
                failure: BaseException = exc
                if isinstance(exc, psycopg.Error):
                    failure = StoreUnavailable(f"the store could not commit: {brief(exc)}")
                outcomes.append((None, failure))
            else:
                outcomes.append((value, None))
        return outcomes

    async def flush(self, tx: Tx) -> None:
        """Link the events the batch's jobs appended, in their order, under one head lock; each
        job's list (sent to it at its Append) gets its linked events."""
        pending, tx.deferred = tx.deferred or [], None
        events: list[Event] = [event for queued, _ in pending for event in queued]
        if not events:
            return
        linked = await self._link(tx, events)
        start = 0
        for queued, sent in pending:
            sent[:] = linked[start : start + len(queued)]
            start += len(queued)

    async def _alone(self, jobs: list[_Job]) -> list[Outcome]:
        """Each job in its own transaction (the batch failed as a whole)."""
        outcomes: list[Outcome] = []
        for job in jobs:
            try:
                value = await self._base._write(partial(self._once, job.make))
            except Exception as exc:
                outcomes.append((None, exc))
            else:
                outcomes.append((value, None))
        return outcomes

    async def _once(self, make: Make, tx: Tx) -> Any:
        return await self._drive(make(), tx)


async def stop(batcher: Batcher | None) -> None:
    """Let the batch in flight finish (the store is closing)."""
    task = batcher._task if batcher else None
    if task is not None and not task.done():
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(task), timeout=5.0)
