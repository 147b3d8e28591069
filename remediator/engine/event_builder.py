"""The events of a remediation run, built from one base event (the alert's, or a manual run's)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from remediator.audit import events as ev
from remediator.audit.events import Event, evolve
from remediator.clock import Clock
from remediator.engine.breaker import Transition, TransitionEvents
from remediator.engine.decisions import (
    TARGET_NOT_ALLOWED,
    TARGET_NOT_REGISTERED,
    UNKNOWN_PATTERN,
    Decision,
    sanitize,
)
from remediator.engine.guards import ESCALATING
from remediator.metrics import Metrics
from remediator.store import InboxItem

_CIRCUIT = {"open": ev.CIRCUIT_OPEN, "half-open": ev.CIRCUIT_HALF_OPEN}


def base_event(item: InboxItem, decision: Decision, *, now: float, config_version: int) -> Event:
    """The base event of an alert: what every event of its run carries."""
    c = decision.classification
    return Event(
        type="",
        time=now,
        severity=c.severity,
        category=c.category,
        fingerprint=item.fingerprint,
        alertname=item.alertname,
        status=item.status,
        config_version=config_version,
        details={
            "episode": item.episode_id,
            "pattern": c.pattern_id,
            "generator_url": item.generator_url,
            "runbook_url": item.annotations.get("runbook_url", ""),
        },
    )


@dataclass(frozen=True, slots=True)
class EventBuilder:
    """Builds the events of one run from its base event, each stamped with the clock's time;
    escalations and guard refusals are also counted in the metrics."""

    base: Event
    clock: Clock
    metrics: Metrics

    def evolve(self, **fields: Any) -> EventBuilder:
        """A builder whose base event has these fields changed."""
        return replace(self, base=evolve(self.base, **fields))

    def event(self, type_: str, *, time: float | None = None, **fields: Any) -> Event:
        """An event of this type, at ``time`` (default: now)."""
        when = self.clock.now() if time is None else time
        return evolve(self.base, type=type_, time=when, **fields)

    def skip(self, reason: str, message: str) -> Event:
        details = {**self.base.details, "reason": reason}
        return self.event(ev.RECOVERY_SKIPPED, outcome=reason, message=message, details=details)

    def escalation(self, reason: str, detail: str) -> Event:
        self.metrics.escalations.labels(reason).inc()
        return self.event(
            ev.RECOVERY_ESCALATED,
            outcome=reason,
            severity=self.base.severity,
            message=detail or reason,
            details={**self.base.details, "reason": reason},
        )

    def blocked(self, reason: str, message: str) -> list[Event]:
        """A guard's refusal: the skip, and an escalation for the reasons that escalate."""
        self.metrics.guard_blocks.labels(reason).inc()
        events = [self.skip(reason, message)]
        if reason in ESCALATING:
            events.append(self.escalation(reason, message))
        return events

    def transitions(self) -> TransitionEvents:
        """The events of the target's breaker transitions (circuit:open, half-open, closed)."""

        def make(t: Transition) -> list[Event]:
            message = f"circuit {t.changed_to} ({t.state.failures} consecutive failure(s))"
            return [
                self.event(
                    _CIRCUIT.get(t.changed_to or "", ev.CIRCUIT_CLOSED),
                    target=t.state.target,
                    outcome=t.changed_to or "",
                    message=message,
                )
            ]

        return make


def skip_detail(decision: Decision) -> str:
    if decision.reason == TARGET_NOT_REGISTERED:
        return f"target {sanitize(decision.rendered_target)!r} is not registered; refused"
    if decision.reason == TARGET_NOT_ALLOWED and decision.plan and decision.plan.allowed:
        return (
            f"target {sanitize(decision.rendered_target)!r} is not on the allow-list of "
            f"{decision.plan.name!r} ({decision.plan.allowed.describe()}); refused"
        )
    if decision.reason == UNKNOWN_PATTERN:
        return "no failure pattern matched and no playbook applies; escalating instead of guessing"
    return decision.reason or ""
