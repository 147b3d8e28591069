"""A poison alert is quarantined, never retried for ever (issue 18, item 2).

An alert whose processing fails, overruns its lease, or dies with the process (kill -9 during
the decision) is claimed again; each claim is counted on its inbox row in the claim's own
commit. After ``worker.max_attempts`` claims it is quarantined: ``alert:poisoned``, state
``poisoned``, ``remediator_alerts_poisoned_total``, and ``GET /api/v1/recovery/alerts/poisoned``
lists it — on both backends, and across processes.
"""

from __future__ import annotations

import asyncio

import httpx2 as httpx

from remediator.audit.events import ALERT_POISONED, EventBus
from remediator.clock import FakeClock
from remediator.config.model import WorkerConfig
from remediator.engine.worker import Outcome, Worker
from remediator.metrics import Metrics
from remediator.store import EventQuery, InboxItem, Store
from tests.engine_harness import alert
from tests.reliability.conftest import Figures, Serve
from tests.reliability.support import db_rows
from tests.store_helpers import opened, store_url  # noqa: F401  (the fixture)

MAX_ATTEMPTS = 3
LEASE = 30.0


def _worker(store: Store, clock: FakeClock, metrics: Metrics, name: str) -> Worker:
    async def fails(item: InboxItem) -> Outcome:
        if item.fingerprint == "poison":
            raise RuntimeError("a decision that fails every time")
        return [], "seen"

    settings = WorkerConfig(lease=LEASE, batch=10, concurrency=10, max_attempts=MAX_ATTEMPTS)
    return Worker(
        store=store, metrics=metrics, clock=clock, bus=EventBus(), settings=settings,
        process=fails, name=name,
    )  # fmt: skip


async def _poison(url: str, clock: FakeClock, metrics: Metrics) -> tuple[int, list[int]]:
    """A failing alert beside a good one: each claim a new worker (a restarted process) after
    the lease of the last one ran out; the good one is done at the first claim."""
    handled: list[int] = []
    async with opened(url) as store:
        await store.ingest(
            [alert("poison"), alert("good")],
            received_at=clock.now(),
            receiver="r",
            group_key="g",
        )
    for attempt in range(MAX_ATTEMPTS + 2):
        async with opened(url) as store:  # a fresh process: nothing of the last one survives
            worker = _worker(store, clock, metrics, f"w{attempt}")
            handled.append(await worker.run_once())
        clock.advance(LEASE + 1)
    async with opened(url) as store:
        [found] = await store.poisoned()
        return found.id, handled


def test_an_alert_that_fails_every_time_is_quarantined_after_max_attempts(
    store_url: str,  # noqa: F811
    figures: Figures,
) -> None:
    clock = FakeClock(1_800_000_000.0)
    metrics = Metrics()
    poisoned, handled = asyncio.run(_poison(store_url, clock, metrics))
    # Claimed MAX_ATTEMPTS times (the good item with the first), then never handled again.
    assert handled == [2, 1, 1, 0, 0]
    assert metrics.registry.get_sample_value("remediator_alerts_poisoned_total") == 1

    async def check() -> None:
        async with opened(store_url) as store:
            [event] = await store.events(EventQuery(type=ALERT_POISONED))
            assert event.fingerprint == "poison"
            assert event.details["inbox"] == poisoned
            assert event.details["attempts"] == MAX_ATTEMPTS
            assert await store.pending_count() == 0

    asyncio.run(check())
    figures(max_attempts=MAX_ATTEMPTS, claims=handled)


def test_the_api_lists_poisoned_alerts_to_a_viewer(serve: Serve) -> None:
    served = serve({"health": {"enabled": False}, "worker": {"max_attempts": MAX_ATTEMPTS}})
    url = f"sqlite:///{served.db_path}"
    served.terminate()
    clock = FakeClock(1_800_000_000.0)
    asyncio.run(_poison(url, clock, Metrics()))
    served.start()
    answer = httpx.get(
        served.url + "/api/v1/recovery/alerts/poisoned", headers=served.headers("viewer"), timeout=5
    )
    assert answer.status_code == 200
    [item] = answer.json()["poisoned"]
    assert item["fingerprint"] == "poison"
    assert item["attempts"] == MAX_ATTEMPTS + 1  # the claim that quarantined it counts too
    assert item["poisoned_at"].endswith("Z")
    [(state,)] = db_rows(served.db_path, "SELECT state FROM inbox WHERE fingerprint = 'poison'")
    assert state == "poisoned"
    anonymous = httpx.get(served.url + "/api/v1/recovery/alerts/poisoned", timeout=5)
    assert anonymous.status_code == 401
