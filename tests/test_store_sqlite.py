"""The SQLite store against a real database file: durability settings, dedup, chain, restart."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from remediator.alerts import WebhookPayload
from remediator.events import GENESIS_HASH, record_hash
from remediator.store import EventQuery, create_store
from remediator.store.schema import SQLITE_MIGRATIONS
from tests.conftest import fixture_payload


def _alerts(name: str) -> WebhookPayload:
    return WebhookPayload.model_validate(fixture_payload(name))


def test_wal_and_full_sync(tmp_path: Path) -> None:
    async def main() -> tuple[str, int]:
        store = create_store(f"sqlite:///{tmp_path}/s.db")
        await store.open()
        mode = (await store.raw("PRAGMA journal_mode"))[0][0]
        await store.close()
        conn = sqlite3.connect(tmp_path / "s.db")
        conn.close()
        return mode, 0

    mode, _ = asyncio.run(main())
    assert mode == "wal"
    # synchronous is per connection: check the writer's setting through the module.
    from remediator.store.sqlite_writer import connect as _connect

    conn = _connect(tmp_path / "s.db")
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    conn.close()


def test_concurrent_duplicates_queue_once_and_chain_links(tmp_path: Path) -> None:
    payload = _alerts("grouped.json")

    async def main() -> None:
        store = create_store(f"sqlite:///{tmp_path}/s.db")
        await store.open()
        results = await asyncio.gather(
            *[
                store.ingest(
                    list(payload.alerts), received_at=1000.0 + i, receiver="r", group_key="g"
                )
                for i in range(30)
            ]
        )
        assert sum(r.new for r in results) == len(payload.alerts)
        assert sum(r.duplicates for r in results) == 29 * len(payload.alerts)
        assert await store.pending_count() == len(payload.alerts)
        events = list(reversed(await store.events(EventQuery(limit=1000))))
        prev = GENESIS_HASH
        for event in events:
            assert event.prev_hash == prev
            assert record_hash(event) == event.hash
            prev = event.hash
        await store.close()

    asyncio.run(main())


def test_state_survives_reopen_and_migrations_are_idempotent(tmp_path: Path) -> None:
    payload = _alerts("mixed_firing_resolved.json")

    async def main() -> None:
        store = create_store(f"sqlite:///{tmp_path}/s.db")
        await store.open()
        await store.ingest(list(payload.alerts), received_at=1.0, receiver="r", group_key="g")
        await store.close()
        again = create_store(f"sqlite:///{tmp_path}/s.db")
        await again.open()
        assert await again.schema_version() == len(SQLITE_MIGRATIONS)
        result = await again.ingest(
            list(payload.alerts), received_at=2.0, receiver="r", group_key="g"
        )
        assert result.new == 0 and result.duplicates == 3
        await again.close()

    asyncio.run(main())


def test_claim_leases_and_complete(tmp_path: Path) -> None:
    payload = _alerts("grouped.json")

    async def main() -> None:
        store = create_store(f"sqlite:///{tmp_path}/s.db")
        await store.open()
        await store.ingest(list(payload.alerts), received_at=1.0, receiver="r", group_key="g")
        first = await store.claim(worker="a", now=10.0, lease=30.0, limit=10)
        assert len(first) == len(payload.alerts)
        assert await store.claim(worker="b", now=20.0, lease=30.0, limit=10) == []
        # The lease expired: another worker takes the items over.
        taken = await store.claim(worker="b", now=41.0, lease=30.0, limit=10)
        assert [i.id for i in taken] == [i.id for i in first]
        assert taken[0].attempts == 2
        for item in taken:
            await store.complete(item.id, events=[], outcome="seen")
        assert await store.pending_count() == 0
        assert await store.claim(worker="c", now=100.0, lease=30.0, limit=10) == []
        await store.close()

    asyncio.run(main())


def test_priority_orders_the_queue(tmp_path: Path) -> None:
    payload = fixture_payload("firing_single.json")
    warn = dict(
        payload["alerts"][0], fingerprint="aaaa", labels={"alertname": "A", "severity": "warning"}
    )
    crit = dict(
        payload["alerts"][0], fingerprint="bbbb", labels={"alertname": "B", "severity": "critical"}
    )
    body = WebhookPayload.model_validate(dict(payload, alerts=[warn, crit]))

    async def main() -> None:
        store = create_store(f"sqlite:///{tmp_path}/s.db")
        await store.open()
        await store.ingest(list(body.alerts), received_at=1.0, receiver="r", group_key="g")
        items = await store.claim(worker="a", now=2.0, lease=30.0, limit=10)
        assert [i.fingerprint for i in items] == ["bbbb", "aaaa"]
        await store.close()

    asyncio.run(main())
