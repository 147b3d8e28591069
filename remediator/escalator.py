"""Escalating what did not recover: a remediation finished, but its alert is still firing
``no_recovery_within`` later (per escalation level). Each remediation escalates this way once.

Runs on one replica at a time (the ``escalator`` lease).
"""

from __future__ import annotations

import logging

from remediator import events as ev
from remediator.clock import Clock
from remediator.config import Config
from remediator.events import Event
from remediator.metrics import Metrics
from remediator.periodic import Periodic
from remediator.store import Store
from remediator.store.records import FAILED, SUCCEEDED
from remediator.worker import worker_name

log = logging.getLogger("remediator.escalator")
INTERVAL = 15.0
REASON = "no_recovery"


class Escalator:
    def __init__(self, *, config: Config, store: Store, clock: Clock, metrics: Metrics) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.owner = worker_name()
        self._periodic = Periodic("escalator", INTERVAL, self.run_once)

    def window(self) -> float | None:
        """The shortest ``no_recovery_within`` of the levels that handle ``no_recovery``."""
        waits = [
            lvl.no_recovery_within for lvl in self.config.escalation.levels if REASON in lvl.when
        ]
        return min(waits) if waits else None

    async def run_once(self) -> int:
        wait = self.window()
        if wait is None:
            return 0
        now = self.clock.now()
        if not await self.store.lead("escalator", owner=self.owner, now=now, ttl=INTERVAL * 4):
            return 0
        escalated = 0
        for state in (SUCCEEDED, FAILED):
            for rem in await self.store.remediations(state=state, limit=10_000):
                if rem.finished_at is None or now - rem.finished_at < wait:
                    continue
                flag = f"escalated:{REASON}:{rem.id}"
                if await self.store.flag(flag) is not None:
                    continue
                episode = await self.store.episode(rem.episode_id)
                if episode is None or not episode.open:
                    continue
                event = Event(
                    type=ev.RECOVERY_ESCALATED, time=now, severity="high", target=rem.target,
                    playbook=rem.playbook, fingerprint=rem.fingerprint, outcome=REASON,
                    actor="escalator",
                    message=f"{rem.playbook} finished {now - rem.finished_at:.0f}s ago on "
                    f"{rem.target}; the alert is still firing",
                    details={"episode": rem.episode_id, "reason": REASON},
                )  # fmt: skip
                await self.store.set_flag(flag, "1", actor="escalator", now=now, events=[event])
                self.metrics.escalations.labels(REASON).inc()
                escalated += 1
        return escalated

    async def start(self) -> None:
        await self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
