"""The escalator's read, on both backends: finished remediations whose alert still fires, from
index look-ups only (open episodes, then their target's remediations), in pages."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import psycopg
import pytest

from remediator.store import Store
from remediator.store.records import FAILED, SUCCEEDED, unrecovered_sql
from remediator.store.schema import SQLITE_MIGRATIONS
from tests.engine_harness import alert
from tests.store_helpers import pg_migrated, run, store_url

__all__ = ["store_url"]  # the fixture


async def _remediate(store: Store, fingerprint: str, *, state: str, finished: float | None) -> int:
    result = await store.ingest([alert(fingerprint)], received_at=1.0, receiver="r", group_key="g")
    stored = await store.latest_alert(fingerprint)
    assert result.new == 1 and stored is not None
    episode = stored.episode_id
    rid = await store.start_remediation(playbook="p", fingerprint=fingerprint, episode_id=episode, target=f"t-{fingerprint}", now=10.0, mark=True)  # fmt: skip
    assert rid is not None
    if finished is not None:
        await store.finish_remediation(rid, state=state, now=finished, attempts=1)
    return rid


def test_unrecovered_lists_finished_remediations_of_firing_alerts_in_pages(
    store_url: str,
) -> None:
    async def body(store: Store) -> None:
        ok = await _remediate(store, "a", state=SUCCEEDED, finished=100.0)
        failed = await _remediate(store, "b", state=FAILED, finished=200.0)
        await _remediate(store, "c", state=SUCCEEDED, finished=None)  # still running
        late = await _remediate(store, "d", state=SUCCEEDED, finished=900.0)
        fixed = await _remediate(store, "e", state=SUCCEEDED, finished=100.0)
        await store.ingest([alert("e", status="resolved", ends=1_800_000_100.0)], received_at=150.0, receiver="r", group_key="g")  # fmt: skip
        listed = await store.unrecovered(finished_before=500.0)
        assert [(r.id, r.state, r.finished_at) for r in listed] == [
            (ok, SUCCEEDED, 100.0),
            (failed, FAILED, 200.0),
        ]
        assert fixed not in [r.id for r in listed]  # its alert resolved
        assert [r.id for r in await store.unrecovered(finished_before=900.0)] == [ok, failed, late]
        first = await store.unrecovered(finished_before=900.0, limit=2)
        assert [r.id for r in first] == [ok, failed]
        rest = await store.unrecovered(finished_before=900.0, after_id=first[-1].id, limit=2)
        assert [r.id for r in rest] == [late]

    run(store_url, body)


def test_unrecovered_is_answered_from_indexes_on_sqlite(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "plan.db")
    for migration in SQLITE_MIGRATIONS:
        conn.executescript(migration)
    plan = conn.execute(f"EXPLAIN QUERY PLAN {unrecovered_sql('?')}", (100.0, 0, 10)).fetchall()
    steps = " | ".join(str(row[-1]) for row in plan)
    assert "SEARCH e USING COVERING INDEX episodes_open (resolved_at=?)" in steps, steps
    assert "SEARCH r USING INDEX remediations_target (target=?)" in steps, steps
    assert "SCAN r" not in steps and "SCAN e" not in steps, steps


@pytest.mark.postgres
def test_unrecovered_is_answered_from_indexes_on_postgresql(pg_database: str) -> None:
    """5,000 finished remediations, 3 of them of alerts still firing: the plan starts from the
    open episodes and never reads the remediations by state or in full."""
    asyncio.run(pg_migrated(pg_database))
    with psycopg.connect(pg_database) as conn:
        conn.execute(
            "INSERT INTO episodes (fingerprint, starts_at, opened_at, resolved_at, target) "
            "SELECT 'f' || g, g, g, CASE WHEN g <= 4997 THEN g + 1 END, 't' || (g % 200) "
            "FROM generate_series(1, 5000) AS g"
        )
        conn.execute(
            "INSERT INTO remediations (playbook, fingerprint, episode_id, target, state, "
            "started_at, finished_at) SELECT 'p', 'f' || g, g, 't' || (g % 200), "
            "CASE WHEN g % 2 = 0 THEN 'succeeded' ELSE 'failed' END, g, g + 0.5 "
            "FROM generate_series(1, 5000) AS g"
        )
        conn.execute("ANALYZE")
        params = (1e9, 0, 500)
        rows = conn.execute(unrecovered_sql("%s"), params).fetchall()
        plan = conn.execute(f"EXPLAIN {unrecovered_sql('%s')}", params).fetchall()
    assert [row[3] for row in rows] == [4998, 4999, 5000]  # episode ids
    steps = " | ".join(str(row[0]) for row in plan)
    assert "episodes_open" in steps and "remediations_target" in steps, steps
    assert "remediations_state" not in steps and "Seq Scan" not in steps, steps
