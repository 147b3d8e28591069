"""Every Prometheus metric remediator exports, written out in full.

One grep for a metric name finds the code that sets it, the rules in ``rules/`` that alert on it
and the dashboards in ``grafana/`` that plot it. Labels are bounded: never a fingerprint, a
container id or free text.

Metrics live in a :class:`Metrics` object built per application (no module-level globals), so
tests can build several apps in one process without duplicate-registration errors.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from remediator import __version__

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
ACTION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# A finished remediation's state -> the outcome label of remediator_remediations_total.
REMEDIATION_OUTCOMES = {
    "succeeded": "success",
    "failed": "failure",
    "dry_run": "dry_run",
    "interrupted": "interrupted",
}
RECOVERY_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0)


class Metrics:
    """The metric families of one remediator instance, on their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.build_info = Info("remediator_build", "remediator version.", registry=r)
        self.build_info.info({"version": __version__})

        # Intake (issue 2).
        self.alerts_received = Counter(
            "remediator_alerts_received_total",
            "Alerts received from Alertmanager, by the alert's own status.",
            ["status"],
            registry=r,
        )
        self.alerts_duplicate = Counter(
            "remediator_alerts_duplicate_total",
            "Alerts received again in a state already stored (same fingerprint, status, episode).",
            registry=r,
        )
        self.webhook_requests = Counter(
            "remediator_webhook_requests_total",
            "Alertmanager webhook requests, by HTTP status code.",
            ["code"],
            registry=r,
        )
        self.webhook_duration = Histogram(
            "remediator_webhook_request_duration_seconds",
            "Time to accept an Alertmanager webhook request, durable commit included.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inbox_pending = Gauge(
            "remediator_inbox_pending",
            "Stored alerts not yet processed by the worker.",
            registry=r,
        )
        self.store_write_failures = Counter(
            "remediator_store_write_failures_total",
            "Store transactions that failed to commit (intake answered 503).",
            registry=r,
        )

        # Targets and health (issue 3).
        self.target_up = Gauge(
            "remediator_target_up",
            "1 when the target's last health check passed, else 0.",
            ["target"],
            registry=r,
        )
        # Queues of rq, celery and rabbitmq targets (issue 14), set by their health checks.
        self.queue_jobs = Gauge(
            "remediator_queue_jobs",
            "Jobs in a queue by state (queued, started, failed, scheduled, deferred), as last checked.",
            ["target", "queue", "state"],
            registry=r,
        )
        self.queue_consumers = Gauge(
            "remediator_queue_consumers",
            "Workers or consumers serving a queue, as last checked.",
            ["target", "queue"],
            registry=r,
        )
        self.queue_oldest_job_age = Gauge(
            "remediator_queue_oldest_job_age_seconds",
            "Age of the oldest queued job, as last checked (0 when the queue is empty).",
            ["target", "queue"],
            registry=r,
        )
        self.queue_paused = Gauge(
            "remediator_queue_paused",
            "1 when a queue is paused (rq suspended, no Celery worker consuming it, no RabbitMQ consumer), else 0.",
            ["target", "queue"],
            registry=r,
        )
        self.target_check_duration = Histogram(
            "remediator_target_check_duration_seconds",
            "Duration of target health checks.",
            ["target"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

        # Decisions and actions (issue 3).
        self.remediations = Counter(
            "remediator_remediations_total",
            "Remediations finished, once each however many attempts it took, by playbook and "
            "outcome (success|failure|dry_run|interrupted).",
            ["playbook", "outcome"],
            registry=r,
        )
        self.action_attempts = Counter(
            "remediator_action_attempts_total",
            "Playbook steps run, once per attempt (a retried remediation counts every attempt's "
            "steps), by playbook, action and outcome (success|failure|dry_run|already_done).",
            ["playbook", "action", "outcome"],
            registry=r,
        )
        self.action_duration = Histogram(
            "remediator_action_duration_seconds",
            "Duration of recovery actions.",
            ["action"],
            buckets=ACTION_BUCKETS,
            registry=r,
        )
        self.guard_blocks = Counter(
            "remediator_guard_blocks_total",
            "Remediations stopped by a safety guard, by reason.",
            ["reason"],
            registry=r,
        )
        self.circuit_state = Gauge(
            "remediator_circuit_breaker_state",
            "Circuit breaker state per target: 0 closed, 1 half-open, 2 open.",
            ["target"],
            registry=r,
        )
        self.circuit_trips = Counter(
            "remediator_circuit_breaker_trips_total",
            "Times a target's circuit breaker opened.",
            ["target"],
            registry=r,
        )
        self.paused = Gauge(
            "remediator_paused",
            "1 while the global kill switch stops all actions.",
            registry=r,
        )
        self.quarantined = Gauge(
            "remediator_quarantined",
            "1 while the target is quarantined (no automatic actions until lifted), else 0.",
            ["target"],
            registry=r,
        )

        # Notifications, escalation, audit, recovery time (issue 4).
        self.notifications = Counter(
            "remediator_notifications_total",
            "Notification deliveries, by channel and outcome (sent|retry|dead).",
            ["channel", "outcome"],
            registry=r,
        )
        self.outbox_pending = Gauge(
            "remediator_outbox_pending",
            "Notifications stored and not yet delivered.",
            registry=r,
        )
        self.escalations = Counter(
            "remediator_escalations_total",
            "Escalations sent, by reason.",
            ["reason"],
            registry=r,
        )
        self.audit_write_failures = Counter(
            "remediator_audit_write_failures_total",
            "Audit events that could not be written.",
            registry=r,
        )
        self.time_to_recovery = Histogram(
            "remediator_time_to_recovery_seconds",
            "Time from an alert's startsAt to its recovery, by playbook and category.",
            ["playbook", "category"],
            buckets=RECOVERY_BUCKETS,
            registry=r,
        )

        self._initialise()

    def _initialise(self) -> None:
        """Export the bounded label sets at zero, so that ``increase()`` sees their first event
        (a labelled series otherwise appears only at its first increment)."""
        for reason in (
            "paused",
            "quarantined",
            "blast_radius",
            "cooldown",
            "max_per_window",
            "circuit_open",
            "target_not_registered",
        ):
            self.guard_blocks.labels(reason)
        for reason in (
            "remediation_failed",
            "circuit_open",
            "max_per_window",
            "blast_radius",
            "unknown_pattern",
            "target_not_registered",
            "quarantined",
            "notification_dead",
            "no_recovery",
            "playbook",
        ):
            self.escalations.labels(reason)
        # The webhook's labelled children, looked up once: ``labels()`` is slow per request.
        self.alerts_received_by_status: dict[str, Counter] = {
            status: self.alerts_received.labels(status) for status in ("firing", "resolved")
        }
        self.webhook_requests_by_code: dict[int, Counter] = {
            code: self.webhook_requests.labels(str(code))
            for code in (200, 400, 401, 403, 413, 422, 500, 503)
        }
        self.paused.set(0)

    def remediation_finished(self, playbook: str, state: str) -> None:
        """Count one finished remediation by its final state (see REMEDIATION_OUTCOMES)."""
        self.remediations.labels(playbook, REMEDIATION_OUTCOMES[state]).inc()

    def prepare(
        self, *, targets: list[str], plans: dict[str, list[str]], categories: list[str]
    ) -> None:
        """Export a configuration's series at zero: each target's breaker (closed) and trips,
        each playbook's remediations and step actions by outcome, action durations, recovery
        times."""
        for target in targets:
            self.circuit_trips.labels(target)
            self.quarantined.labels(target)
            self.target_up.labels(target)
        for playbook, actions in plans.items():
            for outcome in ("success", "failure", "dry_run"):
                self.remediations.labels(playbook, outcome)
            for action in actions:
                self.action_duration.labels(action)
                for outcome in ("success", "failure", "dry_run"):
                    self.action_attempts.labels(playbook, action, outcome)
            for category in categories:
                self.time_to_recovery.labels(playbook, category)

    def expect_channels(self, channels: tuple[str, ...]) -> None:
        """Export every notification series of ``channels`` at zero from start-up."""
        for channel in channels:
            for outcome in ("sent", "retry", "dead"):
                self.notifications.labels(channel, outcome)
