"""The events the engine records, built from one base event per alert (a mixin of Engine)."""

from __future__ import annotations

from remediator import events as ev
from remediator.breaker import Transition
from remediator.clock import Clock
from remediator.decisions import TARGET_NOT_REGISTERED, UNKNOWN_PATTERN, Decision, sanitize
from remediator.events import Event, evolve
from remediator.metrics import Metrics
from remediator.store import InboxItem
from remediator.store.base import TransitionEvents


class EngineEvents:
    """Event builders; the engine provides the clock, the metrics and the config version."""

    clock: Clock
    metrics: Metrics
    config_version: int

    def _transition_events(self, base: Event) -> TransitionEvents:
        def make(t: Transition) -> list[Event]:
            kind = {
                "open": ev.CIRCUIT_OPEN,
                "half-open": ev.CIRCUIT_HALF_OPEN,
                "closed": ev.CIRCUIT_CLOSED,
            }[t.changed_to or "closed"]
            message = f"circuit {t.changed_to} ({t.state.failures} consecutive failure(s))"
            return [
                evolve(
                    base,
                    type=kind,
                    time=self.clock.now(),
                    target=t.state.target,
                    outcome=t.changed_to or "",
                    message=message,
                )
            ]

        return make

    def base_event(self, item: InboxItem, decision: Decision) -> Event:
        c = decision.classification
        return Event(
            type="",
            time=self.clock.now(),
            severity=c.severity,
            category=c.category,
            fingerprint=item.fingerprint,
            alertname=item.alertname,
            status=item.status,
            config_version=self.config_version,
            details={
                "episode": item.episode_id,
                "pattern": c.pattern_id,
                "generator_url": item.generator_url,
                "runbook_url": item.annotations.get("runbook_url", ""),
            },
        )

    def _skip(self, base: Event, reason: str, decision: Decision, detail: str = "") -> Event:
        message = detail or skip_detail(decision) or reason
        return evolve(
            base,
            type=ev.RECOVERY_SKIPPED,
            time=self.clock.now(),
            outcome=reason,
            message=message,
            details={**base.details, "reason": reason},
        )

    def _escalation(self, base: Event, reason: str, detail: str) -> Event:
        self.metrics.escalations.labels(reason).inc()
        return evolve(
            base,
            type=ev.RECOVERY_ESCALATED,
            time=self.clock.now(),
            outcome=reason,
            severity=base.severity,
            message=detail or reason,
            details={**base.details, "reason": reason},
        )


def skip_detail(decision: Decision) -> str:
    if decision.reason == TARGET_NOT_REGISTERED:
        return f"target {sanitize(decision.rendered_target)!r} is not registered; refused"
    if decision.reason == UNKNOWN_PATTERN:
        return "no failure pattern matched and no playbook applies; escalating instead of guessing"
    return decision.reason or ""
