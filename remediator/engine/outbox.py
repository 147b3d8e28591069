"""Delivering the outbox: every stored notification, exactly once, through its notifier.

Rows were written in the transaction of the event that caused them, so nothing is lost across
restarts or provider outages. A delivery that can be retried (connection errors, 5xx, SMTP 4xx,
Slack 429) waits ``max(retry_after, backoff)``; a permanent failure (SMTP 5xx, Slack
``channel_not_found``) is dead-lettered and escalated through the other channels. Every outcome
is counted in ``remediator_notifications_total{channel,outcome}``; sends and dead letters are
audit events.

Rows with a batch key (the escalations an alert storm makes: remediator/engine/notifications.py)
are delivered together: the claimed rows of one (channel, destination, batch key), topped up
with that batch's other due rows up to ``max_batch``, make one summary message ("8,000 alerts
matched no pattern in the last 15s: top alertnames ..."); every row of it is marked with the
message's outcome, and the rows folded into it are counted in
``remediator_escalations_coalesced_total``. Nothing is dropped: a batch that cannot be sent is
retried (or dead-lettered) as a whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import Counter
from dataclasses import replace
from typing import Protocol

from remediator.audit import events as ev
from remediator.audit.events import Event
from remediator.clock import Clock
from remediator.engine.worker import worker_name
from remediator.metrics import Metrics
from remediator.notifiers.base import Delivery, Notification, Notifier
from remediator.redaction import redact_text
from remediator.store import base as roles
from remediator.store.records import OutboxItem
from remediator.tracing import Attribute, Tracing

log = logging.getLogger("remediator.outbox")
NOTIFICATION_SENT = ev.NOTIFICATION_SENT
NOTIFICATION_DEAD = ev.NOTIFICATION_DEAD
MAX_BACKOFF = 300.0


class OutboxStore(roles.Outbox, roles.SlackThreads, Protocol):
    """The store roles delivery needs: the outbox and the Slack threads."""


def backoff(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failed ones: 1, 2, 4, ... up to 5 min."""
    return min(2.0 ** max(attempts, 0), MAX_BACKOFF)


# What a coalesced escalation's alerts have in common, by the reason in its batch key.
BATCH_REASONS = {
    "unknown_pattern": "matched no pattern",
    "target_not_registered": "named a target that is not registered",
}
TOP_NAMES = 5  # alertnames a summary lists
BATCH_PAGE = 200  # rows of a batch claimed per statement


def summary(items: list[OutboxItem]) -> Notification:
    """One message for a batch of escalations (the first is the one it is sent as)."""
    head = notification(items[0])
    reason = (items[0].batch_key or "").rsplit(":", 1)[-1]
    what = BATCH_REASONS.get(reason, f"escalated ({reason})")
    names = Counter(str(i.payload.get("data", {}).get("alertname", "")) or "?" for i in items)
    times = [float(i.payload.get("data", {}).get("time", 0.0)) for i in items]
    span = max(1, math.ceil(max(times) - min(times)))
    top = ", ".join(f"{name} ({n:,})" for name, n in names.most_common(TOP_NAMES))
    more = f" and {len(names) - TOP_NAMES:,} more" if len(names) > TOP_NAMES else ""
    title = f"{len(items):,} alerts {what} in the last {span}s"
    severities = {str(i.payload.get("severity", "info")) for i in items}
    return replace(
        head,
        title=title,
        fields={"alerts": f"{len(items):,}", "reason": reason, "alertnames": f"{len(names):,}"},
        severity="critical" if "critical" in severities else head.severity,
        links={},
        detail=f"{title}: top alertnames {top}{more}",
        data={**head.data, "coalesced": len(items), "alertnames": dict(names.most_common(20))},
    )


def notification(item: OutboxItem) -> Notification:
    p = item.payload
    return Notification(
        id=item.id,
        channel=item.channel,
        destination=item.destination,
        incident=item.incident,
        phase=item.phase,  # type: ignore[arg-type]
        title=str(p.get("title", "")),
        fields={str(k): str(v) for k, v in dict(p.get("fields", {})).items()},
        severity=str(p.get("severity", "info")),
        links={str(k): str(v) for k, v in dict(p.get("links", {})).items()},
        detail=str(p.get("detail", "")),
        data=dict(p.get("data", {})),
    )


class Outbox:
    def __init__(
        self,
        *,
        store: OutboxStore,
        notifiers: dict[str, Notifier],
        metrics: Metrics,
        clock: Clock,
        poll_interval: float = 1.0,
        lease: float = 60.0,
        batch: int = 20,
        max_batch: int = 1000,
    ) -> None:
        self.store = store
        self.notifiers = notifiers
        self.metrics = metrics
        self.clock = clock
        self.poll_interval = poll_interval
        self.lease = lease
        self.batch = batch
        self.max_batch = max_batch  # alerts one coalesced message holds at most
        self.pending = 0  # pending rows at the last round (the webhook's cap reads it)
        self.name = worker_name()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Spans (remediator/tracing.py): the no-op tracer unless the app sets the configured one.
        self.tracing = Tracing()

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._loop(), name="remediator-outbox")

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        for notifier in self.notifiers.values():
            with contextlib.suppress(Exception):
                await notifier.aclose()

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            handled = 0
            try:
                handled = await self.run_once()
            except Exception:
                log.exception("outbox round failed")
            if handled:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval)

    async def run_once(self) -> int:
        """Deliver what is due now (at most one message per incident and destination; one per
        batch of coalesced escalations)."""
        items = await self.store.claim_outbox(
            worker=self.name, now=self.clock.now(), lease=self.lease, limit=self.batch
        )
        groups: dict[tuple[str, str, str], list[OutboxItem]] = {}
        messages: list[list[OutboxItem]] = []
        for item in items:
            if item.batch_key is None:
                messages.append([item])
            else:
                groups.setdefault((item.channel, item.destination, item.batch_key), []).append(item)
        for group in groups.values():
            while len(group) < self.max_batch:  # in pages: no one long write on the loop
                room = min(self.max_batch - len(group), BATCH_PAGE)
                more = await self.store.claim_outbox_batch(
                    group[-1], worker=self.name, now=self.clock.now(), lease=self.lease,
                    limit=room,
                )  # fmt: skip
                group += more
                if len(more) < room:
                    break
            messages += [
                group[i : i + self.max_batch] for i in range(0, len(group), self.max_batch)
            ]
        await asyncio.gather(*(self._deliver(message) for message in messages))
        self.pending = await self.store.outbox_pending()
        self.metrics.outbox_pending.set(self.pending)
        return sum(len(message) for message in messages)

    async def _deliver(self, items: list[OutboxItem]) -> None:
        """One message, in a ``notification`` span (``channel``, ``phase``, ``outcome``: sent,
        retry or dead) in the trace of the decision that caused it, when this process made that
        decision (remediator/tracing.py ``note_decision``), else in a trace of its own."""
        if not self.tracing.enabled:
            await self._send(items)
            return
        item = items[0]
        episode = item.payload.get("data", {}).get("details", {}).get("episode")
        attributes: dict[str, Attribute] = {
            "channel": item.channel,
            "phase": item.phase,
            "outbox.id": item.id,
            "coalesced": len(items),
        }
        if isinstance(episode, int) and not isinstance(episode, bool):
            attributes["episode"] = episode
        parent = self.tracing.decision_context(episode)
        with self.tracing.span("notification", traceparent=parent, attributes=attributes) as span:
            span.set_attribute("outcome", await self._send(items))

    async def _send(self, items: list[OutboxItem]) -> str:
        """Send one message; its outcome (``sent``, ``retry`` or ``dead``)."""
        item, batch = items[0], tuple(i.id for i in items[1:])
        notifier = self.notifiers.get(item.channel)
        note = notification(item) if not batch else summary(items)
        if notifier is None:
            await self._dead(item, note, f"channel {item.channel} is not configured", batch)
            return "dead"
        thread = await notifier.find_thread(
            self.store, incident=item.incident, destination=item.destination
        )
        try:
            delivery = await notifier.send(note, thread=thread)
        except Exception as exc:  # a notifier bug must not lose the message
            log.exception("notifier raised", extra={"channel": item.channel})
            delivery = Delivery(False, f"notifier raised {type(exc).__name__}")
        if delivery.ok:
            await self._sent(item, note, delivery, notifier, batch)
            return "sent"
        if delivery.permanent:
            await self._dead(item, note, delivery.detail, batch)
            return "dead"
        wait = max(delivery.retry_after or 0.0, backoff(item.attempts))
        self.metrics.notifications.labels(item.channel, "retry").inc()
        await self.store.outbox_retry(
            item.id, next_at=self.clock.now() + wait, error=redact_text(delivery.detail),
            batch=batch,
        )  # fmt: skip
        return "retry"

    async def _sent(
        self,
        item: OutboxItem,
        note: Notification,
        delivery: Delivery,
        notifier: Notifier,
        batch: tuple[int, ...] = (),
    ) -> None:
        if delivery.thread is not None:
            await notifier.keep_thread(
                self.store, incident=item.incident, destination=item.destination,
                thread=delivery.thread,
            )  # fmt: skip
        detail = delivery.detail or "delivered"
        if delivery.refused:
            detail += "; refused: " + ", ".join(delivery.refused)
        event = Event(type=NOTIFICATION_SENT, time=self.clock.now(), severity=note.severity,
                      outcome="partial" if delivery.refused else "sent", action=item.channel,
                      message=redact_text(detail), actor="outbox",
                      details={"outbox": item.id, "incident": item.incident, "phase": item.phase,
                               "destination": item.destination})  # fmt: skip
        if batch:
            event.details.update(coalesced=len(batch) + 1, batch=[batch[0], batch[-1]])
        await self.store.outbox_sent(item.id, now=self.clock.now(), events=[event], batch=batch)
        self.metrics.notifications.labels(item.channel, "sent").inc()
        if batch:
            self.metrics.escalations_coalesced.inc(len(batch))

    async def _dead(
        self, item: OutboxItem, note: Notification, detail: str, batch: tuple[int, ...] = ()
    ) -> None:
        now = self.clock.now()
        data = note.data
        base = {"outbox": item.id, "channel": item.channel, "destination": item.destination,
                "episode": data.get("details", {}).get("episode", "")}  # fmt: skip
        dead = Event(type=NOTIFICATION_DEAD, time=now, severity="high", action=item.channel,
                     outcome="dead", actor="outbox", message=redact_text(detail),
                     details=base)  # fmt: skip
        escalated = Event(type=ev.RECOVERY_ESCALATED, time=now, severity="high",
                          fingerprint=str(data.get("fingerprint", "")),
                          alertname=str(data.get("alertname", "")),
                          target=str(data.get("target", "")), outcome="notification_dead",
                          actor="outbox", message=f"{item.channel} notification dead-lettered: "
                          f"{redact_text(detail)}", details=base)  # fmt: skip
        self.metrics.notifications.labels(item.channel, "dead").inc()
        self.metrics.escalations.labels("notification_dead").inc()
        if batch:
            base["coalesced"] = len(batch) + 1
        await self.store.outbox_dead(item.id, now=now, error=redact_text(detail),
                                     events=[dead, escalated], batch=batch)  # fmt: skip
