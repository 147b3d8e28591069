"""Queue backends (RQ, Celery, RabbitMQ), one module each, registered by target type.

The ``queue.*`` actions (remediator/actions/queue.py) and the queue health checks
(remediator/checks/queue.py) dispatch on the target's type through :data:`BACKENDS`; which
action acts on which type is derived from each backend's ``supports``.
"""

from __future__ import annotations

from remediator.tech.queues.base import (
    OPERATIONS,
    QueueBackend,
    QueueOutcome,
    QueueStats,
    Refused,
    Selection,
)
from remediator.tech.queues.celery import CeleryBackend
from remediator.tech.queues.rabbitmq import RabbitmqBackend
from remediator.tech.queues.rq import RqBackend

BACKENDS: dict[str, QueueBackend] = {
    backend.target_type: backend for backend in (RqBackend(), CeleryBackend(), RabbitmqBackend())
}


def supporting(operation: str) -> frozenset[str]:
    """The target types whose backend implements ``operation``."""
    return frozenset(t for t, backend in BACKENDS.items() if operation in backend.supports)


__all__ = [
    "BACKENDS",
    "OPERATIONS",
    "QueueBackend",
    "QueueOutcome",
    "QueueStats",
    "Refused",
    "Selection",
    "supporting",
]
