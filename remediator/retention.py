"""Retention: events older than ``audit.retention`` are pruned hourly, behind a checkpoint."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from remediator import audit
from remediator.clock import Clock
from remediator.recording import Recording

log = logging.getLogger("remediator.retention")
INTERVAL = 3600.0


class Retention:
    def __init__(self, *, path: Path, retention: float, recording: Recording, clock: Clock) -> None:
        self.path = path
        self.retention = retention
        self.recording = recording
        self.clock = clock
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> int:
        now = self.clock.now()
        pruned = await asyncio.to_thread(
            audit.prune, self.path, self.recording, before=now - self.retention, now=now
        )
        if pruned:
            log.info("audit events pruned", extra={"pruned": pruned})
        return pruned

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._loop(), name="remediator-retention")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("retention round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=INTERVAL)
