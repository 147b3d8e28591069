"""Retention: events older than ``audit.retention`` are pruned hourly, behind a checkpoint."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from remediator import audit
from remediator.clock import Clock
from remediator.periodic import Periodic
from remediator.recording import Recording

log = logging.getLogger("remediator.retention")
INTERVAL = 3600.0


class Retention:
    def __init__(self, *, path: Path, retention: float, recording: Recording, clock: Clock) -> None:
        self.path = path
        self.retention = retention
        self.recording = recording
        self.clock = clock
        self._periodic = Periodic("retention", INTERVAL, self.run_once)

    async def run_once(self) -> int:
        now = self.clock.now()
        pruned = await asyncio.to_thread(
            audit.prune, self.path, self.recording, before=now - self.retention, now=now
        )
        if pruned:
            log.info("audit events pruned", extra={"pruned": pruned})
        return pruned

    async def start(self) -> None:
        await self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
