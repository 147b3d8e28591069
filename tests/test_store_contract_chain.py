"""The store contract, run against every backend (see test_store_contract.py): the
notification outbox, event queries, the chain's anchor, the recording policy, subscribers."""

from __future__ import annotations

import asyncio

from remediator.audit.events import GENESIS_HASH, Event
from remediator.audit.recording import OutboxRow, Recording
from remediator.engine.verifier import verify_store
from remediator.store import EventQuery, Store
from tests.engine_harness import alert
from tests.store_helpers import chain_ok, event, run, store_url

__all__ = ["store_url"]  # the fixture


# -- outbox and the chain --------------------------------------------------------------------


def _router(event: Event) -> list[OutboxRow]:
    if not event.fingerprint:
        return []
    return [OutboxRow("slack", "#ops", event.fingerprint, event.status, {"m": event.message},
                      dedupe_key=f"{event.fingerprint}:{event.status}")]  # fmt: skip


def test_outbox_claims_one_incident_message_at_a_time(store_url: str) -> None:
    async def body(store: Store) -> None:
        await store.append([event(1, fingerprint="i1", status="firing"),
                            event(2, fingerprint="i2", status="firing"),
                            event(3, fingerprint="i1", status="resolved"),
                            event(4, fingerprint="i1", status="resolved")])  # fmt: skip
        assert await store.outbox_pending() == 3  # the repeat's dedupe key is ignored
        first = await store.claim_outbox(worker="a", now=1003.0, lease=30.0, limit=10)
        assert [(i.incident, i.phase) for i in first] == [("i1", "firing"), ("i2", "firing")]
        assert first[0].payload == {"m": "event 1"}
        assert await store.claim_outbox(worker="b", now=1004.0, lease=30.0, limit=10) == []
        await store.outbox_retry(first[0].id, next_at=1100.0, error="503")
        await store.outbox_sent(first[1].id, now=1005.0, events=[])
        assert await store.claim_outbox(worker="b", now=1050.0, lease=30.0, limit=10) == []
        [again] = await store.claim_outbox(worker="b", now=1100.0, lease=30.0, limit=10)
        assert (again.id, again.attempts) == (first[0].id, 1)
        await store.outbox_dead(again.id, now=1101.0, error="gone", events=[event(9)])
        [resolved] = await store.claim_outbox(worker="b", now=1102.0, lease=30.0, limit=10)
        assert (resolved.incident, resolved.phase) == ("i1", "resolved")
        assert await store.outbox_states() == {"pending": 1, "sent": 1, "dead": 1}
        assert await store.slack_thread("i1", "#ops") is None
        await store.save_slack_thread("i1", "#ops", channel="C1", ts="1.0")
        await store.save_slack_thread("i1", "#ops", channel="C1", ts="2.0")
        assert await store.slack_thread("i1", "#ops") == ("C1", "2.0")

    run(store_url, body, Recording(route=_router))


def test_event_queries_paging_and_anchor(store_url: str) -> None:
    async def body(store: Store) -> None:
        anchor = await store.audit_anchor()
        assert (anchor.checkpoint_id, anchor.checkpoint_hash) == (0, GENESIS_HASH)
        assert await store.events_after(0, 10) == []
        appended = await store.append([event(n, target="web" if n % 2 else "db", severity="critical" if n == 3 else "info") for n in range(1, 8)])  # fmt: skip
        assert [e.id for e in appended] == list(range(1, 8))
        anchor = await store.audit_anchor()
        assert (anchor.head_id, anchor.head_hash) == (7, appended[-1].hash)
        assert [e.id for e in await store.events_after(2, 3)] == [3, 4, 5]
        assert [e.id for e in await store.events(EventQuery(target="web"))] == [7, 5, 3, 1]
        assert [e.id for e in await store.events(EventQuery(severity="critical"))] == [3]
        assert [e.id for e in await store.events(EventQuery(since=1002.0, until=1004.0))] == [
            4,
            3,
            2,
        ]
        assert [e.id for e in await store.events(EventQuery(before_id=3, type="test:event"))] == [
            2,
            1,
        ]
        assert [e.id for e in await store.events(EventQuery(limit=2))] == [7, 6]
        assert await store.events_after(0, 10) == appended
        await chain_ok(store)

    run(store_url, body)


def test_redaction_and_sealing_apply_before_the_chain(store_url: str) -> None:
    from cryptography.fernet import Fernet

    recording = Recording(secrets=("hunter2",), cipher=Fernet(Fernet.generate_key()))

    async def body(store: Store) -> None:
        [appended] = await store.append([event(1, details={"dsn": "x:hunter2@h"})])
        assert "hunter2" not in appended.details["dsn"]
        [stored] = await store.events_after(0, 1)
        assert stored == appended
        assert (await verify_store(store)).ok
        store.configure(Recording())
        [sealed] = await store.events_after(0, 1)
        assert sealed.message.startswith("enc:")
        verdict = await verify_store(store)
        assert not verdict.ok and "key is not available" in verdict.problem

    run(store_url, body, recording)


def test_subscribers_get_each_commit_in_order(store_url: str) -> None:
    async def body(store: Store) -> None:
        seen: list[list[Event]] = []
        store.subscribe(seen.append)
        await asyncio.gather(*[store.append([event(2 * n), event(2 * n + 1)]) for n in range(20)])
        await store.ingest([alert("s")], received_at=1.0, receiver="r", group_key="g")
        await store.claim(worker="w", now=2.0, lease=30.0, limit=10)  # chains its arrival
        await asyncio.sleep(0)
        ids = [e.id for batch in seen for e in batch]
        assert ids == list(range(1, 42))

    run(store_url, body)
