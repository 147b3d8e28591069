"""Forged alerts cannot fill the disk: growth is bounded by the retention settings.

Three floods of 4,000 distinct forged alerts (each fires, resolves, is decided and notified)
go into a real store, on each backend; after each, the clock moves past the retention settings
and one retention round runs (events behind the audit checkpoint, then the finished rows of
the inbox, outbox, episodes and remediations in batches). Meanwhile one real incident stays
open with its remediation.

Expected: after every round the tables hold only what the open incident needs (and the audit
chain's head); the store does not grow from one flood to the next (SQLite reuses the freed
pages); no prune batch holds the writer long; the chain still verifies. A served process
creates its SQLite files 0600 and exports the store's size.
"""

from __future__ import annotations

import asyncio
import stat
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx2 as httpx

from remediator.alerts import Alert
from remediator.audit.events import ALERT_RESOLVED, Event
from remediator.audit.recording import OutboxRow, Recording
from remediator.clock import FakeClock
from remediator.config.model import RetentionConfig
from remediator.engine.retention import Retention
from remediator.engine.verifier import verify_store
from remediator.metrics import Metrics
from remediator.store import Store
from tests.reliability.conftest import Figures, Serve
from tests.store_helpers import opened, store_url
from tests.waiting import wait_for

__all__ = ["store_url"]  # the fixture

DAY = 86400.0
FLOOD = 4000
ROUNDS = 3
BATCH_SECONDS = 1.0  # the longest a prune batch may hold the writer (2 shared cores)
SETTINGS = RetentionConfig(inbox=DAY, outbox=DAY, episodes=DAY, remediations=DAY)


def at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def forged(fp: str, starts: float, ends: float | None = None) -> Alert:
    return Alert(
        status="firing" if ends is None else "resolved",
        labels={"alertname": "Forged", "container": "db", "junk": "x" * 200},
        annotations={"description": "disk full " * 20},
        starts_at=at(starts),
        ends_at=None if ends is None else at(ends),
        fingerprint=fp,
    )


def _router(event: Event) -> list[OutboxRow]:
    if event.type != ALERT_RESOLVED:
        return []
    return [OutboxRow("slack", "#ops", event.fingerprint, "resolved", {"m": event.message},
                      dedupe_key=f"{event.fingerprint}:{event.id}")]  # fmt: skip


async def decide_all(store: Store, now: float) -> None:
    while items := await store.claim(worker="w", now=now, lease=60.0, limit=1000):
        await asyncio.gather(*(store.complete(i.id, events=[], outcome="seen") for i in items))


async def flood(store: Store, n: int, now: float) -> None:
    """``FLOOD`` forged alerts fire and resolve; each is decided and its notification sent."""
    fps = [f"f{n:02d}{i:013x}" for i in range(FLOOD)]
    for chunk in range(0, FLOOD, 500):
        part = fps[chunk : chunk + 500]
        await store.ingest([forged(fp, now) for fp in part], received_at=now, receiver="r", group_key="g")  # fmt: skip
        await store.ingest([forged(fp, now, now + 60) for fp in part], received_at=now + 60, receiver="r", group_key="g")  # fmt: skip
    await decide_all(store, now + 61)
    while notes := await store.claim_outbox(worker="o", now=now + 62, lease=60.0, limit=1000):
        await asyncio.gather(*(store.outbox_sent(i.id, now=now + 62, events=[]) for i in notes))


class Timed:
    """The store's ``prune_rows``, timed per batch."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.longest = 0.0
        self.batches = 0
        self.inner = store.prune_rows

    async def prune_rows(self, table: str, *, before: float, limit: int) -> int:
        began = time.perf_counter()
        try:
            return await self.inner(table, before=before, limit=limit)
        finally:
            self.longest = max(self.longest, time.perf_counter() - began)
            self.batches += 1


def test_floods_of_forged_alerts_are_pruned_and_the_store_stops_growing(
    store_url: str, figures: Figures
) -> None:
    async def main() -> None:
        async with opened(store_url, Recording(route=_router)) as store:
            t0 = 1_800_000_000.0
            await store.ingest([forged("real", t0)], received_at=t0, receiver="r", group_key="g")
            await decide_all(store, t0)
            [episode] = await store.open_episodes()
            rid = await store.start_remediation(playbook="p", fingerprint="real", episode_id=episode.id, target="web", now=t0)  # fmt: skip
            assert rid is not None
            await store.finish_remediation(rid, state="succeeded", now=t0 + 1, attempts=1)
            timed = Timed(store)
            store.prune_rows = timed.prune_rows  # type: ignore[method-assign]
            sizes: list[int] = []
            peak: dict[str, int] = {}
            for n in range(ROUNDS):
                now = t0 + n * 2 * DAY
                await flood(store, n, now)
                peak = await store.table_rows()
                assert peak["episodes"] == FLOOD + 1
                later = now + DAY + 3600
                retention = Retention(store=store, retention=DAY, recording=Recording(), clock=FakeClock(later), owner="a", tables=SETTINGS, metrics=Metrics())  # fmt: skip
                await retention.run_once()
                rows = await store.table_rows()
                # Only the open incident's rows, the chain's head and its checkpoint event.
                assert rows == {"events": 2, "inbox": 1, "outbox": 0, "episodes": 1,
                                "remediations": 1, "step_intents": 0}, rows  # fmt: skip
                sizes.append(await store.size_bytes())
            assert [e.fingerprint for e in await store.open_episodes()] == ["real"]
            verdict = await verify_store(store)
            assert verdict.ok, verdict.line()
            assert timed.longest < BATCH_SECONDS, timed.longest
            if store_url.startswith("sqlite"):  # freed pages are reused: no growth per flood
                assert sizes[-1] <= sizes[0] * 1.1, sizes
            figures(
                backend=store_url.split(":", 1)[0],
                forged_alerts_per_flood=FLOOD,
                floods=ROUNDS,
                rows_at_peak=peak,
                store_bytes_after_each_prune=sizes,
                prune_batches=timed.batches,
                longest_prune_batch_seconds=round(timed.longest, 4),
            )

    asyncio.run(main())


def test_a_served_store_is_private_and_reports_its_size(serve: Serve, figures: Figures) -> None:
    served = serve({"health": {"enabled": False}})
    db = served.db_path
    wait_for(lambda: Path(f"{db}-shm").exists(), timeout=10, what="the shared-memory file")
    modes = {f.name[len(db.name) :] or "db": stat.S_IMODE(f.stat().st_mode)
             for f in (db, Path(f"{db}-wal"), Path(f"{db}-shm"))}  # fmt: skip
    assert modes == {"db": 0o600, "-wal": 0o600, "-shm": 0o600}
    text = httpx.get(served.url + "/metrics", timeout=5).text
    assert 'remediator_store_rows{table="inbox"} 0.0' in text
    assert served.metric("remediator_store_size_bytes") > 0
    figures(file_modes={k: oct(v) for k, v in modes.items()})
