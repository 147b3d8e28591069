"""A background task that runs a round every ``interval`` seconds until stopped.

A failing round is logged and the loop goes on; ``stop()`` interrupts the wait at once and lets
the round in progress finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("remediator.periodic")


class Periodic:
    def __init__(self, name: str, interval: float, round_: Callable[[], Awaitable[Any]]) -> None:
        self.name = name
        self.interval = interval
        self._round = round_
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._loop(), name=f"remediator-{self.name}")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._round()
            except Exception:
                log.exception("round failed", extra={"task": self.name})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.interval)
