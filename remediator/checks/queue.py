"""Queue health checks for ``rq``, ``celery`` and ``rabbitmq`` targets.

A check reads every queue the target owns through its backend (remediator/tech/queues/): jobs
by state, consumers, the age of the oldest queued job, paused or not. The health monitor exports
them (``remediator_queue_*``) and records ``service:degraded`` / ``service:recovered`` when the
target's state changes. A target is healthy when its backend answers and none of its queues is
paused.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import ClassVar

from remediator.checks.base import CheckResult, HealthCheck
from remediator.clients import Clients
from remediator.config.targets import QueueTargetBase, Target
from remediator.metrics import Metrics
from remediator.tech.queues import BACKENDS, QueueStats
from remediator.tech.redis import redis_error

__all__ = ["CHECKS", "QueueCheck", "QueueCheckResult", "export_queues"]


@dataclass(frozen=True, slots=True)
class QueueCheckResult(CheckResult):
    """A check result with the queues' readings (empty when the backend did not answer)."""

    queues: tuple[QueueStats, ...] = ()


def _summary(stats: QueueStats) -> str:
    jobs = " ".join(f"{state}={count}" for state, count in stats.jobs.items())
    paused = " PAUSED" if stats.paused else ""
    return f"{stats.queue}: {jobs} consumers={stats.consumers}{paused}"


class QueueCheck:
    """The check of one queue target type (``target_type``, set by each subclass)."""

    target_type: ClassVar[str]

    async def check(self, target: Target, clients: Clients, *, timeout: float) -> CheckResult:
        start = time.monotonic()
        if not isinstance(target, QueueTargetBase) or target.type != self.target_type:
            return CheckResult(False, "wrong target type", time.monotonic() - start)
        backend = BACKENDS[self.target_type]
        try:
            stats = await asyncio.wait_for(
                backend.stats(target, clients, now=time.time()), timeout=timeout
            )
        except TimeoutError:
            return CheckResult(
                False, f"queues not read within {timeout}s", time.monotonic() - start
            )
        except Exception as exc:  # a check never raises
            urls = (getattr(target, "url", None), getattr(target, "broker_url", None))
            detail = f"queues not read: {redis_error(exc, *urls)}"
            return CheckResult(False, detail, time.monotonic() - start)
        paused = [s.queue for s in stats if s.paused]
        detail = "; ".join(_summary(s) for s in stats)
        return QueueCheckResult(not paused, detail, time.monotonic() - start, tuple(stats))


class RqQueueCheck(QueueCheck):
    target_type = "rq"


class CeleryQueueCheck(QueueCheck):
    target_type = "celery"


class RabbitmqQueueCheck(QueueCheck):
    target_type = "rabbitmq"


CHECKS: tuple[HealthCheck, ...] = (RqQueueCheck(), CeleryQueueCheck(), RabbitmqQueueCheck())


def export_queues(metrics: Metrics, target: str, result: CheckResult) -> None:
    """Set the ``remediator_queue_*`` series of a queue check's readings (none for another
    check, or when the backend did not answer: the last readings stay)."""
    if not isinstance(result, QueueCheckResult):
        return
    for stats in result.queues:
        for state, count in stats.jobs.items():
            metrics.queue_jobs.labels(target, stats.queue, state).set(count)
        metrics.queue_consumers.labels(target, stats.queue).set(stats.consumers)
        metrics.queue_oldest_job_age.labels(target, stats.queue).set(stats.oldest_age or 0.0)
        metrics.queue_paused.labels(target, stats.queue).set(1 if stats.paused else 0)
