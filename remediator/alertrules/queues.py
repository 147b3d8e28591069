"""The alerts on queues: the ``remediator_queue_*`` series remediator's queue checks export
for ``rq``, ``celery`` and ``rabbitmq`` targets (one series per target and queue)."""

from __future__ import annotations

from typing import Any

from remediator.alertrules.rulebook import RuleBook


def queue_rules(book: RuleBook) -> list[dict[str, Any]]:
    return [
        book.alert(
            "QueueBacklogGrowing",
            """
            remediator_queue_jobs{%(job)s, state="queued"} > %(threshold)s
              and
            delta(remediator_queue_jobs{%(job)s, state="queued"}[15m]) > 0
            """,
            summary="A queue's backlog is growing.",
            description="Queue {{ $labels.queue }} of {{ $labels.target }} holds {{ $value }}"
            " queued jobs (threshold %(threshold)s) and has grown over the last 15m, for %(for)s.",
        ),
        book.alert(
            "QueueFailedJobsRising",
            'delta(remediator_queue_jobs{%(job)s, state="failed"}[15m]) > %(threshold)s',
            summary="Failed jobs are rising on a queue.",
            description="{{ $value | humanize }} more jobs of queue {{ $labels.queue }} of {{ $labels.target }}"
            " failed over the last 15m (threshold %(threshold)s), for %(for)s.",
        ),
        book.alert(
            "QueueNoConsumers",
            """
            remediator_queue_consumers{%(job)s} == 0
              and ignoring (state)
            remediator_queue_jobs{%(job)s, state="queued"} > 0
            """,
            summary="A queue with waiting jobs has no consumer.",
            description="Queue {{ $labels.queue }} of {{ $labels.target }} has waiting jobs and no"
            " worker or consumer for %(for)s.",
        ),
        book.alert(
            "QueuePaused",
            "remediator_queue_paused{%(job)s} == 1",
            summary="A queue is paused.",
            description="Queue {{ $labels.queue }} of {{ $labels.target }} has been paused for"
            " %(for)s (rq suspended, no Celery worker consuming it, or no RabbitMQ consumer).",
        ),
        book.alert(
            "QueueOldestJobTooOld",
            "remediator_queue_oldest_job_age_seconds{%(job)s} > %(threshold)s",
            summary="A queue's oldest job has waited too long.",
            description="The oldest job of queue {{ $labels.queue }} of {{ $labels.target }} has"
            " waited {{ $value | humanizeDuration }} (threshold %(threshold)ss), for %(for)s.",
        ),
    ]
