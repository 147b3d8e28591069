"""Growth is bounded, on every backend (the store contract's style): retention deletes the old
finished rows of the inbox, outbox, episodes and remediations in bounded batches and keeps what
open incidents need; the table sizes are reported; the SQLite files are created 0600."""

from __future__ import annotations

import asyncio
import stat
from datetime import UTC, datetime
from pathlib import Path

from remediator.alerts import Alert
from remediator.audit.events import Event
from remediator.audit.recording import OutboxRow, Recording
from remediator.clock import FakeClock
from remediator.config.model import RetentionConfig
from remediator.engine.retention import Retention
from remediator.engine.verifier import verify_store
from remediator.metrics import Metrics
from remediator.store import Store
from remediator.store.growth import COUNTED, PRUNED
from remediator.store.records import StepIntent
from tests.store_helpers import opened, run, store_url

__all__ = ["store_url"]  # the fixture

DAY = 86400.0


def at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def firing(fp: str, starts: float) -> Alert:
    return Alert(status="firing", labels={"alertname": fp}, starts_at=at(starts), fingerprint=fp)


def resolved(fp: str, starts: float, ends: float) -> Alert:
    return Alert(
        status="resolved",
        labels={"alertname": fp},
        starts_at=at(starts),
        ends_at=at(ends),
        fingerprint=fp,
    )


def _router(event: Event) -> list[OutboxRow]:
    if event.type != "test:note":
        return []
    return [OutboxRow("slack", "#ops", event.fingerprint, "firing", {"m": event.message},
                      dedupe_key=event.fingerprint)]  # fmt: skip


def note(fp: str, time: float) -> Event:
    return Event(type="test:note", time=time, fingerprint=fp, message=fp)


async def incidents(store: Store, t0: float) -> dict[str, int]:
    """Three incidents at ``t0``: "done" resolved with a finished remediation, "open" still
    firing with a finished one, "busy" resolved while its remediation still runs; every alert
    decided. The episode id of each."""
    stored = await store.ingest(
        [firing("done", t0), firing("open", t0), firing("busy", t0)],
        received_at=t0,
        receiver="r",
        group_key="g",
    )
    assert stored.new == 3
    await store.ingest(
        [resolved("done", t0, t0 + 60), resolved("busy", t0, t0 + 60)],
        received_at=t0 + 60,
        receiver="r",
        group_key="g",
    )
    episodes: dict[str, int] = {}
    for item in await store.claim(worker="w", now=t0 + 61, lease=30.0, limit=10):
        episodes[item.fingerprint] = item.episode_id
        await store.complete(item.id, events=[], outcome="seen")
    for fp in ("done", "open", "busy"):
        rid = await store.start_remediation(
            playbook="p", fingerprint=fp, episode_id=episodes[fp], target="web", now=t0 + 10
        )
        assert rid is not None
        await store.record_intent(
            StepIntent(remediation_id=rid, step=0, action="a", target="web", owner="w", began_at=t0)
        )
        if fp != "busy":
            await store.finish_remediation(rid, state="succeeded", now=t0 + 20, attempts=1)
    return episodes


def test_prune_deletes_old_finished_rows_in_batches_and_keeps_what_incidents_need(
    store_url: str,
) -> None:
    async def body(store: Store) -> None:
        episodes = await incidents(store, 1000.0)
        await store.append([note("n1", 1000.0), note("n2", 1000.0), note("n3", 1000.0)])
        [sent, dead, _pending] = await store.claim_outbox(
            worker="o", now=1000.0, lease=30.0, limit=10
        )
        await store.outbox_sent(sent.id, now=1001.0, events=[])
        await store.outbox_dead(dead.id, now=1001.0, error="gone", events=[])
        before = await store.table_rows()
        assert before == {"events": 8, "inbox": 5, "outbox": 3, "episodes": 3,
                          "remediations": 3, "step_intents": 3}  # fmt: skip

        # Nothing is older than the cutoff: nothing goes.
        for table in ("remediations", "inbox", "episodes", "outbox"):
            assert await store.prune_rows(table, before=999.0, limit=100) == 0
        # Each batch takes at most `limit` rows.
        assert await store.prune_rows("outbox", before=5000.0, limit=1) == 1
        assert await store.prune_rows("outbox", before=5000.0, limit=100) == 1
        assert await store.prune_rows("outbox", before=5000.0, limit=100) == 0  # pending stays
        # The finished remediation of the closed episode goes, with its step intent; the open
        # episode's and the running one stay.
        assert await store.prune_rows("remediations", before=5000.0, limit=100) == 1
        kept = {(r.fingerprint, r.state) for r in await store.remediations()}
        assert kept == {("open", "succeeded"), ("busy", "running")}
        # The decided items of the closed episodes go; the open episode's stays.
        assert await store.prune_rows("inbox", before=5000.0, limit=100) == 4
        # The closed episode with nothing left goes; the open one and the running one's stay.
        assert await store.prune_rows("episodes", before=5000.0, limit=100) == 1
        assert await store.episode(episodes["done"]) is None
        assert await store.episode(episodes["open"]) is not None
        assert await store.episode(episodes["busy"]) is not None
        assert await store.table_rows() == {"events": 8, "inbox": 1, "outbox": 1, "episodes": 2,
                                            "remediations": 2, "step_intents": 2}  # fmt: skip
        assert await store.size_bytes() > 0

        # The open incident still works: a repeat of its alert is a duplicate, and its
        # remediation is not started again.
        again = await store.ingest([firing("open", 1000.0)], received_at=6000.0, receiver="r",
                                   group_key="g")  # fmt: skip
        assert (again.new, again.duplicates) == (0, 1)
        assert await store.start_remediation(playbook="p", fingerprint="open",
                                             episode_id=episodes["open"], target="web",
                                             now=6000.0) is None  # fmt: skip
        # The guards still see the kept remediations; the audit chain is untouched.
        assert await store.last_started(target="web", playbook="p") == 1010.0
        verdict = await verify_store(store)
        assert verdict.ok, verdict.line()

    run(store_url, body, Recording(route=_router))


def test_retention_prunes_each_table_by_its_own_setting_and_exports_sizes(
    store_url: str,
) -> None:
    async def body(store: Store) -> None:
        await incidents(store, 1000.0)
        await store.append([note("n1", 1000.0)])
        [item] = await store.claim_outbox(worker="o", now=1000.0, lease=30.0, limit=10)
        await store.outbox_sent(item.id, now=1001.0, events=[])
        metrics = Metrics()
        settings = RetentionConfig(
            inbox=2 * DAY, outbox=5 * DAY, episodes=3 * DAY, remediations=4 * DAY
        )

        def retention(now: float) -> Retention:
            return Retention(store=store, retention=100 * DAY, recording=Recording(),
                             clock=FakeClock(now), owner="a", tables=settings,
                             metrics=metrics)  # fmt: skip

        # After 2.5 days only the inbox's setting has passed: the episodes wait for their
        # remediations (4 days) although their own 3 days pass first.
        assert await retention(1000 + 2.5 * DAY).prune_tables(1000 + 2.5 * DAY) == {
            "remediations": 0, "inbox": 4, "episodes": 0, "outbox": 0}  # fmt: skip
        assert await retention(1000 + 4.5 * DAY).prune_tables(1000 + 4.5 * DAY) == {
            "remediations": 1, "inbox": 0, "episodes": 1, "outbox": 0}  # fmt: skip
        # run_once (lease, events, then the tables), as the hourly round does.
        await retention(1000 + 5.5 * DAY).run_once()
        assert (await store.table_rows())["outbox"] == 0
        sample = metrics.registry.get_sample_value
        pruned = {t: sample("remediator_store_pruned_rows_total", {"table": t}) for t in PRUNED}
        assert pruned == {"remediations": 1.0, "inbox": 4.0, "episodes": 1.0, "outbox": 1.0}
        await retention(0).export_sizes()
        rows = {t: sample("remediator_store_rows", {"table": t}) for t in COUNTED}
        assert rows == {"events": 6.0, "inbox": 1.0, "outbox": 0.0, "episodes": 2.0,
                        "remediations": 2.0, "step_intents": 2.0}  # fmt: skip
        assert (sample("remediator_store_size_bytes") or 0) > 0

    run(store_url, body, Recording(route=_router))


def test_the_sqlite_files_are_created_readable_by_their_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "private.db"

    async def main() -> None:
        async with opened(f"sqlite:///{path}") as store:
            await store.append([note("n", 1.0)])
            modes = {
                f.name: stat.S_IMODE(f.stat().st_mode)
                for f in (path, Path(f"{path}-wal"), Path(f"{path}-shm"))
            }
            assert modes == {"private.db": 0o600, "private.db-wal": 0o600, "private.db-shm": 0o600}

    asyncio.run(main())
