"""The worker's completion contract, on every backend: it completes what its processor
returns, leaves to the processor an item the processor completed itself (outcome
``COMPLETED``), and completes nothing when processing raised (the item comes back after its
lease). Each item done decrements ``remediator_inbox_pending`` once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from remediator.audit.events import Event, EventBus
from remediator.clock import FakeClock
from remediator.config.model import WorkerConfig
from remediator.engine.worker import COMPLETED, Outcome, Worker
from remediator.metrics import Metrics
from remediator.store import EventQuery, InboxItem, Store
from tests.engine_harness import alert
from tests.store_helpers import event, run, store_url

__all__ = ["store_url"]  # the fixture

Processor = Callable[[InboxItem], Awaitable[Outcome]]


def _worker(store: Store, clock: FakeClock, metrics: Metrics, process: Processor) -> Worker:
    settings = WorkerConfig(lease=30.0, batch=10, concurrency=10)
    return Worker(
        store=store,
        metrics=metrics,
        clock=clock,
        bus=EventBus(),
        settings=settings,
        process=process,
        name="w",
    )


def _pending(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("remediator_inbox_pending") or 0.0


async def _outcomes(store: Store) -> list[tuple[object, ...]]:
    return sorted(await store.raw("SELECT fingerprint, state, outcome FROM inbox"))


def test_an_item_completed_by_its_processor_is_not_completed_again(store_url: str) -> None:
    async def body(store: Store) -> None:
        clock, metrics = FakeClock(), Metrics()
        completes: list[int] = []
        complete = store.complete

        async def counting(item_id: int, *, events: list[Event], outcome: str) -> list[Event]:
            completes.append(item_id)
            return await complete(item_id, events=events, outcome=outcome)

        store.complete = counting  # type: ignore[method-assign]

        async def process(item: InboxItem) -> Outcome:
            if item.fingerprint == "self":  # completes in its own last write, like the engine
                rid = await store.start_remediation(playbook="p", fingerprint=item.fingerprint, episode_id=item.episode_id, target="t", now=clock.now())  # fmt: skip
                assert rid is not None
                await store.finish_remediation(
                    rid,
                    state="succeeded",
                    now=clock.now(),
                    attempts=1,
                    events=[event(1, fingerprint=item.fingerprint)],
                    complete_item=(item.id, "decided"),
                )
                return [], COMPLETED
            return [event(2, fingerprint=item.fingerprint)], "seen"

        await store.ingest([alert("self"), alert("plain")], received_at=clock.now(), receiver="r", group_key="g")  # fmt: skip
        worker = _worker(store, clock, metrics, process)
        assert await worker.run_once() == 2
        assert await _outcomes(store) == [("plain", "done", "seen"), ("self", "done", "decided")]
        [plain] = await store.raw("SELECT id FROM inbox WHERE fingerprint = 'plain'")
        assert completes == [plain[0]]
        assert _pending(metrics) == -2  # one decrement per item
        assert await store.pending_count() == 0
        assert await worker.run_once() == 0
        clock.advance(3600)
        assert await worker.run_once() == 0  # done is done: never claimed again
        recorded = await store.events(EventQuery(type="test:event"))
        assert sorted(e.fingerprint for e in recorded) == ["plain", "self"]

    run(store_url, body)


def test_an_item_whose_processing_raised_is_retried_after_its_lease(store_url: str) -> None:
    async def body(store: Store) -> None:
        clock, metrics = FakeClock(), Metrics()
        attempts: list[int] = []

        async def process(item: InboxItem) -> Outcome:
            attempts.append(item.attempts)
            if len(attempts) == 1:
                raise RuntimeError("boom")
            return [], "seen"

        await store.ingest([alert("x")], received_at=clock.now(), receiver="r", group_key="g")
        worker = _worker(store, clock, metrics, process)
        assert await worker.run_once() == 1
        assert await store.pending_count() == 1 and _pending(metrics) == 0
        assert await worker.run_once() == 0  # still leased
        clock.advance(31)
        assert await worker.run_once() == 1
        assert attempts == [1, 2]
        assert await _outcomes(store) == [("x", "done", "seen")]
        assert _pending(metrics) == -1

    run(store_url, body)


def test_a_wake_up_during_a_claim_is_not_lost(store_url: str) -> None:
    """An alert committed while a claim is in flight (the claim read the inbox before it) wakes
    the worker again at once, not after ``worker.poll_interval``."""

    async def body(store: Store) -> None:
        clock, metrics = FakeClock(), Metrics()
        seen: list[str] = []
        arrived = asyncio.Event()

        async def process(item: InboxItem) -> Outcome:
            seen.append(item.fingerprint)
            arrived.set()
            return [], "seen"

        worker = Worker(
            store=store,
            metrics=metrics,
            clock=clock,
            bus=EventBus(),
            settings=WorkerConfig(poll_interval=60.0, lease=30.0, batch=10, concurrency=10),
            process=process,
            name="w",
        )
        claim = store.claim
        claims = 0

        async def racing(**kwargs: Any) -> list[InboxItem]:
            nonlocal claims
            claims += 1
            items = await claim(**kwargs)
            if claims == 1:  # the alert lands after this claim read the inbox, as the intake's
                await store.ingest([alert("late")], received_at=clock.now(), receiver="r", group_key="g")  # fmt: skip
                worker.wake()
            return items

        store.claim = racing  # type: ignore[method-assign]
        await worker.start()
        try:
            await asyncio.wait_for(arrived.wait(), timeout=10.0)  # poll_interval is 60 s
        finally:
            await worker.stop()
        assert seen == ["late"]

    run(store_url, body)
