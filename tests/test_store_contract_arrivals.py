"""Arrivals (remediator/store/arrivals.py): intake commits the inbox row only; the claim chains
each queued alert's ``alert:received`` / ``alert:resolved``, once, in inbox order, before the
item is handed out. Both backends; the replica cases on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter

import psycopg
import pytest

from remediator.audit.events import ALERT_DUPLICATE, ALERT_RECEIVED, ALERT_RESOLVED
from remediator.store import Store
from tests.engine_harness import alert
from tests.store_helpers import chain_ok, event, opened, pg_query, run, store_url

__all__ = ["store_url"]


def test_an_arrival_is_chained_by_the_first_claim_before_its_item_is_handed_out(
    store_url: str,
) -> None:
    async def body(store: Store) -> None:
        stored = await store.ingest(
            [alert("x"), alert("y"), alert("z", status="resolved", ends=1_800_000_060.0)],
            received_at=10.0, receiver="am", group_key="g",
        )  # fmt: skip
        assert (stored.new, stored.events) == (3, [])
        assert await chain_ok(store) == []  # nothing half-written: absent until chained
        [first] = await store.claim(worker="w", now=11.0, lease=30.0, limit=1)
        chained = await chain_ok(store)
        assert [(e.type, e.fingerprint) for e in chained] == [
            (ALERT_RECEIVED, "x"), (ALERT_RECEIVED, "y"), (ALERT_RESOLVED, "z"),
        ]  # fmt: skip
        assert first.fingerprint == "x" and chained[0].details["episode"] == first.episode_id
        assert {(e.time, e.actor, e.severity) for e in chained} == {(10.0, "alertmanager:am", "warning")}  # fmt: skip
        assert chained[0].message == "ContainerMemoryHigh firing"
        rest = await store.claim(worker="w", now=12.0, lease=30.0, limit=10)
        assert sorted(i.fingerprint for i in rest) == ["y", "z"]
        assert len(await chain_ok(store)) == 3  # chained once, whatever claims follow

    run(store_url, body)


def test_a_recorded_repeat_follows_its_alerts_arrival_in_the_chain(store_url: str) -> None:
    async def body(store: Store) -> None:
        await store.ingest([alert("f")], received_at=10.0, receiver="r", group_key="g")
        await store.append([event(1)])
        again = await store.ingest([alert("f")], received_at=11.0, receiver="r", group_key="g")
        assert [e.type for e in again.events] == [ALERT_RECEIVED, ALERT_DUPLICATE]
        assert [e.type for e in await chain_ok(store)] == ["test:event", ALERT_RECEIVED, ALERT_DUPLICATE]  # fmt: skip
        [item] = await store.claim(worker="w", now=12.0, lease=30.0, limit=10)
        assert item.fingerprint == "f"
        assert len(await chain_ok(store)) == 3

    run(store_url, body)


@pytest.mark.postgres
def test_intake_on_postgres_never_waits_for_the_chain_heads_lock(pg_database: str) -> None:
    """While another transaction holds the audit chain's head row (a replica appending), a
    webhook's new alerts still commit; the claim chains them once the head is free."""

    async def main() -> None:
        async with opened(pg_database) as store:
            await store.append([event(1)])  # the head row exists
            with psycopg.connect(pg_database) as holder:
                holder.execute("SELECT last_id FROM audit_head WHERE id = 1 FOR UPDATE")
                stored = await asyncio.wait_for(
                    store.ingest([alert("a"), alert("b")], received_at=5.0, receiver="r", group_key="g"),
                    timeout=5.0,
                )  # fmt: skip
                assert stored.new == 2
                holder.rollback()
            items = await store.claim(worker="w", now=6.0, lease=30.0, limit=10)
            assert sorted(i.fingerprint for i in items) == ["a", "b"]
            assert [e.type for e in await chain_ok(store)] == ["test:event", ALERT_RECEIVED, ALERT_RECEIVED]  # fmt: skip

    asyncio.run(main())


@pytest.mark.postgres
def test_replicas_chain_every_arrival_once_in_inbox_order(pg_database: str) -> None:
    """Three replicas take notifications and claim at the same time: every queued alert's
    arrival is chained exactly once, in the order the rows committed, and the chain verifies."""

    async def main() -> None:
        async with opened(pg_database) as a, opened(pg_database) as b, opened(pg_database) as c:
            replicas = [a, b, c]

            async def post(n: int) -> None:
                batch = [alert(f"fp{n:03d}-{k}") for k in range(3)]
                await replicas[n % 3].ingest(batch, received_at=float(n), receiver="r", group_key="g")  # fmt: skip

            await asyncio.gather(*[post(n) for n in range(30)])
            assert await chain_ok(a) == []  # intake chained nothing

            claimed: list[str] = []

            async def work(store: Store, name: str) -> None:
                for _ in range(200):
                    items = await store.claim(worker=name, now=100.0, lease=60.0, limit=7)
                    claimed.extend(i.fingerprint for i in items)
                    if not items:
                        return

            posting = asyncio.gather(*[post(n) for n in range(30, 60)])
            await asyncio.gather(posting, *[work(s, f"w{i}") for i, s in enumerate(replicas)])
            await asyncio.gather(*[work(s, f"w{i}") for i, s in enumerate(replicas)])
            events = await chain_ok(a)
            arrivals = [e.fingerprint for e in events if e.type == ALERT_RECEIVED]
            assert len(arrivals) == 180 and Counter(arrivals).most_common(1)[0][1] == 1
            assert sorted(claimed) == sorted(arrivals)
            # the alerts committed before the first claim come first, in inbox id order (later
            # ones in the order their intakes committed: ids are taken before the commit)
            order = {fp: i for i, fp in pg_query(pg_database, "SELECT id, fingerprint FROM inbox")}
            assert arrivals[:90] == sorted(arrivals[:90], key=order.__getitem__)
            assert {fp[:5] for fp in arrivals[:90]} == {f"fp{n:03d}" for n in range(30)}
            assert pg_query(pg_database, "SELECT count(*) FROM inbox WHERE chain_pending = 1") == [(0,)]  # fmt: skip

    asyncio.run(main())


def test_an_alert_queued_behind_a_storms_backlog_is_chained_and_claimed_first(
    store_url: str,
) -> None:
    async def body(store: Store) -> None:
        storm = [alert(f"s{n:03d}") for n in range(300)]  # one notification: a storm's priority
        await store.ingest(storm, received_at=1.0, receiver="r", group_key="storm")
        await store.ingest([alert("real", severity="critical")], received_at=2.0, receiver="r", group_key="g")  # fmt: skip
        [first] = await store.claim(worker="w", now=3.0, lease=30.0, limit=1)
        assert first.fingerprint == "real"
        chained = await chain_ok(store)
        assert chained[0].fingerprint == "real" and chained[0].severity == "critical"
        assert len(chained) == 200  # one claim's batch; the rest wait for the next claims
        assert [e.fingerprint for e in chained[1:]] == [f"s{n:03d}" for n in range(199)]
        while await store.claim(worker="w", now=4.0, lease=30.0, limit=100):
            pass
        assert len(await chain_ok(store)) == 301

    run(store_url, body)
