"""Which recorded events notify whom: a pure router from events to outbox rows.

Incident messages follow a remediation: ``recovery:started`` (remediating), each
``recovery:action`` (a thread reply), ``recovery:succeeded`` / ``recovery:failed`` (outcome) and
``service:recovered`` (the alert resolved, with the time to recovery). Each channel declares the
event types it follows and their phases on its notifier class (remediator/notifiers/): Slack
updates one message per incident; email sends one message per remediation outcome; webhooks
get every step.

Escalations (``recovery:escalated``) go through the escalation levels: each level lists the
reasons it handles and its channels; a level fires at most once per incident (alert episode),
enforced by the outbox's unique ``dedupe_key``. An escalation that names its level in
``details.level`` (the escalator's ``no_recovery``, once that level's own wait has passed)
goes to that level only. With no levels configured, every escalation goes
to every configured channel, once per incident. A notification that was dead-lettered
on one channel escalates through the others.

Escalations that a storm of alerts makes (reasons in :data:`COALESCED`: an alert no pattern
matched, or one naming a target that is not registered) are coalesced: their rows carry a batch
key and wait until the end of their ``notifications.coalesce_window``, so the outbox delivers
each window's rows of a channel as one summary (remediator/engine/outbox.py), at most
``notifications.max_alerts_per_message`` alerts each, instead of one message per alert.

Destinations come only from configuration, never from alert content. Links taken from the alert
(its ``runbook_url``, its ``generatorURL``) are shown only when their host is on
``notifications.link_hosts`` (remediator/config/links.py); the others become a field that says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

from remediator.audit.events import (
    APPROVAL_APPROVED,
    APPROVAL_CANCELLED,
    APPROVAL_DENIED,
    APPROVAL_EXPIRED,
    APPROVAL_REQUESTED,
    Event,
)
from remediator.audit.recording import OutboxRow, Router
from remediator.config.links import HIDDEN, allowed
from remediator.config.model import Config, EscalationLevel
from remediator.engine.approval_links import DECISIONS, LinkSigner
from remediator.engine.decisions import TARGET_NOT_ALLOWED, TARGET_NOT_REGISTERED
from remediator.engine.step_approvals import spec_of
from remediator.notifiers import CHANNELS, configured, section

ESCALATED = "recovery:escalated"
ALL_CHANNELS = CHANNELS
DECIDED = (APPROVAL_APPROVED, APPROVAL_DENIED, APPROVAL_EXPIRED, APPROVAL_CANCELLED)
# Escalation reasons an alert storm makes by the thousand: delivered as summaries.
COALESCED = frozenset({"unknown_pattern", "target_not_registered"})


def window_end(time: float, window: float) -> float | None:
    """When the coalescing window holding ``time`` ends (None: no window, deliver at once)."""
    if window <= 0:
        return None
    return (math.floor(time / window) + 1) * window


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


def _links(event: Event, hosts: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """The alert's links a notification may show, and a field for each one it hides."""
    links: dict[str, str] = {}
    hidden: dict[str, str] = {}
    for name, key, field in (
        ("generator", "generator_url", "source"),
        ("runbook", "runbook_url", "runbook"),
    ):
        url = str(event.details.get(key) or "")
        if url and allowed(url, hosts):
            links[name] = url
        elif url:
            hidden[field] = HIDDEN
    return links, hidden


def _payload(event: Event, phase: str, hosts: Sequence[str] = ()) -> dict[str, Any]:
    links, hidden = _links(event, hosts)
    title = event.alertname or event.type
    if event.target:
        title += f" on {event.target}"
    # (an approval's decision also stays in the incident's Slack thread once later phases
    # update the message)
    detail = event.message if event.type in ("recovery:action", ESCALATED, *DECIDED) else ""
    return {
        "title": title,
        "phase": phase,
        "severity": event.severity,
        "fields": {**_fields(event), **hidden},
        "links": links,
        "detail": detail,
        "data": {k: v for k, v in event.as_dict().items() if k not in ("prev_hash", "hash")},
    }


# The levels' vocabulary names one reason for both refusals of a templated target.
LEVEL_REASONS: Final = {
    TARGET_NOT_REGISTERED: "target_refused",
    TARGET_NOT_ALLOWED: "target_refused",
}


def _level_applies(level: EscalationLevel, event: Event) -> bool:
    reason = LEVEL_REASONS.get(event.outcome or "", event.outcome)
    if event.severity == "critical" and "critical" in level.when:
        return True
    if reason not in level.when:
        return False
    if reason == "remediation_failed":
        return int(event.details.get("failures", 1)) >= level.after_failures
    return True


def approval_emails(
    config: Config, event: Event, links: LinkSigner | None, hosts: Sequence[str]
) -> list[OutboxRow]:
    """The request mails of an approval: one per address in its playbook's (or its step's)
    ``approval.emails`` (configuration, never alert content), each with that approver's own
    signed links."""
    approval = event.details.get("approval")
    plan = next((p for p in config.playbooks if p.name == event.playbook), None)
    spec = plan.approval if plan is not None else None
    step = event.details.get("step")  # an approval of a single step: that step's approvers
    if isinstance(step, int) and not isinstance(step, bool):
        patterns = (p.recovery for p in config.patterns if f"pattern:{p.id}" == event.playbook)
        steps = plan.steps if plan is not None else next(patterns, [])
        spec = spec_of(steps, None, step)
    if spec is None or not isinstance(approval, int):
        return []
    expires = float(event.details.get("expires_at") or 0.0)
    out = []
    for email in spec.emails:
        payload = _payload(event, "awaiting", hosts)
        payload["title"] = f"Approval requested: {payload['title']}"
        if links is not None:
            for decision in DECISIONS:
                payload["links"][decision] = links.url(
                    approval=approval, decision=decision, email=email, expires=expires
                )
            payload["detail"] = (
                "Each link works once, until the request expires; it opens a page that asks "
                "you to confirm."
            )
        else:
            payload["detail"] = f"Decide with: remediator approvals approve {approval}"
        out.append(OutboxRow("email", email, incident_key(event), "awaiting", payload,
                             f"approval:{approval}:{email.lower()}", None, None))  # fmt: skip
    return out


def build_router(config: Config, *, links: LinkSigner | None = None) -> Router | None:
    """The router for this configuration, or None when no channel is configured; ``links``
    signs the approve/deny links of approval emails."""
    notes = config.notifications
    kinds = {kind.channel: kind for kind in configured(notes)}
    if not kinds:
        return None
    levels = config.escalation.levels
    hosts = notes.link_hosts

    def rows(
        event: Event, channels: Sequence[str], phase: str, dedupe: str | None
    ) -> list[OutboxRow]:
        incident = incident_key(event)
        batch = not_before = None
        if event.type == ESCALATED and event.outcome in COALESCED:
            batch = f"{ESCALATED}:{event.outcome}"
            not_before = window_end(event.time, notes.coalesce_window)
        out = []
        for channel in channels:
            kind = kinds[channel]
            for destination in kind.destinations(section(notes, kind), event):
                key = f"{dedupe}:{channel}:{destination}" if dedupe else None
                out.append(OutboxRow(channel, destination, incident, phase,
                                     _payload(event, phase, hosts), key, batch, not_before))  # fmt: skip
        return out

    def route(event: Event) -> list[OutboxRow]:
        if event.type == ESCALATED:
            return escalate(event)
        if event.type == "service:recovered" and not event.playbook:
            return []  # an alert no playbook handles: nothing to follow up
        out: list[OutboxRow] = []
        for channel, kind in kinds.items():
            if event.type in kind.phases:
                out += rows(event, [channel], kind.phases[event.type], None)
        if event.type == APPROVAL_REQUESTED and "email" in kinds:
            out += approval_emails(config, event, links, hosts)
        return out

    def escalate(event: Event) -> list[OutboxRow]:
        incident = incident_key(event)
        failed_channel = str(event.details.get("channel", ""))
        usable = [c for c in kinds if c != failed_channel]
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
