"""Which writes go first: the webhook's and ``/health``'s, ahead of the worker's and a storm's.

SQLite has one writer, whose jobs queue on the event loop (remediator/store/sqlite_writer.py).
During an alert storm the worker keeps dozens of completions queued and a large notification
is stored chunk after chunk, so a write queued behind them — a single real alert's, or the
health check's — would wait for all of them. A write made inside :func:`urgent` joins the
front of the queue instead: it waits for the batch being run (a 20 ms budget) and its commit,
never for the backlog. On PostgreSQL an urgent write skips the replica's batch queue
(remediator/store/postgres_batch.py): it runs alone, in its own transaction, on a quarter of the
pool's connections kept for urgent writes (remediator/store/postgres_conn.py); if it appends, it
waits for the chain's head at most as long as one batch holds it.

The lane is the caller's context (a :class:`~contextvars.ContextVar`, like a request's), so
the HTTP layer marks a request's writes without every store operation taking a parameter.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

URGENT: ContextVar[bool] = ContextVar("remediator_urgent_write", default=False)


@contextlib.contextmanager
def urgent() -> Iterator[None]:
    """Writes made in this block (this task's, and tasks it starts) go to the queue's front."""
    token = URGENT.set(True)
    try:
        yield
    finally:
        URGENT.reset(token)
