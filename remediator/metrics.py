"""Every Prometheus metric remediator exports, written out in full.

One grep for a metric name finds the code that sets it, the rules in ``rules/`` that alert on it
and the dashboards in ``grafana/`` that plot it. Labels are bounded: never a fingerprint, a
container id or free text.

Metrics live in a :class:`Metrics` object built per application (no module-level globals), so
tests can build several apps in one process without duplicate-registration errors.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    ProcessCollector,
)

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
# The error codes a webhook request can be refused with (4xx): remediator_webhook_rejected_total.
WEBHOOK_REJECTIONS = (
    "MALFORMED_JSON",
    "VALIDATION_FAILED",
    "UNAUTHORIZED",
    "FORBIDDEN",
    "PAYLOAD_TOO_LARGE",
    "RATE_LIMITED",
)
RECOVERY_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0)


class Metrics:
    """The metric families of one remediator instance, on their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.build_info = Info("remediator_build", "remediator version.", registry=r)
        self.build_info.info({"version": __version__})
        # The client library's default collectors (process_* and python_gc_*), on this registry:
        # memory, file descriptors, CPU and collections of the serving process.
        ProcessCollector(registry=r)
        GCCollector(registry=r)

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
        # A refused webhook (4xx) is never retried by Alertmanager: its alerts are lost.
        self.webhook_rejected = Counter(
            "remediator_webhook_rejected_total",
            "Alertmanager webhook requests refused with a 4xx (never retried by Alertmanager: "
            "their alerts are lost), by the error code answered.",
            ["reason"],
            registry=r,
        )
        self.store_write_failures = Counter(
            "remediator_store_write_failures_total",
            "Store transactions that failed to commit (intake answered 503).",
            registry=r,
        )

        # Configuration reloads (SIGHUP, POST /-/reload) and reconciliation (issue 20).
        self.config_reload_successful = Gauge(
            "remediator_config_last_reload_successful",
            "1 when the last reload of the configuration file succeeded (or none was tried), "
            "0 when it failed and the previous configuration still runs.",
            registry=r,
        )
        self.config_reload_timestamp = Gauge(
            "remediator_config_last_reload_success_timestamp_seconds",
            "When the configuration file was last loaded successfully (start-up or reload).",
            registry=r,
        )
        self.reconcile_rounds = Counter(
            "remediator_reconcile_rounds_total",
            "Rounds of reconciliation with Alertmanager, by outcome (success|failure|standby: "
            "another replica holds the reconcile lease).",
            ["outcome"],
            registry=r,
        )

        # Authentication (issue 18): reason is missing (no credentials where they are needed)
        # or invalid (credentials that match no token). Never the client address as a label.
        self.auth_failures = Counter(
            "remediator_auth_failures_total",
            "Failed authentications, by reason (missing, invalid).",
            ["reason"],
            registry=r,
        )
        self.auth_failures_missing = self.auth_failures.labels("missing")
        self.auth_failures_invalid = self.auth_failures.labels("invalid")
        self.auth_throttled = Counter(
            "remediator_auth_throttled_total",
            "Requests answered 429 because their address failed authentication too often.",
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
        self.approvals = Counter(
            "remediator_approvals_total",
            "Approval requests decided, by playbook and outcome (approved, denied, expired, "
            "cancelled, skipped).",
            ["playbook", "outcome"],
            registry=r,
        )
        self.approval_wait = Histogram(
            "remediator_approval_wait_seconds",
            "Time from an approval request to its decision.",
            buckets=(10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200),
            registry=r,
        )
        # Alertmanager silences while remediating (remediator/engine/silences.py).
        self.silences_active = Gauge(
            "remediator_silences_active",
            "Alertmanager silences remediator made and has not expired yet.",
            registry=r,
        )
        self.silence_requests = Counter(
            "remediator_silence_requests_total",
            "Requests to Alertmanager's silences API, by operation (create, expire, list) and "
            "outcome (success, failure).",
            ["operation", "outcome"],
            registry=r,
        )
        for operation in ("create", "expire", "list"):
            for outcome in ("success", "failure"):
                self.silence_requests.labels(operation, outcome)
        self.audit_write_failures = Counter(
            "remediator_audit_write_failures_total",
            "Audit events that could not be written.",
            registry=r,
        )
        # Signed audit checkpoints (issue 18): held outside the store by whoever scrapes them.
        self.audit_checkpoint_sequence = Gauge(
            "remediator_audit_checkpoint_sequence",
            "Id of the audit record (the chain's head) that the last signed checkpoint covers.",
            registry=r,
        )
        self.audit_checkpoint_timestamp = Gauge(
            "remediator_audit_checkpoint_timestamp_seconds",
            "When the last signed audit checkpoint was signed (Unix time).",
            registry=r,
        )
        self.audit_checkpoint_info = Info(
            "remediator_audit_checkpoint",
            "The last signed audit checkpoint: its record id and the first 16 hex digits of "
            "the head's hash (one series, replaced on each checkpoint).",
            registry=r,
        )
        # The audit chain checked every audit.verify_interval (remediator/engine/auditor.py).
        self.audit_chain_ok = Gauge(
            "remediator_audit_chain_ok",
            "1 if the audit chain verified at the last check, 0 if it is broken.",
            registry=r,
        )
        self.audit_chain_last_check = Gauge(
            "remediator_audit_chain_last_check_timestamp_seconds",
            "When the audit chain was last checked (Unix time).",
            registry=r,
        )
        # Growth (issue 18): retention of finished rows, the store's size.
        self.store_rows = Gauge(
            "remediator_store_rows",
            "Rows in the store, by table (events, inbox, outbox, episodes, remediations, "
            "step_intents).",
            ["table"],
            registry=r,
        )
        self.store_size_bytes = Gauge(
            "remediator_store_size_bytes",
            "Bytes the store takes on disk: the SQLite files, or the PostgreSQL database.",
            registry=r,
        )
        self.store_pruned_rows = Counter(
            "remediator_store_pruned_rows_total",
            "Finished rows deleted by retention, by table (inbox, outbox, episodes, remediations).",
            ["table"],
            registry=r,
        )
        self.time_to_recovery = Histogram(
            "remediator_time_to_recovery_seconds",
            "Time from an alert's startsAt to its recovery, by playbook and category.",
            ["playbook", "category"],
            buckets=RECOVERY_BUCKETS,
            registry=r,
        )
        # Alert storms (issue 18): coalesced escalations, refused intake, poisoned alerts.
        self.escalations_coalesced = Counter(
            "remediator_escalations_coalesced_total",
            "Escalations delivered inside a summary message instead of one of their own.",
            registry=r,
        )
        self.intake_refused = Counter(
            "remediator_intake_refused_total",
            "Webhook requests refused with 503 and Retry-After, by reason (outbox_full: the "
            "outbox is over notifications.max_pending; busy: another large notification is "
            "being stored).",
            ["reason"],
            registry=r,
        )
        self.alerts_poisoned = Counter(
            "remediator_alerts_poisoned_total",
            "Stored alerts quarantined after worker.max_attempts claims (alert:poisoned).",
            registry=r,
        )
        self.intake_refused_outbox_full = self.intake_refused.labels("outbox_full")
        self.intake_refused_busy = self.intake_refused.labels("busy")

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
            "target_not_allowed",
        ):
            self.guard_blocks.labels(reason)
        for reason in (
            "remediation_failed",
            "circuit_open",
            "max_per_window",
            "blast_radius",
            "unknown_pattern",
            "target_not_registered",
            "target_not_allowed",
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
        for reason in WEBHOOK_REJECTIONS:
            self.webhook_rejected.labels(reason)
        for outcome in ("success", "failure", "standby"):
            self.reconcile_rounds.labels(outcome)
        self.config_reload_successful.set(1)

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
