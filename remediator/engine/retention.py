"""Retention: events older than ``audit.retention`` are pruned hourly, behind a checkpoint.

Works on every backend (:meth:`Store.prune <remediator.store.base.Store.prune>`: one
transaction). With several replicas on one database, only the one holding the ``retention``
lease prunes; another takes over within a few intervals if it dies.
"""

from __future__ import annotations

import logging
from typing import Protocol

from remediator.audit.recording import Recording
from remediator.clock import Clock
from remediator.engine.periodic import Periodic
from remediator.engine.worker import worker_name
from remediator.store import base as roles

log = logging.getLogger("remediator.retention")
INTERVAL = 3600.0
LEASE = "retention"
LEASE_TTL = 3 * INTERVAL


class RetentionStore(roles.Flags, roles.AuditChain, Protocol):
    """The store roles retention needs: its lease (``lead``) and the chain's ``prune``."""


class Retention:
    def __init__(
        self,
        *,
        store: RetentionStore,
        retention: float,
        recording: Recording,
        clock: Clock,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.retention = retention
        self.recording = recording
        self.clock = clock
        self.owner = owner or worker_name()
        self._periodic = Periodic("retention", INTERVAL, self.run_once)

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
        return pruned

    async def start(self) -> None:
        await self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
