"""The store contract, run against every backend: SQLite (a file) and PostgreSQL (a fresh
database per test on the real server) — intake, claims, remediations, breakers, flags and
targets. The outbox and the event chain are in test_store_contract_chain.py; backend-specific
checks in test_store_sqlite.py and test_store_postgres*.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from remediator.alerts import WebhookPayload
from remediator.audit.events import Event
from remediator.config.model import CircuitBreakerConfig
from remediator.engine.guards import CircuitBreakers, Transition
from remediator.store import Store
from remediator.store.postgres_schema import PG_MIGRATIONS
from remediator.store.records import INTERRUPTED, RUNNING, SUCCEEDED, Remediation
from remediator.store.schema import SQLITE_MIGRATIONS
from tests.conftest import fixture_payload
from tests.engine_harness import alert
from tests.store_helpers import chain_ok, event, opened, run, store_url

__all__ = ["store_url"]  # the fixture


def _alerts(name: str) -> WebhookPayload:
    return WebhookPayload.model_validate(fixture_payload(name))


# -- intake ----------------------------------------------------------------------------------


def test_concurrent_duplicates_queue_once_and_chain_links(store_url: str) -> None:
    payload = _alerts("grouped.json")

    async def body(store: Store) -> None:
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
        assert len(await chain_ok(store)) == 30 * len(payload.alerts)

    run(store_url, body)


def test_state_survives_reopen_and_migrations_are_idempotent(store_url: str) -> None:
    payload = _alerts("mixed_firing_resolved.json")
    latest = len(SQLITE_MIGRATIONS if store_url.startswith("sqlite") else PG_MIGRATIONS)

    async def main() -> None:
        async with opened(store_url) as store:
            await store.ingest(list(payload.alerts), received_at=1.0, receiver="r", group_key="g")
        async with opened(store_url) as again:
            assert await again.schema_version() == latest
            result = await again.ingest(
                list(payload.alerts), received_at=2.0, receiver="r", group_key="g"
            )
            assert result.new == 0 and result.duplicates == 3
            await chain_ok(again)

    asyncio.run(main())


def test_episodes_close_reopen_and_late_repeats(store_url: str) -> None:
    async def body(store: Store) -> None:
        first = await store.ingest([alert("f", starts=100.0)], received_at=110.0, receiver="r", group_key="g")  # fmt: skip
        assert first.events == []  # its alert:received is chained by the claim
        found = await store.latest_alert("f")
        assert found is not None
        episode_id = found.episode_id
        # Seen first by the HA peer: startsAt moves earlier, same episode, not queued again.
        earlier = await store.ingest([alert("f", starts=90.0)], received_at=111.0, receiver="r", group_key="g")  # fmt: skip
        assert (earlier.new, earlier.duplicates) == (0, 1)
        assert earlier.events[0].details["episode"] == episode_id
        assert (await store.episode(episode_id)) is not None
        assert (await store.episode(episode_id)).starts_at == 90.0  # type: ignore[union-attr]
        assert [e.id for e in await store.open_episodes()] == [episode_id]
        closed = await store.ingest([alert("f", starts=90.0, status="resolved", ends=150.0)], received_at=151.0, receiver="r", group_key="g")  # fmt: skip
        assert closed.new == 1 and closed.events == []
        assert (await store.episode(episode_id)).resolved_at == 150.0  # type: ignore[union-attr]
        assert await store.open_episodes() == []
        # A late firing repeat of the closed episode: recorded as a duplicate, not queued.
        late = await store.ingest([alert("f", starts=90.0)], received_at=152.0, receiver="r", group_key="g")  # fmt: skip
        assert (late.new, late.duplicates) == (0, 1)
        assert late.events[0].type == "alert:duplicate"
        # Firing again after it ended: a new episode.
        again = await store.ingest([alert("f", starts=200.0)], received_at=201.0, receiver="r", group_key="g")  # fmt: skip
        reopened = await store.latest_alert("f")
        assert again.new == 1 and reopened is not None and reopened.episode_id != episode_id
        # A resolved alert never seen firing: a new, closed episode.
        lone = await store.ingest([alert("g", starts=10.0, status="resolved", ends=20.0)], received_at=30.0, receiver="r", group_key="g")  # fmt: skip
        lone_item = await store.latest_alert("g")
        assert lone.new == 1 and lone_item is not None
        lone_episode = await store.episode(lone_item.episode_id)
        assert lone_episode is not None and lone_episode.resolved_at == 20.0
        latest = await store.latest_alert("f")
        assert latest is not None and latest.status == "firing" and latest.attempts == 0
        assert await store.latest_alert("nope") is None
        assert await store.pending_count() == 4

    run(store_url, body)


def test_claim_leases_and_complete(store_url: str) -> None:
    payload = _alerts("grouped.json")

    async def body(store: Store) -> None:
        await store.ingest(list(payload.alerts), received_at=1.0, receiver="r", group_key="g")
        first = await store.claim(worker="a", now=10.0, lease=30.0, limit=10)
        assert len(first) == len(payload.alerts)
        assert all(item.attempts == 1 for item in first)
        assert await store.claim(worker="b", now=20.0, lease=30.0, limit=10) == []
        # Only the claimer extends its leases.
        await store.extend_leases([i.id for i in first], worker="b", until=1000.0)
        taken = await store.claim(worker="b", now=41.0, lease=30.0, limit=10)
        assert [i.id for i in taken] == [i.id for i in first]
        assert taken[0].attempts == 2
        await store.extend_leases([i.id for i in taken], worker="b", until=500.0)
        assert await store.claim(worker="c", now=400.0, lease=30.0, limit=10) == []
        for item in taken:
            await store.complete(item.id, events=[], outcome="seen")
        assert await store.pending_count() == 0
        assert await store.claim(worker="c", now=1000.0, lease=30.0, limit=10) == []

    run(store_url, body)


def test_priority_orders_the_queue(store_url: str) -> None:
    payload = fixture_payload("firing_single.json")
    warn = dict(
        payload["alerts"][0], fingerprint="aaaa", labels={"alertname": "A", "severity": "warning"}
    )
    crit = dict(
        payload["alerts"][0], fingerprint="bbbb", labels={"alertname": "B", "severity": "critical"}
    )
    body_ = WebhookPayload.model_validate(dict(payload, alerts=[warn, crit]))

    async def body(store: Store) -> None:
        await store.ingest(list(body_.alerts), received_at=1.0, receiver="r", group_key="g")
        items = await store.claim(worker="a", now=2.0, lease=30.0, limit=10)
        assert [i.fingerprint for i in items] == ["bbbb", "aaaa"]

    run(store_url, body)


# -- remediations, leases --------------------------------------------------------------------


def test_remediations_start_once_and_a_dead_owner_is_taken_over(store_url: str) -> None:
    def start(store: Store, owner: str, now: float, **kw: object) -> Awaitable[int | None]:
        return store.start_remediation(playbook="p", fingerprint="f", episode_id=1, target="web", now=now, owner=owner, lease=30.0, **kw)  # type: ignore[arg-type]  # fmt: skip

    async def body(store: Store) -> None:
        rid = await start(store, "a", 100.0, events=[event(1)])
        assert rid is not None
        assert await start(store, "b", 110.0) is None  # a's lease runs
        await store.renew_remediation(rid, owner="b", until=10_000.0)  # not b's: ignored
        await store.renew_remediation(rid, owner="a", until=200.0)
        assert await start(store, "b", 150.0) is None
        assert await start(store, "b", 201.0, events=[event(2)]) == rid  # a died
        assert await start(store, "c", 205.0, state="blocked") is None
        await store.finish_remediation(rid, state=SUCCEEDED, now=210.0, attempts=2, reason="ok")
        assert await start(store, "c", 10_000.0) is None  # finished: never again
        [rem] = await store.remediations(target="web")
        assert (rem.state, rem.attempts, rem.reason, rem.finished_at) == (SUCCEEDED, 2, "ok", 210.0)
        assert await store.remediations(state=RUNNING) == []
        assert await store.last_started(target="web", playbook="p") == 100.0
        assert await store.last_started(target="web", playbook="other") is None
        assert await store.count_started(target="web", since=50.0) == 1
        assert await store.count_started(target="web", since=100.0) == 0
        assert [e.message for e in await chain_ok(store)] == ["event 1", "event 2"]

    run(store_url, body)


def test_interrupt_running_only_expired_when_shared(store_url: str) -> None:
    async def body(store: Store) -> None:
        for fingerprint, lease in (("live", 100.0), ("dead", 10.0), ("nolease", 0.0)):
            await store.start_remediation(playbook="p", fingerprint=fingerprint, episode_id=1, target="t", now=0.0, owner="o", lease=lease)  # fmt: skip

        def events_for(rem: Remediation) -> list[Event]:
            return [event(rem.id, fingerprint=rem.fingerprint)]

        found = await store.interrupt_running(now=50.0, events_for=events_for, expired_only=True)
        assert sorted(r.fingerprint for r in found) == ["dead", "nolease"]
        assert [r.fingerprint for r in await store.remediations(state=RUNNING)] == ["live"]
        rest = await store.interrupt_running(now=60.0, events_for=events_for)
        assert [r.fingerprint for r in rest] == ["live"]
        assert {r.state for r in await store.remediations()} == {INTERRUPTED}
        assert len(await chain_ok(store)) == 3

    run(store_url, body)


def test_singleton_leases(store_url: str) -> None:
    async def body(store: Store) -> None:
        assert await store.lead("reconcile", owner="a", now=0.0, ttl=30.0)
        assert not await store.lead("reconcile", owner="b", now=10.0, ttl=30.0)
        assert await store.lead("retention", owner="b", now=10.0, ttl=30.0)
        assert await store.lead("reconcile", owner="a", now=20.0, ttl=30.0)  # renewed to 50
        assert not await store.lead("reconcile", owner="b", now=45.0, ttl=30.0)
        assert await store.lead("reconcile", owner="b", now=51.0, ttl=30.0)
        assert not await store.lead("reconcile", owner="a", now=52.0, ttl=30.0)

    run(store_url, body)


# -- breakers, flags, targets ----------------------------------------------------------------


def test_breaker_steps_persist_and_record_transitions(store_url: str) -> None:
    settings = CircuitBreakerConfig(failure_threshold=2, reset_timeout=10.0, half_open_requests=1)

    def events(transition: Transition) -> list[Event]:
        return [Event(type=f"circuit:{transition.changed_to}", time=1.0, target="web")]

    async def body(store: Store) -> None:
        assert (await store.breaker("web")).state == "closed"
        assert (await CircuitBreakers(store).admit("web", settings, now=1.0, events=events))[0]
        await CircuitBreakers(store).report("web", settings, ok=False, now=2.0, events=events)
        opened_ = await CircuitBreakers(store).report(
            "web", settings, ok=False, now=3.0, events=events
        )
        assert opened_.changed_to == "open"
        assert not (await CircuitBreakers(store).admit("web", settings, now=5.0, events=events))[0]
        assert (
            await CircuitBreakers(store).tick("web", settings, now=14.0, events=events)
        ).changed_to == "half-open"
        assert (await CircuitBreakers(store).admit("web", settings, now=14.0, events=events))[0]
        assert not (await CircuitBreakers(store).admit("web", settings, now=14.5, events=events))[0]
        state = await store.breaker("web")
        assert (state.state, state.trials, state.failures, state.opened_at) == (
            "half-open",
            1,
            2,
            3.0,
        )
        assert (
            await CircuitBreakers(store).reset("web", now=15.0, events=events)
        ).changed_to == "closed"
        assert [(b.target, b.state) for b in await store.breakers()] == [("web", "closed")]
        kinds = [e.type for e in await chain_ok(store)]
        assert kinds == ["circuit:open", "circuit:half-open", "circuit:closed"]

    run(store_url, body)


def test_flags_and_target_state(store_url: str) -> None:
    async def body(store: Store) -> None:
        assert await store.flag("paused") is None
        await store.set_flag("paused", "1", actor="me", now=1.0, events=[event(1)])
        await store.set_flag("paused", "0", actor="me", now=2.0, events=[])
        assert await store.flag("paused") == "0"
        new = await store.register_targets(["b", "a", "b"], now=3.0, events_for=lambda n: [event(3, target=n)])  # fmt: skip
        assert new == ["b", "a"]
        assert await store.register_targets(["a", "c"], now=4.0, events_for=lambda n: []) == ["c"]
        await store.set_quarantine("a", reason="flapping", now=5.0, events=[])
        state = await store.target_state("a")
        assert (
            state.quarantined
            and state.quarantine_reason == "flapping"
            and state.registered_at == 3.0
        )
        await store.set_quarantine("a", reason=None, now=6.0, events=[])
        assert not (await store.target_state("a")).quarantined
        await store.update_target_data("z", {"url": "u1", "n": 1}, [])
        await store.update_target_data("z", {"url": "u2"}, [event(7)])
        assert (await store.target_state("z")).data == {"url": "u2", "n": 1}
        assert (await store.target_state("none")).registered_at is None
        events = await chain_ok(store)
        assert [e.target for e in events] == ["", "b", "a", ""]

    run(store_url, body)


def test_targets_of_open_episodes(store_url: str) -> None:
    async def body(store: Store) -> None:
        result = await store.ingest([alert("x"), alert("y"), alert("z", status="resolved", ends=5.0)], received_at=1.0, receiver="r", group_key="g")  # fmt: skip
        assert result.new == 3
        ids = [item.episode_id for item in await store.claim(worker="w", now=2.0, lease=30.0, limit=10)]  # fmt: skip
        await store.mark_targets([(ids[0], "web"), (ids[1], "db"), (ids[2], "cache")])
        assert await store.alerting_targets(["web", "db", "cache", "other"]) == 2
        assert await store.alerting_targets([]) == 0

    run(store_url, body)


def test_a_claim_carries_the_detection_and_the_mark_a_finish_the_completion(
    store_url: str,
) -> None:
    """``start_remediation(before_events=, mark=)`` appends the detection whether or not it
    claims, before the claim's events; ``finish_remediation(complete_item=)`` completes the
    inbox item in the same transaction."""

    async def body(store: Store) -> None:
        result = await store.ingest([alert("x"), alert("y")], received_at=1.0, receiver="r", group_key="g")  # fmt: skip
        assert result.new == 2
        items = {i.fingerprint: i for i in await store.claim(worker="w", now=2.0, lease=30.0, limit=10)}  # fmt: skip
        x, y = items["x"].episode_id, items["y"].episode_id
        assert await store.alerting_targets(["web"]) == 0
        rid = await store.start_remediation(playbook="p", fingerprint="x", episode_id=x, target="web", now=3.0, events=[event(2)], before_events=[event(1)], mark=True, owner="o", lease=30.0)  # fmt: skip
        assert rid is not None
        assert await store.alerting_targets(["web"]) == 1
        again = await store.start_remediation(playbook="p", fingerprint="x", episode_id=x, target="web", now=4.0, events=[event(4)], before_events=[event(3)], mark=True)  # fmt: skip
        assert again is None  # not claimed: only the detection is recorded
        blocked = await store.start_remediation(playbook="p", fingerprint="y", episode_id=y, target="db", now=5.0, state="blocked", reason="paused", events=[event(6)], before_events=[event(5)])  # fmt: skip
        assert blocked is not None
        assert await store.alerting_targets(["db"]) == 0  # not marked
        await store.finish_remediation(rid, state=SUCCEEDED, now=7.0, attempts=1, events=[event(7)], complete_item=(items["x"].id, "decided"))  # fmt: skip
        assert [e.message for e in await chain_ok(store)][2:] == [f"event {n}" for n in (1, 2, 3, 5, 6, 7)]  # fmt: skip
        assert await store.pending_count() == 1
        rows = await store.raw("SELECT fingerprint, state, outcome, done_at FROM inbox ORDER BY fingerprint")  # fmt: skip
        assert [tuple(r) for r in rows] == [("x", "done", "decided", 7.0), ("y", "pending", None, None)]  # fmt: skip
        [rem] = await store.remediations(state=SUCCEEDED)
        assert (rem.id, rem.finished_at) == (rid, 7.0)
        # the completed item is never claimed again; the other one is, once its lease expired
        assert [i.fingerprint for i in await store.claim(worker="v", now=100.0, lease=30.0, limit=10)] == ["y"]  # fmt: skip

    run(store_url, body)
