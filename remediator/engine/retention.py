"""Retention: events older than ``audit.retention`` are pruned hourly, behind a checkpoint;
then the finished rows of the inbox, outbox, episodes and remediations older than their
``retention`` settings, in bounded batches (remediator/store/growth.py says what is kept).

Works on every backend (:meth:`Store.prune <remediator.store.base.Store.prune>`: one
transaction; :meth:`~remediator.store.base.Growth.prune_rows`: one short transaction per batch,
so webhooks' commits go between them). With several replicas on one database, only the one
holding the ``retention`` lease prunes; another takes over within a few intervals if it dies.
Every replica exports the store's rows per table and its size every :data:`SIZES_INTERVAL`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from remediator.audit.recording import Recording
from remediator.clock import Clock
from remediator.config.model import RetentionConfig
from remediator.engine.periodic import Periodic
from remediator.engine.worker import worker_name
from remediator.metrics import Metrics
from remediator.store import base as roles
from remediator.store.growth import PRUNED

log = logging.getLogger("remediator.retention")
INTERVAL = 3600.0
LEASE = "retention"
LEASE_TTL = 3 * INTERVAL
BATCH = 500  # rows per prune transaction
SIZES_INTERVAL = 60.0


class RetentionStore(roles.Flags, roles.AuditChain, roles.Growth, Protocol):
    """The store roles retention needs: its lease (``lead``), the chain's ``prune`` and the
    tables' (``prune_rows``, ``table_rows``, ``size_bytes``)."""


class Retention:
    def __init__(
        self,
        *,
        store: RetentionStore,
        retention: float,
        recording: Recording,
        clock: Clock,
        owner: str | None = None,
        tables: RetentionConfig | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.retention = retention
        self.recording = recording
        self.clock = clock
        self.owner = owner or worker_name()
        self.tables = tables
        self.metrics = metrics
        self._stopping = False
        self._periodic = Periodic("retention", INTERVAL, self.run_once)
        self._sizes = Periodic("store-sizes", SIZES_INTERVAL, self.export_sizes)

    async def run_once(self) -> int:
        """One round: prune if this replica holds the lease; the number of events deleted."""
        now = self.clock.now()
        if not await self.store.lead(LEASE, owner=self.owner, now=now, ttl=LEASE_TTL):
            return 0
        pruned = await self.store.prune(
            before=now - self.retention, now=now, recording=self.recording
        )
        if pruned:
            log.info("audit events pruned", extra={"pruned": pruned})
        if self.tables is not None:
            await self.prune_tables(now)
        return pruned

    async def prune_tables(self, now: float) -> dict[str, int]:
        """Delete each table's finished rows older than its setting, :data:`BATCH` rows per
        transaction, until none is left or retention stops; the rows deleted per table."""
        assert self.tables is not None
        t = self.tables
        ages = {"remediations": t.remediations, "inbox": t.inbox, "episodes": t.episodes, "outbox": t.outbox}  # fmt: skip
        deleted: dict[str, int] = {}
        for table in PRUNED:
            before = now - ages[table]
            total = 0
            while not self._stopping:
                n = await self.store.prune_rows(table, before=before, limit=BATCH)
                total += n
                if self.metrics is not None and n:
                    self.metrics.store_pruned_rows.labels(table).inc(n)
                if n < BATCH:
                    break
                await asyncio.sleep(0)  # let the loop's other work go between batches
            deleted[table] = total
        if any(deleted.values()):
            log.info("finished rows pruned", extra={"pruned": deleted})
        return deleted

    async def export_sizes(self) -> None:
        """Set ``remediator_store_rows`` and ``remediator_store_size_bytes``."""
        if self.metrics is None:
            return
        for table, rows in (await self.store.table_rows()).items():
            self.metrics.store_rows.labels(table).set(rows)
        self.metrics.store_size_bytes.set(await self.store.size_bytes())

    async def start(self) -> None:
        self._stopping = False
        await self._sizes.start()
        await self._periodic.start()

    async def stop(self) -> None:
        self._stopping = True
        await self._periodic.stop()
        await self._sizes.stop()
