"""Several PostgreSQL writers at once, on the real server: separate processes ingesting one
notification, replicas claiming, appending to the chain, admitting half-open trials, starting
one remediation, holding one lease."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from remediator.alerts import Alert, WebhookPayload
from remediator.audit.events import Event
from remediator.config.model import CircuitBreakerConfig
from remediator.engine.guards import CircuitBreakers, Transition
from remediator.engine.verifier import verify_store
from remediator.store.postgres import PostgresStore
from tests.conftest import fixture_payload
from tests.store_helpers import event, pg_migrated, pg_open, pg_query

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[1]


def _notification() -> dict[str, Any]:
    """One notification of five alerts: firing and resolved, five fingerprints."""
    raw = fixture_payload("grouped.json")
    raw["alerts"] += fixture_payload("mixed_firing_resolved.json")["alerts"]
    return raw


def _transition_events(transition: Transition) -> list[Event]:
    return [Event(type=f"circuit:{transition.changed_to}", time=1.0, target="web")]


# -- several writers -------------------------------------------------------------------------

CHILD = """
import asyncio, json, sys
from remediator.alerts import WebhookPayload
from remediator.store import create_store

async def main(url: str, path: str, count: int, reverse: bool) -> None:
    alerts = list(WebhookPayload.model_validate_json(open(path).read()).alerts)
    if reverse:
        alerts.reverse()
    store = create_store(url)
    await store.open()
    print("ready", flush=True)
    sys.stdin.readline()
    results = await asyncio.gather(*[
        store.ingest(alerts, received_at=1000.0 + i, receiver="r", group_key="g")
        for i in range(count)
    ])
    await store.close()
    print(json.dumps({"new": sum(r.new for r in results),
                      "duplicates": sum(r.duplicates for r in results)}), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"))
"""


def test_two_processes_ingesting_one_notification_queue_each_alert_once(
    pg_database: str, tmp_path: Path
) -> None:
    raw = _notification()
    alerts: list[Alert] = list(WebhookPayload.model_validate(raw).alerts)
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps(raw))
    asyncio.run(pg_migrated(pg_database))
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, pg_database, str(payload), "50", str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for n in range(2)
    ]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [json.loads(child.communicate(timeout=120)[0]) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert all(child.returncode == 0 for child in children)
    assert sum(o["new"] for o in outputs) == len(alerts)
    assert sum(o["duplicates"] for o in outputs) == 100 * len(alerts) - len(alerts)
    rows = pg_query(pg_database, "SELECT fingerprint, count(*) FROM inbox GROUP BY fingerprint")
    assert sorted(rows) == sorted((a.fingerprint, 1) for a in alerts)
    episodes = pg_query(pg_database, "SELECT fingerprint, count(*) FROM episodes GROUP BY 1")
    assert sorted(episodes) == sorted((a.fingerprint, 1) for a in alerts)
    kinds = dict(pg_query(pg_database, "SELECT type, count(*) FROM events GROUP BY type"))
    assert kinds["alert:duplicate"] == 99 * len(alerts)

    async def check() -> None:
        store = await pg_open(pg_database)
        try:
            verdict = await verify_store(store)
            assert verdict.ok and verdict.checked == 100 * len(alerts), verdict.line()
        finally:
            await store.close()

    asyncio.run(check())


def test_claims_from_two_replicas_never_overlap_while_leased(pg_database: str) -> None:
    from tests.engine_harness import alert

    async def main() -> None:
        a, b = await pg_open(pg_database), await pg_open(pg_database)
        try:
            await a.ingest([alert(f"fp{n}") for n in range(60)], received_at=1.0, receiver="r", group_key="g")  # fmt: skip
            taken: dict[str, list[int]] = {"a": [], "b": []}

            async def worker(store: PostgresStore, name: str) -> None:
                while items := await store.claim(worker=name, now=10.0, lease=30.0, limit=3):
                    taken[name].extend(item.id for item in items)
                    await asyncio.sleep(0)

            await asyncio.gather(worker(a, "a"), worker(b, "b"), worker(a, "a"), worker(b, "b"))
            assert not set(taken["a"]) & set(taken["b"])
            assert len(taken["a"]) + len(taken["b"]) == 60
            assert taken["a"] and taken["b"]
            # Replica a died: once its leases expire, b takes its items over.
            await b.extend_leases(taken["b"], worker="b", until=100.0)
            again = await b.claim(worker="b", now=41.0, lease=30.0, limit=100)
            assert sorted(item.id for item in again) == sorted(taken["a"])
            assert {item.attempts for item in again} == {2}
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_four_writers_on_two_replicas_make_one_valid_chain(pg_database: str) -> None:
    from tests.engine_harness import alert

    async def main() -> None:
        stores = [await pg_open(pg_database), await pg_open(pg_database)]
        try:

            async def writer(store: PostgresStore, n: int) -> None:
                for i in range(25):
                    if i % 5 == 0:
                        await store.ingest([alert(f"w{n}-{i}")], received_at=float(i), receiver="r", group_key="g")  # fmt: skip
                    else:
                        await store.append([event(i, actor=f"writer{n}")] * (1 + i % 3))

            await asyncio.gather(*[writer(stores[n % 2], n) for n in range(4)])
            # the arrivals of the ingested alerts are chained by the replicas' claims
            await asyncio.gather(*[s.claim(worker=f"c{k}", now=30.0, lease=30.0, limit=100) for k, s in enumerate(stores)])  # fmt: skip
            verdict = await verify_store(stores[1])
            assert verdict.ok, verdict.line()
            total = 4 * sum(1 if i % 5 == 0 else 1 + i % 3 for i in range(25))
            assert verdict.checked == total == verdict.head_id
            assert (await stores[0].audit_anchor()).head_id == total
        finally:
            for store in stores:
                await store.close()

    asyncio.run(main())


def test_half_open_admits_exactly_its_trials_across_replicas(pg_database: str) -> None:
    settings = CircuitBreakerConfig(failure_threshold=1, reset_timeout=10.0, half_open_requests=2)

    async def main() -> None:
        a, b = await pg_open(pg_database), await pg_open(pg_database)
        try:
            await CircuitBreakers(a).report(
                "web", settings, ok=False, now=0.0, events=_transition_events
            )
            assert (await b.breaker("web")).state == "open"
            answers = await asyncio.gather(
                *[
                    CircuitBreakers(store).admit(
                        "web", settings, now=20.0, events=_transition_events
                    )
                    for _ in range(10)
                    for store in (a, b)
                ]
            )
            assert sum(allowed for allowed, _ in answers) == 2
            assert sum(t.changed_to == "half-open" for _, t in answers) == 1
            state = await a.breaker("web")
            assert (state.state, state.trials) == ("half-open", 2)
            kinds = [e.type for e in await a.events_after(0, 100)]
            assert kinds == ["circuit:open", "circuit:half-open"]
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_replicas_start_one_remediation_and_hold_one_lease(pg_database: str) -> None:
    async def main() -> None:
        a, b = await pg_open(pg_database), await pg_open(pg_database)
        try:
            started = await asyncio.gather(
                *[
                    store.start_remediation(
                        playbook="p",
                        fingerprint="f",
                        episode_id=1,
                        target="web",
                        now=1.0,
                        owner=name,
                        lease=30.0,
                    )
                    for _ in range(10)
                    for name, store in (("a", a), ("b", b))
                ]
            )
            assert len([rid for rid in started if rid is not None]) == 1
            leads = await asyncio.gather(
                *[
                    store.lead("reconcile", owner=name, now=1.0, ttl=30.0)
                    for _ in range(10)
                    for name, store in (("a", a), ("b", b))
                ]
            )
            holders = {name for name, held in zip(["a", "b"] * 10, leads, strict=True) if held}
            assert len(holders) == 1
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())
