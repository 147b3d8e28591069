"""PostgreSQL group commit (remediator/store/postgres_batch.py), on the real server: the writes
of one replica queued together commit in one transaction, each in its savepoint, the chain's
head taken once per batch; three replicas writing at once still make one chain; a failing job
rolls back alone; the webhook's write never waits behind more than one batch."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import pytest

from remediator.audit.events import Event
from remediator.errors import StoreUnavailable
from remediator.store import Store
from remediator.store.lanes import urgent
from tests.engine_harness import alert
from tests.store_helpers import chain_ok, event, opened, pg_query

pytestmark = pytest.mark.postgres
BATCH = 64  # remediator/store/postgres_batch.py: MAX_JOBS, the most jobs of one batch


def _commits(url: str, kind: str) -> int:
    """How many transactions committed the events of type ``kind``."""
    [(count,)] = pg_query(url, "SELECT count(DISTINCT xmin::text) FROM events WHERE type = %s", (kind,))  # fmt: skip
    return int(count)


def test_three_replicas_writing_at_once_make_one_chain_with_each_remediation_in_order(
    pg_database: str,
) -> None:
    """Three stores on one database, each running 12 remediations of 6 steps at once (each
    step awaited before the next, as a worker does): one chain that verifies, every step once,
    each remediation's steps in order; the replicas' steps shared their commits."""

    async def main() -> None:
        async with opened(pg_database) as a, opened(pg_database) as b, opened(pg_database) as c:

            async def remediation(store: Store, name: str) -> None:
                for step in range(6):
                    await store.append([event(step, target=name, action=f"step-{step}")])

            await asyncio.gather(
                *[remediation(s, f"r{i}-{n}") for i, s in enumerate((a, b, c)) for n in range(12)]
            )
            chained = await chain_ok(a)

        steps: dict[str, list[str]] = defaultdict(list)
        for e in chained:
            steps[e.target].append(e.action)
        assert len(chained) == 3 * 12 * 6
        assert all(done == [f"step-{k}" for k in range(6)] for done in steps.values())
        assert len(steps) == 36
        # 216 appends in far fewer commits: each replica's steps queued together shared one
        assert _commits(pg_database, "test:event") <= 216 // 3

    asyncio.run(main())


def test_a_failing_job_rolls_back_alone_while_its_batch_mates_commit(pg_database: str) -> None:
    """Five appends and a completion whose outcome the server refuses (a NUL byte), queued at
    once: the completion fails alone (its item still pending, its event absent); the five
    appends commit, together."""

    async def main() -> None:
        async with opened(pg_database) as store:
            await store.ingest([alert("f")], received_at=1.0, receiver="r", group_key="g")
            [item] = await store.claim(worker="w", now=2.0, lease=60.0, limit=1)
            results = await asyncio.gather(
                *[store.append([event(n)]) for n in range(5)],
                store.complete(item.id, events=[event(9, target="bad")], outcome="done\x00"),
                return_exceptions=True,
            )
            assert isinstance(results[-1], StoreUnavailable)
            assert all(isinstance(r, list) and len(r) == 1 and r[0].id for r in results[:5])
            chained = await chain_ok(store)
            assert sorted(e.message for e in chained if e.type == "test:event") == [
                f"event {n}" for n in range(5)
            ]
            assert [i.id for i in await store.claim(worker="w", now=100.0, lease=60.0, limit=5)] == [item.id]  # fmt: skip
        assert _commits(pg_database, "test:event") == 1

    asyncio.run(main())


def test_the_webhooks_write_waits_for_at_most_one_batch(pg_database: str) -> None:
    """A worker's backlog of 600 appends is queued; a webhook's repeat (which appends too) made
    meanwhile commits before more than two batches of the backlog did. (Main has this property
    too, with one transaction per write: a guard.)"""

    async def main() -> None:
        async with opened(pg_database) as store:
            await store.ingest([alert("f")], received_at=1.0, receiver="r", group_key="g")
            backlog = [asyncio.ensure_future(store.append([event(n)])) for n in range(600)]
            await asyncio.sleep(0.01)  # the first batch is running
            started = time.perf_counter()
            with urgent():
                again = await store.ingest(
                    [alert("f")], received_at=2.0, receiver="r", group_key="g"
                )
            took = time.perf_counter() - started
            done = sum(f.done() for f in backlog)
            await asyncio.gather(*backlog)
            assert again.duplicates == 1 and [e.type for e in again.events][-1] == "alert:duplicate"
            assert done <= 2 * BATCH, (done, took)
            assert len(await chain_ok(store)) == 602

    asyncio.run(main())


def test_an_event_the_server_refuses_at_the_batchs_end_fails_its_own_write_only(
    pg_database: str,
) -> None:
    """An appended event carrying a NUL byte (alert text; PostgreSQL's text refuses it) is
    refused when the batch links its events, at its end: that write fails, its batch-mates
    are run again alone and commit. (Main has this property, one transaction per write: a
    guard.)"""

    async def main() -> None:
        async with opened(pg_database) as store:
            results = await asyncio.gather(
                *[store.append([event(n)]) for n in range(3)],
                store.append([Event(type="test:event", time=1.0, message="forged\x00 line")]),
                *[store.append([event(n)]) for n in range(3, 6)],
                return_exceptions=True,
            )
            assert isinstance(results[3], StoreUnavailable)
            assert all(isinstance(r, list) and len(r) == 1 for i, r in enumerate(results) if i != 3)
            chained = await chain_ok(store)
            assert sorted(e.message for e in chained) == [f"event {n}" for n in range(6)]

    asyncio.run(main())
