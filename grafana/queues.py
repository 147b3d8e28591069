"""The overview dashboard's "Queues" row: the ``remediator_queue_*`` series of the queue checks
of ``rq``, ``celery`` and ``rabbitmq`` targets (one series per target and queue)."""

from __future__ import annotations

from grafana_foundation_sdk.models import units

from grafana import generate as g


def queue_panels() -> list[g.PanelBuilder]:
    by = "sum by (target, queue)"
    queued, failed = g.sel('state="queued"'), g.sel('state="failed"')
    legend = "{{target}}/{{queue}}"
    return [
        g.timeseries(
            "Queued jobs by queue",
            "Jobs waiting in each queue (remediator_queue_jobs, state queued), as remediator's "
            "queue checks last read them, every self_healing.queue_interval.",
            units.Short,
            [g.Query(f"{by} (remediator_queue_jobs{queued})", legend)],
        ),
        g.timeseries(
            "Failed jobs by queue",
            "Failed jobs per queue (remediator_queue_jobs, state failed): RQ's failed job "
            "registry, a RabbitMQ queue's dead-letter queue. queue.requeue_failed and "
            "queue.clean_failed bring it down.",
            units.Short,
            [g.Query(f"{by} (remediator_queue_jobs{failed})", legend)],
        ),
        g.timeseries(
            "Consumers by queue",
            "Workers or consumers serving each queue (remediator_queue_consumers).",
            units.Short,
            [g.Query(f"{by} (remediator_queue_consumers{g.sel()})", legend)],
        ),
        g.timeseries(
            "Oldest queued job age by queue",
            "How long the oldest queued job of each queue has waited "
            "(remediator_queue_oldest_job_age_seconds; 0 when empty or unknown).",
            units.Seconds,
            [
                g.Query(
                    f"max by (target, queue) (remediator_queue_oldest_job_age_seconds{g.sel()})",
                    legend,
                )
            ],
        ),
        g.state_timeline(
            "Queue paused per queue",
            "remediator_queue_paused per queue: paused (1) while rq is suspended, no Celery "
            "worker consumes the queue or a RabbitMQ queue has no consumer.",
            g.Query(f"max by (target, queue) (remediator_queue_paused{g.sel()})", legend),
            mappings=g._value_map((0, "running", "green"), (1, "paused", "red")),
            thresholds=g._thresholds((None, "green"), (1, "red")),
        ),
    ]
