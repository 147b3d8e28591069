"""Which recorded events notify whom: a pure router from events to outbox rows.

Incident messages follow a remediation: ``recovery:started`` (remediating), each
``recovery:action`` (a thread reply), ``recovery:succeeded`` / ``recovery:failed`` (outcome) and
``service:recovered`` (the alert resolved, with the time to recovery). Slack updates one message
per incident; email sends one message per remediation outcome; webhooks get every step.

Escalations (``recovery:escalated``) go through the escalation levels: each level lists the
reasons it handles and its channels; a level fires at most once per incident (alert episode),
enforced by the outbox's unique ``dedupe_key``. An escalation that names its level in
``details.level`` (the escalator's ``no_recovery``, once that level's own wait has passed)
goes to that level only. With no levels configured, every escalation goes
to every configured channel, once per incident. A notification that was dead-lettered
on one channel escalates through the others.

Destinations come only from configuration, never from alert content.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from remediator.config import Config, EscalationLevel, NotificationsConfig
from remediator.events import Event
from remediator.notifiers.email import recipients
from remediator.notifiers.slack import route as slack_channel
from remediator.recording import OutboxRow, Router

SLACK_PHASES = {
    "recovery:started": "remediating",
    "recovery:action": "info",  # a thread reply; the headline keeps the incident's state
    "recovery:succeeded": "recovered",
    "recovery:failed": "failed",
    "service:recovered": "recovered",
}
EMAIL_PHASES = {"recovery:succeeded": "recovered", "recovery:failed": "failed"}
WEBHOOK_PHASES = {**SLACK_PHASES, "recovery:action": "remediating"}
ESCALATED = "recovery:escalated"
ALL_CHANNELS = ("slack", "email", "webhook")


def incident_key(event: Event) -> str:
    episode = event.details.get("episode", "")
    return f"{event.fingerprint or event.target or 'remediator'}:{episode}"


def _fields(event: Event) -> dict[str, str]:
    fields = {
        "alert": event.alertname,
        "target": event.target,
        "action": event.action or event.playbook,
        "outcome": event.outcome,
        "duration": f"{event.duration:.1f}s" if event.duration is not None else "",
        "severity": event.severity,
    }
    return {k: v for k, v in fields.items() if v}


def _payload(event: Event, phase: str) -> dict[str, Any]:
    links = {
        name: str(event.details[key])
        for name, key in (("generator", "generator_url"), ("runbook", "runbook_url"))
        if event.details.get(key)
    }
    title = event.alertname or event.type
    if event.target:
        title += f" on {event.target}"
    detail = event.message if event.type in ("recovery:action", ESCALATED) else ""
    return {
        "title": title,
        "phase": phase,
        "severity": event.severity,
        "fields": _fields(event),
        "links": links,
        "detail": detail,
        "data": {k: v for k, v in event.as_dict().items() if k not in ("prev_hash", "hash")},
    }


def _destinations(config: NotificationsConfig, channel: str, event: Event) -> list[str]:
    if channel == "slack" and config.slack is not None:
        return [slack_channel(config.slack, severity=event.severity, category=event.category)]
    if channel == "email" and config.email is not None:
        return [",".join(recipients(config.email, event.severity))]
    if channel == "webhook":
        return [hook.name for hook in config.webhooks]
    return []


def _level_applies(level: EscalationLevel, event: Event) -> bool:
    reason = event.outcome
    if event.severity == "critical" and "critical" in level.when:
        return True
    if reason not in level.when:
        return False
    if reason == "remediation_failed":
        return int(event.details.get("failures", 1)) >= level.after_failures
    return True


def build_router(config: Config) -> Router | None:
    """The router for this configuration, or None when no channel is configured."""
    notes = config.notifications
    configured = [
        name
        for name, present in (
            ("slack", notes.slack is not None),
            ("email", notes.email is not None),
            ("webhook", bool(notes.webhooks)),
        )
        if present
    ]
    if not configured:
        return None
    levels = config.escalation.levels

    def rows(
        event: Event, channels: Sequence[str], phase: str, dedupe: str | None
    ) -> list[OutboxRow]:
        incident = incident_key(event)
        out = []
        for channel in channels:
            for destination in _destinations(notes, channel, event):
                key = f"{dedupe}:{channel}:{destination}" if dedupe else None
                out.append(OutboxRow(channel, destination, incident, phase,
                                     _payload(event, phase), key))  # fmt: skip
        return out

    def route(event: Event) -> list[OutboxRow]:
        if event.type == ESCALATED:
            return escalate(event)
        if event.type == "service:recovered" and not event.playbook:
            return []  # an alert no playbook handles: nothing to follow up
        out: list[OutboxRow] = []
        for channel, phases in (("slack", SLACK_PHASES), ("email", EMAIL_PHASES),
                                ("webhook", WEBHOOK_PHASES)):  # fmt: skip
            if channel in configured and event.type in phases:
                out += rows(event, [channel], phases[event.type], None)
        return out

    def escalate(event: Event) -> list[OutboxRow]:
        incident = incident_key(event)
        failed_channel = str(event.details.get("channel", ""))
        usable = [c for c in configured if c != failed_channel]
        if not levels:
            # One implicit level: once per incident (a dead-lettered notification is its own
            # case, so that it still escalates through the other channels).
            implicit = "notification_dead" if event.outcome == "notification_dead" else "default"
            return rows(event, usable, "escalated", f"esc:{incident}:{implicit}")
        out: list[OutboxRow] = []
        named = event.details.get("level")  # the escalator's no_recovery: that level only
        for level in levels:
            if (named is None or level.name == named) and _level_applies(level, event):
                channels = [c for c in level.notify if c in usable]
                out += rows(event, channels, "escalated", f"esc:{incident}:{level.name}")
        return out

    return route
