"""The queue backend interface shared by the ``queue.*`` actions and the queue health checks.

A backend (RQ, Celery, RabbitMQ: one module each) reads the health of the queues a registered
target owns (:class:`QueueStats`) and performs the recovery operations it supports, each on one
queue named in the target's configuration. Every operation reports what it did as a
:class:`QueueOutcome` (counts and job ids up to :data:`MAX_REPORTED_IDS`). Backends raise their
library's errors; the action and check around them turn those into secret-free results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from remediator.clients import Clients
from remediator.config.targets import RabbitmqTarget, RqTarget

MAX_REPORTED_IDS = 20
# The job states a backend may count (remediator_queue_jobs{state}); "deferred" only for RQ.
STATES = ("queued", "started", "failed", "scheduled", "deferred")
# The recovery operations, by their action names.
OPERATIONS = (
    "queue.resume",
    "queue.requeue_failed",
    "queue.clean_failed",
    "queue.drain_delayed",
    "queue.purge",
    "queue.restart_workers",
)


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue's health at one moment."""

    queue: str
    jobs: dict[str, int]  # state -> count, only the states the backend has
    consumers: int
    paused: bool
    oldest_age: float | None = None  # seconds; None when the queue is empty or it is unknown


@dataclass(frozen=True, slots=True)
class QueueOutcome:
    """What one operation did: ``count`` jobs/messages (``ids``: the first of them)."""

    count: int
    detail: str
    ids: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def data(self) -> dict[str, Any]:
        return {"count": self.count, "ids": list(self.ids[:MAX_REPORTED_IDS]), **self.extra}


@dataclass(frozen=True, slots=True)
class Selection:
    """The parameters of an operation, from the step's configuration (never from alert text)."""

    queue: str
    limit: int = 1000
    exception: str | None = None  # requeue_failed: only jobs failed with this exception class
    older_than: float = 0.0  # clean_failed: only jobs failed longer ago than this (seconds)
    horizon: float = 0.0  # drain_delayed: jobs due within this many seconds from now


class QueueBackend(Protocol):
    """One queue technology. ``supports`` names the operations it implements (the others are
    refused by ``check-config``); ``meaning`` says what each means for it (docs/playbooks.md)."""

    target_type: ClassVar[str]
    supports: ClassVar[dict[str, str]]

    async def stats(self, target: Any, clients: Clients, *, now: float) -> list[QueueStats]: ...

    async def operate(
        self, operation: str, target: Any, selection: Selection, clients: Clients, *, now: float
    ) -> QueueOutcome: ...


class Refused(Exception):
    """An operation the target's configuration does not allow (e.g. a purge without
    ``allow_purge``): nothing was touched."""


def owned(target: Any, queue: str) -> str:
    """``queue`` if the target owns it; else :class:`Refused` (the allow-list of queue names)."""
    if queue not in target.queues:
        raise Refused(f"queue {queue!r} is not one of {target.name}'s queues")
    return queue


def ids(values: list[str]) -> tuple[str, ...]:
    return tuple(values[:MAX_REPORTED_IDS])


async def restart_container(
    target: RqTarget | RabbitmqTarget, clients: Clients, *, start: bool = False
) -> QueueOutcome:
    """Restart (``start``: start, if stopped) the container the target's consumers run in, on
    its engine; refused when the target names none."""
    import asyncio

    name = target.workers_container
    if not name:
        raise Refused(f"{target.name} names no workers_container")

    def call() -> str:
        container = clients.docker(target.docker_host).containers.get(name)
        if start:
            container.reload()
            if container.status == "running":
                return "already running"
            container.start()
            return "started"
        container.restart(timeout=10)
        return "restarted"

    done = await asyncio.to_thread(call)
    return QueueOutcome(1, f"{done} the workers' container {name!r} of {target.name}", (name,))
