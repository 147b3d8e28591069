"""The audit chain checked on a schedule, for the console's Now page and two gauges.

Every ``audit.verify_interval`` each replica verifies the records appended since the last one it
verified, with the verifier ``remediator audit verify`` uses (remediator/engine/verifier.py):
its first round walks the whole chain, later rounds start from the last verified record's id and
hash, kept in memory. When retention has pruned past that record, the round walks from the
retention checkpoint again. The check only reads, so every replica runs its own (no lease): the
page and the gauges of a replica say what that replica last found. It checks the hashes only;
``remediator audit verify --public-key`` also checks the signed checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass

from remediator.clock import Clock
from remediator.engine.periodic import Periodic
from remediator.engine.verifier import verify_store
from remediator.metrics import Metrics
from remediator.store import Store


@dataclass(frozen=True, slots=True)
class ChainStatus:
    """The last check: whether the chain verifies, when, how many records it holds through the
    last verified one, and the first broken record."""

    ok: bool
    checked_at: float
    records: int
    broken_at: int | None = None
    problem: str = ""


class Auditor:
    def __init__(self, *, store: Store, interval: float, clock: Clock, metrics: Metrics) -> None:
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.status: ChainStatus | None = None  # None until the first round
        self._verified: tuple[int, str] | None = None  # the last verified record (id, hash)
        self._periodic = Periodic("audit-verify", interval, self.run_once)

    async def run_once(self) -> ChainStatus:
        """Verify what was appended since the last verified record (all of it the first time)."""
        verdict = await verify_store(self.store, since=self._verified)
        now = self.clock.now()
        if verdict.ok:
            if verdict.head_id:
                last = await self.store.events_after(verdict.head_id - 1, 1)
                if last and last[0].id == verdict.head_id:
                    self._verified = (verdict.head_id, last[0].hash)
            status = ChainStatus(True, now, verdict.head_id)
        else:
            status = ChainStatus(False, now, 0, verdict.first_bad_id, verdict.problem)
        self.status = status
        self.metrics.audit_chain_ok.set(1 if status.ok else 0)
        self.metrics.audit_chain_last_check.set(now)
        return status

    async def start(self) -> None:
        await self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
