"""Delivering the outbox: every stored notification, exactly once, through its notifier.

Rows were written in the transaction of the event that caused them, so nothing is lost across
restarts or provider outages. A delivery that can be retried (connection errors, 5xx, SMTP 4xx,
Slack 429) waits ``max(retry_after, backoff)``; a permanent failure (SMTP 5xx, Slack
``channel_not_found``) is dead-lettered and escalated through the other channels. Every outcome
is counted in ``remediator_notifications_total{channel,outcome}``; sends and dead letters are
audit events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
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

log = logging.getLogger("remediator.outbox")
NOTIFICATION_SENT = ev.NOTIFICATION_SENT
NOTIFICATION_DEAD = ev.NOTIFICATION_DEAD
MAX_BACKOFF = 300.0


class OutboxStore(roles.Outbox, roles.SlackThreads, Protocol):
    """The store roles delivery needs: the outbox and the Slack threads."""


def backoff(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failed ones: 1, 2, 4, ... up to 5 min."""
    return min(2.0 ** max(attempts, 0), MAX_BACKOFF)


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
    ) -> None:
        self.store = store
        self.notifiers = notifiers
        self.metrics = metrics
        self.clock = clock
        self.poll_interval = poll_interval
        self.lease = lease
        self.batch = batch
        self.name = worker_name()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

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
        """Deliver what is due now (at most one message per incident and destination)."""
        items = await self.store.claim_outbox(
            worker=self.name, now=self.clock.now(), lease=self.lease, limit=self.batch
        )
        await asyncio.gather(*(self._deliver(item) for item in items))
        self.metrics.outbox_pending.set(await self.store.outbox_pending())
        return len(items)

    async def _deliver(self, item: OutboxItem) -> None:
        notifier = self.notifiers.get(item.channel)
        note = notification(item)
        if notifier is None:
            await self._dead(item, note, f"channel {item.channel} is not configured")
            return
        thread = await notifier.find_thread(
            self.store, incident=item.incident, destination=item.destination
        )
        try:
            delivery = await notifier.send(note, thread=thread)
        except Exception as exc:  # a notifier bug must not lose the message
            log.exception("notifier raised", extra={"channel": item.channel})
            delivery = Delivery(False, f"notifier raised {type(exc).__name__}")
        if delivery.ok:
            await self._sent(item, note, delivery, notifier)
        elif delivery.permanent:
            await self._dead(item, note, delivery.detail)
        else:
            wait = max(delivery.retry_after or 0.0, backoff(item.attempts))
            self.metrics.notifications.labels(item.channel, "retry").inc()
            await self.store.outbox_retry(
                item.id, next_at=self.clock.now() + wait, error=redact_text(delivery.detail)
            )

    async def _sent(
        self, item: OutboxItem, note: Notification, delivery: Delivery, notifier: Notifier
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
        await self.store.outbox_sent(item.id, now=self.clock.now(), events=[event])
        self.metrics.notifications.labels(item.channel, "sent").inc()

    async def _dead(self, item: OutboxItem, note: Notification, detail: str) -> None:
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
        await self.store.outbox_dead(item.id, now=now, error=redact_text(detail),
                                     events=[dead, escalated])  # fmt: skip
