"""Escalating what did not recover: a remediation finished, but its alert is still firing
``no_recovery_within`` later. Each escalation level that handles ``no_recovery`` waits its own
``no_recovery_within`` and escalates each remediation once (one ``recovery:escalated`` event
naming the level in ``details.level``); an alert that resolves before a level's time stops that
level. Each round reads only the finished remediations of open episodes (index look-ups, in
pages), never the whole history.

Runs on one replica at a time (the ``escalator`` lease).
"""

from __future__ import annotations

import logging

from remediator.audit import events as ev
from remediator.audit.events import Event
from remediator.clock import Clock
from remediator.config.model import Config, EscalationLevel
from remediator.engine.periodic import Periodic
from remediator.engine.worker import worker_name
from remediator.metrics import Metrics
from remediator.store import Store
from remediator.store.records import Remediation

log = logging.getLogger("remediator.escalator")
INTERVAL = 15.0
REASON = "no_recovery"
PAGE = 500  # remediations read per query


class Escalator:
    def __init__(self, *, config: Config, store: Store, clock: Clock, metrics: Metrics) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.owner = worker_name()
        self._periodic = Periodic("escalator", INTERVAL, self.run_once)

    def levels(self) -> list[EscalationLevel]:
        """The levels that handle ``no_recovery``."""
        return [lvl for lvl in self.config.escalation.levels if REASON in lvl.when]

    def window(self) -> float | None:
        """The shortest ``no_recovery_within`` of the levels that handle ``no_recovery``."""
        waits = [lvl.no_recovery_within for lvl in self.levels()]
        return min(waits) if waits else None

    async def run_once(self) -> int:
        levels, wait = self.levels(), self.window()
        if wait is None:
            return 0
        now = self.clock.now()
        if not await self.store.lead("escalator", owner=self.owner, now=now, ttl=INTERVAL * 4):
            return 0
        escalated, after = 0, 0
        while True:
            page = await self.store.unrecovered(
                finished_before=now - wait, after_id=after, limit=PAGE
            )
            for rem in page:
                for level in levels:
                    escalated += await self._escalate(rem, level, now)
            if len(page) < PAGE:
                return escalated
            after = page[-1].id

    async def _escalate(self, rem: Remediation, level: EscalationLevel, now: float) -> int:
        """Escalate ``rem`` at ``level`` if the level's time has passed and it has not yet."""
        assert rem.finished_at is not None
        if now - rem.finished_at < level.no_recovery_within:
            return 0
        flag = f"escalated:{REASON}:{rem.id}:{level.name}"
        if await self.store.flag(flag) is not None:
            return 0
        if await self.store.flag(f"escalated:{REASON}:{rem.id}") is not None:
            return 0  # escalated before levels waited their own time: at every level at once
        event = Event(
            type=ev.RECOVERY_ESCALATED, time=now, severity="high", target=rem.target,
            playbook=rem.playbook, fingerprint=rem.fingerprint, outcome=REASON,
            actor="escalator",
            message=f"{rem.playbook} finished {now - rem.finished_at:.0f}s ago on "
            f"{rem.target}; the alert is still firing (escalation level {level.name})",
            details={"episode": rem.episode_id, "reason": REASON, "level": level.name},
        )  # fmt: skip
        await self.store.set_flag(flag, "1", actor="escalator", now=now, events=[event])
        self.metrics.escalations.labels(REASON).inc()
        return 1

    async def start(self) -> None:
        await self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
