"""The store contract for silences, run against every backend (see test_store_contract.py):
a row per reason, added and dropped with its event in one commit, the first one kept."""

from __future__ import annotations

from remediator.store import EventQuery, Store
from remediator.store.silences import StoredSilence
from tests.store_helpers import chain_ok, event, run, store_url

__all__ = ["store_url"]  # the fixture


def test_silences_are_kept_one_per_reason_with_their_events(store_url: str) -> None:
    async def body(store: Store) -> None:
        assert await store.silences() == []
        first = StoredSilence("remediation:1", "id-a", 1000.0, 4600.0)
        assert await store.add_silence(first, events=[event(1)])
        # a second silence for the same reason is refused, and its event not recorded
        again = StoredSilence("remediation:1", "id-b", 1001.0, 4601.0)
        assert not await store.add_silence(again, events=[event(2)])
        other = StoredSilence("quarantine:web:1000", "id-c", 1002.0, 4602.0)
        assert await store.add_silence(other, events=[event(3)])
        assert await store.silences() == [other, first]  # by key
        assert not await store.drop_silence("remediation:1", "id-b", events=[event(4)])
        assert await store.drop_silence("remediation:1", "id-a", events=[event(5)])
        assert not await store.drop_silence("remediation:1", "id-a", events=[event(6)])
        assert await store.silences() == [other]
        found = await store.events(EventQuery(limit=100))
        assert sorted(e.message for e in found) == ["event 1", "event 3", "event 5"]
        await chain_ok(store)

    run(store_url, body)
