"""The alerts on remediator itself, and the recording rules its dashboards read."""

from __future__ import annotations

from typing import Any

from remediator.alertrules.rulebook import RuleBook


def remediator_rules(book: RuleBook) -> list[dict[str, Any]]:
    return [
        book.alert(
            "RemediatorDown",
            "up{%(job)s} == 0",
            summary="remediator is down.",
            description="Prometheus has not been able to scrape remediator at {{ $labels.instance }}"
            " for %(for)s: alerts are not being remediated.",
        ),
        book.alert(
            "RemediatorAbsent",
            "absent(up{%(job)s})",
            summary="remediator is not being scraped.",
            description='Prometheus has no target with job="{{ $labels.job }}" for %(for)s: remediator'
            " is not deployed or not discovered, and nothing alerts on it being down.",
        ),
        book.alert(
            "RemediatorWebhookErrors",
            """
            sum by (job, instance) (rate(remediator_webhook_requests_total{%(job)s, code=~"5.."}[5m]))
              /
            sum by (job, instance) (rate(remediator_webhook_requests_total{%(job)s}[5m]))
            > %(threshold)s
            """,
            summary="remediator is failing Alertmanager webhook requests.",
            description="{{ $value | humanizePercentage }} of webhook requests to {{ $labels.instance }}"
            " answer 5xx (threshold %(threshold_pct)s) for more than %(for)s."
            " Alertmanager retries, but new alerts are not being accepted.",
        ),
        book.alert(
            "RemediatorRemediationsFailing",
            """
            sum by (job, instance, playbook) (rate(remediator_remediations_total{%(job)s, outcome="failure"}[30m]))
              /
            sum by (job, instance, playbook) (rate(remediator_remediations_total{%(job)s, outcome=~"success|failure"}[30m]))
            > %(threshold)s
            """,
            summary="Remediations are failing.",
            description="{{ $value | humanizePercentage }} of the remediations of playbook"
            " {{ $labels.playbook }} on {{ $labels.instance }} failed over the last 30m"
            " (threshold %(threshold_pct)s).",
        ),
        book.alert(
            "RemediatorCircuitBreakerOpen",
            # max_over_time: a breaker that goes half-open, fails its trial and opens again
            # keeps the alert going.
            "max_over_time(remediator_circuit_breaker_state{%(job)s}[5m]) == 2",
            summary="A remediator circuit breaker is open.",
            description="The circuit breaker for target {{ $labels.target }} on {{ $labels.instance }}"
            " has been open for more than %(for)s: remediator takes no action on that target.",
        ),
        book.alert(
            "RemediatorInboxBacklog",
            "remediator_inbox_pending{%(job)s} > %(threshold)s",
            summary="remediator is not keeping up with incoming alerts.",
            description="{{ $value | humanize }} stored alerts are waiting for the worker on"
            " {{ $labels.instance }} (threshold %(threshold)s) for more than %(for)s.",
        ),
        book.alert(
            "RemediatorOutboxBacklog",
            "remediator_outbox_pending{%(job)s} > %(threshold)s",
            summary="remediator notifications are not being delivered.",
            description="{{ $value | humanize }} notifications are waiting in the outbox of"
            " {{ $labels.instance }} (threshold %(threshold)s) for more than %(for)s.",
        ),
        book.alert(
            "RemediatorNotificationsDead",
            """
            sum by (job, instance, channel) (
              increase(remediator_notifications_total{%(job)s, outcome="dead"}[30m])
            )
            > %(threshold)s
            """,
            summary="remediator gave up delivering notifications.",
            description="{{ $value | humanize }} notification(s) on channel {{ $labels.channel }} were given up"
            " (dead) by {{ $labels.instance }} in the last 30m.",
        ),
        book.alert(
            "RemediatorEscalating",
            """
            sum by (job, instance, reason) (
              increase(remediator_escalations_total{%(job)s}[30m])
            )
            > %(threshold)s
            """,
            summary="remediator is escalating to humans.",
            description="remediator on {{ $labels.instance }} escalated {{ $value | humanize }} time(s)"
            " with reason {{ $labels.reason }} in the last 30m.",
        ),
        book.alert(
            "RemediatorAuditWriteFailures",
            """
            increase(remediator_audit_write_failures_total{%(job)s}[15m])
            > %(threshold)s
            """,
            summary="remediator cannot write its audit log.",
            description="{{ $value | humanize }} audit event(s) could not be written on"
            " {{ $labels.instance }} in the last 15m: the audit trail has gaps.",
        ),
        book.alert(
            "RemediatorStoreWriteFailures",
            """
            increase(remediator_store_write_failures_total{%(job)s}[5m])
            > %(threshold)s
            """,
            summary="remediator cannot commit to its store.",
            description="{{ $value | humanize }} store commit(s) failed on {{ $labels.instance }} in the last 5m"
            " and failures have gone on for more than %(for)s. The webhook answers 503, so new"
            " alerts are not stored.",
        ),
        book.alert(
            "RemediatorWebhookRejected",
            """
            sum by (job, instance, reason) (
              increase(remediator_webhook_rejected_total{%(job)s}[15m])
            )
            > %(threshold)s
            """,
            summary="remediator refuses Alertmanager webhook requests: their alerts are lost.",
            description="{{ $labels.instance }} refused {{ $value | humanize }} webhook request(s)"
            " with {{ $labels.reason }} in the last 15m. Alertmanager does not retry a 4xx:"
            " the alerts they carried will not be remediated.",
        ),
        book.alert(
            "RemediatorConfigReloadFailed",
            "max_over_time(remediator_config_last_reload_successful{%(job)s}[5m]) == 0",
            summary="remediator could not reload its configuration file.",
            description="The last reload of the configuration file on {{ $labels.instance }}"
            " failed and has not succeeded for %(for)s: the previous configuration still runs,"
            " and a restart would not start.",
        ),
        book.alert(
            "RemediatorReconcileFailing",
            """
            sum by (job, instance) (increase(remediator_reconcile_rounds_total{%(job)s, outcome="failure"}[15m]))
              /
            sum by (job, instance) (increase(remediator_reconcile_rounds_total{%(job)s}[15m]))
            > %(threshold)s
            """,
            summary="remediator cannot reconcile with Alertmanager.",
            description="{{ $value | humanizePercentage }} of the reconciliation rounds of"
            " {{ $labels.instance }} failed over the last 15m (threshold %(threshold_pct)s):"
            " alerts lost on the way and resolutions missed are not recovered.",
        ),
        book.alert(
            "RemediatorPaused",
            "remediator_paused{%(job)s} == 1",
            summary="remediator kill switch has been on for a long time.",
            description="The kill switch of {{ $labels.instance }} has been on for more than %(for)s"
            ": no recovery action runs until someone resumes it.",
        ),
        book.alert(
            "RemediatorStoreGrowing",
            """
            (
                predict_linear(remediator_store_size_bytes{%(job)s}[6h], 86400)
              -
                remediator_store_size_bytes{%(job)s}
            ) / 1073741824
            > %(threshold)s
            """,
            summary="remediator's store is growing fast.",
            description="The store of {{ $labels.instance }} grows by {{ $value | humanize }} GiB a day"
            " (threshold %(threshold)s GiB), by the trend of the last 6h, for more than %(for)s:"
            " retention is not keeping up, or a flood of alerts is being stored.",
        ),
    ]


def recording_rules(book: RuleBook) -> list[dict[str, Any]]:
    # The per-playbook rules keep ``job``: the dashboard selects its job on them.
    return [
        book.record(
            "playbook:remediator_time_to_recovery_seconds:p50_rate1h",
            """
            histogram_quantile(0.5,
              sum by (job, playbook, le) (rate(remediator_time_to_recovery_seconds_bucket{%(job)s}[1h]))
            )
            """,
        ),
        book.record(
            "playbook:remediator_time_to_recovery_seconds:p90_rate1h",
            """
            histogram_quantile(0.9,
              sum by (job, playbook, le) (rate(remediator_time_to_recovery_seconds_bucket{%(job)s}[1h]))
            )
            """,
        ),
        book.record(
            "playbook:remediator_time_to_recovery_seconds:mean1h",
            """
            sum by (job, playbook) (rate(remediator_time_to_recovery_seconds_sum{%(job)s}[1h]))
              /
            sum by (job, playbook) (rate(remediator_time_to_recovery_seconds_count{%(job)s}[1h]))
            """,
        ),
        # success / (success + failure) of remediations (each counted once, however many
        # attempts and steps it took: /api/v1/recovery/statistics' success rate); dry runs and
        # interrupted runs count in neither. The `or 0 * failure` term
        # gives 0 (not "no data") for a playbook that has only failed.
        book.record(
            "playbook:remediator_remediations_success_per_remediations:ratio_rate1h",
            """
            (
                sum by (job, playbook) (rate(remediator_remediations_total{%(job)s, outcome="success"}[1h]))
              or
                0 * sum by (job, playbook) (rate(remediator_remediations_total{%(job)s, outcome="failure"}[1h]))
            )
            /
              sum by (job, playbook) (rate(remediator_remediations_total{%(job)s, outcome=~"success|failure"}[1h]))
            """,
        ),
        book.record(
            "job:remediator_remediations_success_per_remediations:ratio_rate1h",
            """
            (
                sum by (job) (rate(remediator_remediations_total{%(job)s, outcome="success"}[1h]))
              or
                0 * sum by (job) (rate(remediator_remediations_total{%(job)s, outcome="failure"}[1h]))
            )
            /
              sum by (job) (rate(remediator_remediations_total{%(job)s, outcome=~"success|failure"}[1h]))
            """,
        ),
        book.record(
            "job:remediator_webhook_request_duration_seconds:p99_rate5m",
            """
            histogram_quantile(0.99,
              sum by (job, le) (rate(remediator_webhook_request_duration_seconds_bucket{%(job)s}[5m]))
            )
            """,
        ),
    ]
