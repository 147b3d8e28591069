"""Recording a recovery: a resolved alert closes its episode's story with the time it took.

The time to recovery runs from the episode's ``startsAt`` (the earliest any Alertmanager
reported) to the resolved alert's ``endsAt``; it is exported as
``remediator_time_to_recovery_seconds{playbook,category}`` and recorded as ``service:recovered``.
Resolved alerts never start a state-changing action.
"""

from __future__ import annotations

from remediator.alerts import Episode
from remediator.audit import events as ev
from remediator.audit.events import Event, evolve
from remediator.engine.decisions import Catalog, decide
from remediator.engine.run import base_event
from remediator.metrics import Metrics
from remediator.store import InboxItem
from remediator.tracing import Tracing


def record(
    item: InboxItem,
    *,
    episode: Episode | None,
    catalog: Catalog,
    now: float,
    config_version: int,
    metrics: Metrics,
) -> tuple[list[Event], str]:
    """The ``service:recovered`` event of a resolved alert (of ``episode``, if known), with its
    time to recovery observed in ``metrics``."""
    ended = item.ends_at if item.ends_at is not None else item.received_at
    started = episode.starts_at if episode is not None else item.starts_at
    mttr = max(ended - started, 0.0)
    decision = decide(
        catalog,
        fingerprint=item.fingerprint,
        status="resolved",
        labels=item.labels,
        annotations=item.annotations,
    )
    playbook = decision.plan.name if decision.plan else ""
    category = decision.classification.category
    metrics.time_to_recovery.labels(playbook, category).observe(mttr, exemplar=Tracing.exemplar())
    target = ""
    if decision.plan is not None:
        target = decision.plan.target.render(labels=item.labels, annotations=item.annotations)
    recovered = evolve(
        base_event(item, decision, now=now, config_version=config_version),
        type=ev.SERVICE_RECOVERED,
        time=now,
        target=target if target in catalog.targets else "",
        playbook=playbook,
        outcome="recovered",
        duration=mttr,
        message=f"{item.alertname} resolved after {mttr:.1f}s",
    )
    return [recovered], "resolved"
