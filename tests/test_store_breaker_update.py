"""The store contract of ``update_breaker``, on both backends: the breaker's row is read, a pure
change (the domain's, remediator/engine/guards.py) computes the next row, a result and the events, and
the store saves the row and appends the events in one commit; of concurrent updates from
several stores on one database (replicas), each sees the row the one before it saved."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from remediator.audit.events import Event
from remediator.store import Store
from remediator.store.records import BreakerState
from tests.store_helpers import chain_ok, opened, run, store_url

__all__ = ["store_url"]  # the fixture


def opened_event(state: BreakerState) -> list[Event]:
    return [Event(type="breaker:opened", time=5.0, target=state.target, message="opened")]


def test_an_update_saves_the_changed_row_and_appends_its_events(store_url: str) -> None:
    seen: list[BreakerState] = []

    def open_it(current: BreakerState) -> tuple[BreakerState, str, list[Event]]:
        seen.append(current)
        after = replace(current, state="open", failures=3, opened_at=5.0)
        return after, "opened", opened_event(after)

    def count(current: BreakerState) -> tuple[BreakerState, int, list[Event]]:
        seen.append(current)
        return replace(current, failures=current.failures + 1), current.failures, []

    async def body(store: Store) -> None:
        assert await store.update_breaker("web", open_it, now=5.0) == "opened"
        assert seen == [BreakerState(target="web")]
        after = BreakerState("web", "open", 3, 5.0, 0)
        assert await store.breaker("web") == after
        assert await store.update_breaker("web", count, now=6.0) == 3
        assert seen[1] == after
        assert await store.breakers() == [replace(after, failures=4)]
        recorded = await chain_ok(store)
        assert [(e.type, e.target) for e in recorded] == [("breaker:opened", "web")]

    run(store_url, body)


def test_concurrent_updates_from_several_stores_each_see_the_last_saved_row(
    store_url: str,
) -> None:
    def add_trial(current: BreakerState) -> tuple[BreakerState, int, list[Event]]:
        return replace(current, trials=current.trials + 1), current.trials, []

    async def main() -> None:
        async with opened(store_url) as first, opened(store_url) as second:
            stores = [first, second] * 10
            answers = await asyncio.gather(
                *(store.update_breaker("db", add_trial, now=1.0) for store in stores)
            )
            assert sorted(answers) == list(range(20))
            assert (await first.breaker("db")).trials == 20

    asyncio.run(main())
