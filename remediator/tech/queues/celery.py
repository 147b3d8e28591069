"""Celery queues on a Redis broker (library ``celery``), through its control/inspect API.

"Paused" is a queue no live worker consumes while workers are alive (its consumer was cancelled,
``celery control cancel_consumer``): ``queue.resume`` tells every live worker to consume it
again (``add_consumer``). Queued tasks are the broker's list for the queue; started and
scheduled (ETA/countdown) tasks are those the workers report (``inspect active`` /
``inspect scheduled``). Celery keeps no failed tasks without a result backend, and its scheduled
tasks live in the workers' memory: requeue/clean of failed tasks and draining delayed ones are
not supported. Celery is synchronous: each call runs in a thread with an app of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, TypeVar

from celery import Celery

from remediator.clients import Clients
from remediator.config.targets import CeleryTarget
from remediator.tech.queues.base import QueueOutcome, QueueStats, Refused, Selection, ids, owned

__all__ = ["CeleryBackend"]

T = TypeVar("T")


def _app(target: CeleryTarget) -> Celery:
    app = Celery(f"remediator-{target.name}", broker=target.broker_url, set_as_current=False)
    app.conf.broker_connection_retry_on_startup = False
    app.conf.broker_connection_max_retries = 1
    return app


def _routing(task: dict[str, Any]) -> str:
    info = task.get("delivery_info") or {}
    return str(info.get("routing_key") or info.get("queue") or "")


class CeleryBackend:
    target_type: ClassVar[str] = "celery"
    supports: ClassVar[dict[str, str]] = {
        "queue.resume": "every live worker told to consume the queue again (`add_consumer`)",
        "queue.purge": "the queue's waiting tasks deleted from the broker",
        "queue.restart_workers": "a pool restart broadcast (`pool_restart`; workers need `worker_pool_restarts`)",
    }

    async def _run(self, target: CeleryTarget, call: Callable[[Celery], T]) -> T:
        def run() -> T:
            app = _app(target)
            try:
                return call(app)
            finally:
                app.close()

        return await asyncio.to_thread(run)

    async def stats(
        self, target: CeleryTarget, clients: Clients, *, now: float
    ) -> list[QueueStats]:
        timeout = target.reply_timeout

        def read(app: Celery) -> list[QueueStats]:
            # The three broadcasts each wait the whole reply timeout: ask them at once.
            with ThreadPoolExecutor(3) as pool:
                asked = [
                    pool.submit(getattr(app.control.inspect(timeout=timeout), kind))
                    for kind in ("active_queues", "active", "scheduled")
                ]
                queues, active, scheduled = (future.result() or {} for future in asked)
            with app.connection_for_read() as conn:
                client = conn.default_channel.client
                lengths = {name: int(client.llen(name)) for name in target.queues}
            found = []
            for name in target.queues:
                consumers = sum(
                    1 for qs in queues.values() if any(q.get("name") == name for q in qs)
                )
                started = sum(1 for ts in active.values() for t in ts if _routing(t) == name)
                delayed = sum(
                    1
                    for ts in scheduled.values()
                    for t in ts
                    if _routing(t.get("request") or {}) == name
                )
                jobs = {"queued": lengths[name], "started": started, "scheduled": delayed}
                paused = bool(queues) and consumers == 0
                found.append(QueueStats(name, jobs, consumers, paused))
            return found

        return await self._run(target, read)

    async def operate(
        self,
        operation: str,
        target: CeleryTarget,
        selection: Selection,
        clients: Clients,
        *,
        now: float,
    ) -> QueueOutcome:
        name = owned(target, selection.queue)
        timeout = target.reply_timeout
        if operation == "queue.purge" and not target.allow_purge:
            raise Refused(f"queue.purge refused: {target.name} does not set allow_purge: true")

        def resume(app: Celery) -> QueueOutcome:
            queues = app.control.inspect(timeout=timeout).active_queues() or {}
            idle = sorted(
                worker
                for worker, qs in queues.items()
                if not any(q.get("name") == name for q in qs)
            )
            if not idle:
                return QueueOutcome(0, f"every live worker already consumes {name}")
            replies = app.control.add_consumer(name, destination=idle, reply=True, timeout=timeout)
            told = sorted(w for reply in replies or [] for w, r in reply.items() if "ok" in r)
            detail = f"{len(told)} of {len(idle)} worker(s) consume {name} again"
            return QueueOutcome(len(told), detail, ids(told))

        def purge(app: Celery) -> QueueOutcome:
            with app.connection_for_write() as conn:
                count = int(conn.default_channel.queue_purge(name) or 0)
            return QueueOutcome(count, f"purged {count} waiting task(s) from {name}")

        def restart(app: Celery) -> QueueOutcome:
            replies = app.control.pool_restart(reply=True, timeout=timeout) or []
            done = sorted(w for reply in replies for w, r in reply.items() if "ok" in r)
            failed = sorted(w for reply in replies for w, r in reply.items() if "ok" not in r)
            detail = f"pool restarted on {len(done)} worker(s)"
            if failed:
                detail += f", refused by {len(failed)} (is worker_pool_restarts set?)"
            return QueueOutcome(len(done), detail, ids(done), {"refused": len(failed)})

        ops = {"queue.resume": resume, "queue.purge": purge, "queue.restart_workers": restart}
        if operation not in ops:
            raise Refused(f"{operation} is not supported for celery targets")
        return await self._run(target, ops[operation])
