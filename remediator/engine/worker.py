"""The background worker: claims stored alerts from the inbox and hands each to a processor.

The webhook only stores and wakes the worker; all remediation work happens here. Items are
claimed with a lease, so an item whose worker died is claimed again once the lease expires.

Every claim counts an attempt on the item's row, in the claim's own commit, so an item whose
processing raises, overruns its lease, or kills the process (kill -9 mid-decision) counts each
try durably. A poison item — claimed more than ``worker.max_attempts`` times without being done —
is quarantined instead of processed again: state ``poisoned``, an ``alert:poisoned`` event,
``remediator_alerts_poisoned_total``, listed by ``GET /api/v1/recovery/alerts/poisoned``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
from collections.abc import Awaitable, Callable

from remediator.audit.events import ALERT_POISONED, Event, EventBus
from remediator.clock import Clock
from remediator.config.model import WorkerConfig
from remediator.errors import StoreUnavailable
from remediator.metrics import Metrics
from remediator.store import InboxItem, Store
from remediator.tracing import Tracing, bounded

log = logging.getLogger("remediator.worker")

Outcome = tuple[list[Event], str]
Processor = Callable[[InboxItem], Awaitable[Outcome]]
# The outcome a processor returns when it completed the item itself, in its last write
# (``Store.finish_remediation(complete_item=...)``), with every event recorded: the worker does
# not complete it again. A processor that raises has completed nothing: the item is retried.
COMPLETED = "-completed"
Preparer = Callable[[list[InboxItem]], Awaitable[None]]


async def mark_seen(item: InboxItem) -> Outcome:
    """The processor of an engine-less remediator: record nothing more, mark the item seen."""
    return [], "seen"


FILL_WINDOW = 0.02  # seconds a claim may wait for more room while items are in hand


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    def __init__(
        self,
        *,
        store: Store,
        metrics: Metrics,
        clock: Clock,
        bus: EventBus,
        settings: WorkerConfig,
        process: Processor = mark_seen,
        prepare: Preparer | None = None,
        name: str | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.bus = bus
        self.settings = settings
        self.process = process
        self.prepare = prepare
        self.name = name or worker_name()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._stopping = False
        self._last_fill = 0.0  # loop time of the last claim
        self._fill_due: float | None = None  # a claim put off until then
        # Spans (remediator/tracing.py): the no-op tracer unless the app sets the configured one.
        self.tracing = Tracing()

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._loop(), name="remediator-worker")

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming; let items in hand finish (up to ``timeout``), then stop."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._inflight:
            _, pending = await asyncio.wait(self._inflight.values(), timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _loop(self) -> None:
        last_renewal = self.clock.monotonic()
        while not self._stopping:
            claimed = 0
            # Cleared before the claim, not after: a wake-up that arrives while a claim is in
            # flight (an alert committed after the claim read the inbox) is kept for the wait.
            self._wake.clear()
            try:
                claimed = await self._fill()
                if self.clock.monotonic() - last_renewal > self.settings.lease / 3:
                    last_renewal = self.clock.monotonic()
                    await self._renew()
            except StoreUnavailable as exc:
                log.warning("worker cannot reach the store", extra={"error": exc.message})
            except Exception:
                log.exception("worker iteration failed")
            if claimed or self._stopping:
                continue
            timeout = self.settings.poll_interval
            if self._fill_due is not None:
                timeout = min(timeout, max(0.0, self._fill_due - _loop_time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    async def _fill(self) -> int:
        """Claim as many items as there is room for, and start them. While items are in hand,
        a claim waits (at most FILL_WINDOW) until half the room is free: one claim (and one
        prepare) for many items, instead of one per item as each one finishes."""
        room = self.settings.concurrency - len(self._inflight)
        if room <= 0:
            return 0
        now = _loop_time()
        half = min(self.settings.batch, self.settings.concurrency) // 2
        if self._inflight and room < half and now - self._last_fill < FILL_WINDOW:
            self._fill_due = self._last_fill + FILL_WINDOW
            return 0
        self._fill_due = None
        self._last_fill = now
        items = await self.store.claim(
            worker=self.name,
            now=self.clock.now(),
            lease=self.settings.lease,
            limit=min(room, self.settings.batch),
        )
        items = await self._quarantine(items)
        if items and self.prepare is not None:
            await self.prepare(items)
        for item in items:
            task = asyncio.create_task(self._handle(item), name=f"inbox-{item.id}")
            self._inflight[item.id] = task
            task.add_done_callback(functools.partial(self._done, item.id))
        return len(items)

    async def _quarantine(self, items: list[InboxItem]) -> list[InboxItem]:
        """The claimed items to process; those claimed more than ``max_attempts`` times are
        quarantined instead (see the module's docstring)."""
        limit = self.settings.max_attempts
        if all(item.attempts <= limit for item in items):
            return items
        keep = []
        for item in items:
            if item.attempts <= limit:
                keep.append(item)
                continue
            now = self.clock.now()
            event = Event(
                type=ALERT_POISONED, time=now, severity="high", fingerprint=item.fingerprint,
                alertname=item.alertname[:200], status=item.status, outcome="poisoned",
                actor="worker", message=f"claimed {item.attempts - 1} times without being done; "
                "quarantined, never claimed again",
                details={"inbox": item.id, "attempts": item.attempts - 1,
                         "episode": item.episode_id},
            )  # fmt: skip
            if await self.store.poison(item.id, now=now, events=[event]):
                self.metrics.alerts_poisoned.inc()
                self.metrics.inbox_pending.dec()
                log.error("alert quarantined", extra={"item": item.id, "attempts": item.attempts})
        return keep

    def _done(self, item_id: int, _task: asyncio.Task[None]) -> None:
        self._inflight.pop(item_id, None)
        self._wake.set()

    async def _renew(self) -> None:
        if self._inflight:
            await self.store.extend_leases(
                list(self._inflight), worker=self.name, until=self.clock.now() + self.settings.lease
            )
        self.metrics.inbox_pending.set(await self.store.pending_count())

    async def _handle(self, item: InboxItem) -> None:
        with self.tracing.span(
            "decision",
            traceparent=item.trace_context,  # the intake's (remediator/http/intake.py)
            attributes={
                "inbox.id": item.id,
                "episode": item.episode_id,
                "alert.status": item.status,
                "alertname": bounded(item.alertname) if self.tracing.enabled else "",
            },
        ):
            self.tracing.note_decision(item.episode_id)
            await self._handle_traced(item)

    async def _handle_traced(self, item: InboxItem) -> None:
        try:
            events, outcome = await self.process(item)
            if outcome != COMPLETED:
                await self.store.complete(item.id, events=events, outcome=outcome)
            elif events:  # not expected: recorded all the same, after the completion
                await self.store.append(events)
            self.metrics.inbox_pending.dec()
        except StoreUnavailable as exc:
            log.warning(
                "item not completed; it will be retried",
                extra={"item": item.id, "error": exc.message},
            )
        except Exception:
            log.exception("processing failed; the item will be retried", extra={"item": item.id})

    async def run_once(self) -> int:
        """Claim one batch, process it to the end; the number of items handled (for tests)."""
        items = await self.store.claim(
            worker=self.name,
            now=self.clock.now(),
            lease=self.settings.lease,
            limit=self.settings.batch,
        )
        items = await self._quarantine(items)
        if items and self.prepare is not None:
            await self.prepare(items)
        await asyncio.gather(*(self._handle(item) for item in items))
        return len(items)
