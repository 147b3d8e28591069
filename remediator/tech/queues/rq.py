"""RQ queues on Redis (library ``rq``): health and recovery of the queues an ``rq`` target owns.

"Paused" is RQ's suspension (``rq suspend``): it holds every worker on the Redis database, so a
suspended target reports all its queues paused and ``queue.resume`` lifts it (``rq resume``).
Failed jobs are the queue's FailedJobRegistry; scheduled jobs its ScheduledJobRegistry. RQ is a
synchronous library: each call runs in a thread, on its own connection, closed afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import ClassVar, TypeVar

import redis
from rq import Queue, Worker
from rq.job import Job
from rq.suspension import is_suspended, resume

from remediator.clients import Clients
from remediator.config.targets import RqTarget
from remediator.tech.queues.base import (
    QueueOutcome,
    QueueStats,
    Refused,
    Selection,
    ids,
    owned,
    restart_container,
)

__all__ = ["RqBackend", "exception_class"]

T = TypeVar("T")


def exception_class(exc_info: str | None) -> str:
    """The exception class a failed job's traceback ends with (``ValueError``), or ''."""
    for line in reversed((exc_info or "").strip().splitlines()):
        if line and not line[0].isspace():
            return line.split(":", 1)[0].strip().rsplit(".", 1)[-1]
    return ""


def _timestamp(value: datetime | None) -> float | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


class RqBackend:
    target_type: ClassVar[str] = "rq"
    supports: ClassVar[dict[str, str]] = {
        "queue.resume": "`rq resume`: lifts the suspension (`rq suspend`) of every worker on the Redis database",
        "queue.requeue_failed": "failed jobs (optionally only those whose traceback ends in `exception`) back on their queue",
        "queue.clean_failed": "failed jobs that ended longer ago than `older_than` deleted",
        "queue.drain_delayed": "scheduled jobs due within `horizon` enqueued now",
        "queue.purge": "the queue emptied (`Queue.empty`)",
        "queue.restart_workers": "the container of `workers_container` restarted (or the process of `workers_process`, remediator/actions/queue.py)",
    }

    async def _run(self, target: RqTarget, call: Callable[[redis.Redis], T]) -> T:
        def run() -> T:
            conn = redis.Redis.from_url(target.url, socket_connect_timeout=5, socket_timeout=10)
            try:
                return call(conn)
            finally:
                conn.close()

        return await asyncio.to_thread(run)

    async def stats(self, target: RqTarget, clients: Clients, *, now: float) -> list[QueueStats]:
        def read(conn: redis.Redis) -> list[QueueStats]:
            paused = bool(is_suspended(conn))
            found = []
            for name in target.queues:
                queue = Queue(name, connection=conn)
                jobs = {
                    "queued": queue.count,
                    "started": queue.started_job_registry.count,
                    "failed": queue.failed_job_registry.count,
                    "scheduled": queue.scheduled_job_registry.count,
                    "deferred": queue.deferred_job_registry.count,
                }
                oldest = None
                head = queue.get_job_ids(0, 1)
                if head:
                    job = Job.fetch(head[0], connection=conn)
                    at = _timestamp(job.enqueued_at)
                    oldest = None if at is None else max(now - at, 0.0)
                consumers = Worker.count(connection=conn, queue=queue)
                found.append(QueueStats(name, jobs, consumers, paused, oldest))
            return found

        return await self._run(target, read)

    async def operate(
        self,
        operation: str,
        target: RqTarget,
        selection: Selection,
        clients: Clients,
        *,
        now: float,
    ) -> QueueOutcome:
        name = owned(target, selection.queue)
        if operation == "queue.restart_workers":
            return await restart_container(target, clients)
        if operation == "queue.purge" and not target.allow_purge:
            raise Refused(f"queue.purge refused: {target.name} does not set allow_purge: true")
        ops: dict[str, Callable[[redis.Redis, str, Selection, float], QueueOutcome]] = {
            "queue.resume": _resume,
            "queue.requeue_failed": _requeue_failed,
            "queue.clean_failed": _clean_failed,
            "queue.drain_delayed": _drain_delayed,
            "queue.purge": _purge,
        }
        if operation not in ops:
            raise Refused(f"{operation} is not supported for rq targets")
        op = ops[operation]
        return await self._run(target, lambda conn: op(conn, name, selection, now))


def _resume(conn: redis.Redis, name: str, sel: Selection, now: float) -> QueueOutcome:
    was = bool(is_suspended(conn))
    resume(conn)
    if not was:
        return QueueOutcome(0, "RQ workers were not suspended")
    return QueueOutcome(1, "RQ workers resumed (suspension lifted)", extra={"was_suspended": True})


def _exception(job: Job) -> str:
    """The exception class the job last failed with (its latest result's traceback)."""
    result = job.latest_result()
    return exception_class(result.exc_string if result is not None else None)


def _failed_jobs(conn: redis.Redis, queue: Queue) -> list[Job]:
    registry = queue.failed_job_registry
    job_ids = registry.get_job_ids(cleanup=False)
    return [job for job in Job.fetch_many(job_ids, connection=conn) if job is not None]


def _requeue_failed(conn: redis.Redis, name: str, sel: Selection, now: float) -> QueueOutcome:
    queue = Queue(name, connection=conn)
    registry = queue.failed_job_registry
    done: list[str] = []
    skipped = 0
    for job in _failed_jobs(conn, queue):
        if len(done) >= sel.limit:
            break
        if sel.exception is not None and _exception(job) != sel.exception:
            skipped += 1
            continue
        registry.requeue(job)
        done.append(job.id)
    which = f" failed with {sel.exception}" if sel.exception else ""
    detail = f"requeued {len(done)} failed job(s){which} on {name}"
    return QueueOutcome(len(done), detail, ids(done), {"skipped": skipped})


def _clean_failed(conn: redis.Redis, name: str, sel: Selection, now: float) -> QueueOutcome:
    queue = Queue(name, connection=conn)
    registry = queue.failed_job_registry
    done: list[str] = []
    kept = 0
    for job in _failed_jobs(conn, queue):
        if len(done) >= sel.limit:
            break
        ended = _timestamp(job.ended_at)
        if ended is None or now - ended <= sel.older_than:
            kept += 1
            continue
        registry.remove(job, delete_job=True)
        done.append(job.id)
    detail = f"deleted {len(done)} failed job(s) older than {sel.older_than:g}s on {name}"
    return QueueOutcome(len(done), detail, ids(done), {"kept": kept})


def _drain_delayed(conn: redis.Redis, name: str, sel: Selection, now: float) -> QueueOutcome:
    queue = Queue(name, connection=conn)
    registry = queue.scheduled_job_registry
    due = registry.get_jobs_to_schedule(int(now + sel.horizon), chunk_size=sel.limit)
    done: list[str] = []
    for job_id in due:
        if not conn.zrem(registry.key, job_id):  # the scheduler (or a replica) took it first
            continue
        job = Job.fetch(job_id, connection=conn)
        queue._enqueue_job(job)
        done.append(job_id)
    detail = f"enqueued {len(done)} scheduled job(s) due within {sel.horizon:g}s on {name}"
    return QueueOutcome(len(done), detail, ids(done))


def _purge(conn: redis.Redis, name: str, sel: Selection, now: float) -> QueueOutcome:
    queue = Queue(name, connection=conn)
    count = queue.count
    queue.empty()  # type: ignore[no-untyped-call]
    return QueueOutcome(count, f"purged {count} queued job(s) from {name}")
