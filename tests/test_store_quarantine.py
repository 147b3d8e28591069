"""The store contract of lifting a quarantine, on both backends: the quarantined targets are
listed, a lift releases the target and records its events in the same commit, and of several
lifts at once (several stores on one database: replicas) exactly one lifts."""

from __future__ import annotations

import asyncio

from remediator.audit.events import Event
from remediator.store import Store
from remediator.store.records import TargetState
from tests.store_helpers import chain_ok, opened, run, store_url

__all__ = ["store_url"]  # the fixture


def lifted_event(state: TargetState) -> list[Event]:
    return [
        Event(
            type="recovery:quarantine_lifted",
            time=20.0,
            target=state.target,
            actor="alice",
            details={"quarantine_reason": state.quarantine_reason},
        )
    ]


def test_quarantined_targets_are_listed_and_a_lift_releases_one_with_its_event(
    store_url: str,
) -> None:
    async def body(store: Store) -> None:
        assert await store.quarantined_targets() == []
        await store.set_quarantine("web", reason="playbook isolate", now=10.0, events=[])
        await store.set_quarantine("api", reason="playbook isolate", now=11.0, events=[])
        await store.update_target_data("web", {"quarantine_paused": True, "keep": 1}, [])
        listed = await store.quarantined_targets()
        assert [(s.target, s.quarantined_at, s.quarantine_reason) for s in listed] == [
            ("api", 11.0, "playbook isolate"),
            ("web", 10.0, "playbook isolate"),
        ]
        assert listed[1].data == {"quarantine_paused": True, "keep": 1}

        before = await store.lift_quarantine(
            "web", drop=("quarantine_paused",), events_for=lifted_event
        )
        assert before is not None and before.quarantined_at == 10.0
        assert before.data == {"quarantine_paused": True, "keep": 1}
        after = await store.target_state("web")
        assert not after.quarantined and after.quarantine_reason is None
        assert after.data == {"keep": 1}
        assert [s.target for s in await store.quarantined_targets()] == ["api"]
        # Nothing to lift: None, and nothing recorded.
        assert await store.lift_quarantine("web", events_for=lifted_event) is None
        assert await store.lift_quarantine("never-seen", events_for=lifted_event) is None
        [recorded] = await chain_ok(store)
        assert (recorded.type, recorded.target, recorded.actor) == (
            "recovery:quarantine_lifted",
            "web",
            "alice",
        )
        assert recorded.details == {"quarantine_reason": "playbook isolate"}

    run(store_url, body)


def test_of_concurrent_lifts_from_several_stores_exactly_one_lifts(store_url: str) -> None:
    async def main() -> None:
        async with opened(store_url) as first, opened(store_url) as second:
            await first.set_quarantine("web", reason="playbook isolate", now=10.0, events=[])
            stores = [first, second] * 4
            results = await asyncio.gather(
                *[s.lift_quarantine("web", events_for=lifted_event) for s in stores]
            )
            assert sum(r is not None for r in results) == 1
            assert not (await second.target_state("web")).quarantined
            assert len(await chain_ok(first)) == 1

    asyncio.run(main())
