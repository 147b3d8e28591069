"""Scheduled restarts: the ``process.restart`` steps deferred to a maintenance window.

A ``process.restart`` step with a ``window`` that runs outside it keeps the restart in the
target's stored data (``scheduled_restart:KEY``: when it is due, the window's name, the step's
parameters with the unit already resolved from the alert; remediator/actions/process.py). Every
:data:`INTERVAL` seconds, the replica holding the ``schedule`` lease runs each restart that is
due: it first removes it from the stored data (a crash never runs it twice), then runs
``process.restart`` with those parameters once, as ``POST /trigger`` does
(remediator/engine/manual.py): through every guard, as one remediation whose events carry the
actor ``schedule``. A refused run (kill switch, quarantine, an open breaker, ...) is recorded as
a skipped run, as a manual one is; the restart is not kept for a later window.
"""

from __future__ import annotations

import logging
from typing import Any

from remediator.actions.process import SCHEDULED_RESTART
from remediator.clock import Clock
from remediator.engine import manual
from remediator.engine.engine import Engine
from remediator.engine.periodic import Periodic
from remediator.engine.worker import worker_name
from remediator.errors import RemediatorError
from remediator.store import Store

__all__ = ["ACTOR", "INTERVAL", "Scheduler", "due"]

log = logging.getLogger("remediator.schedule")
ACTOR = "schedule"
INTERVAL = 15.0
LEASE = "schedule"
LEASE_TTL = 3 * INTERVAL


def due(data: dict[str, Any], now: float) -> list[tuple[str, dict[str, Any]]]:
    """The scheduled restarts in a target's stored data that are due at ``now``, by key."""
    found = []
    for key, entry in sorted(data.items()):
        if not key.startswith(SCHEDULED_RESTART) or not isinstance(entry, dict):
            continue
        when = entry.get("due")
        if isinstance(when, int | float) and when <= now and isinstance(entry.get("params"), dict):
            found.append((key, entry))
    return found


class Scheduler:
    def __init__(
        self, *, engine: Engine, store: Store, clock: Clock, owner: str | None = None
    ) -> None:
        self.engine = engine
        self.store = store
        self.clock = clock
        self.owner = owner or worker_name()
        self._periodic = Periodic("schedule", INTERVAL, self.run_once)

    async def run_once(self) -> int:
        """One round: run the restarts that are due (if this replica holds the lease)."""
        now = self.clock.now()
        if not await self.store.lead(LEASE, owner=self.owner, now=now, ttl=LEASE_TTL):
            return 0
        ran = 0
        for target in self.engine.config.targets:
            data = (await self.store.target_state(target.name)).data
            for key, entry in due(data, now):
                await self.store.update_target_data(target.name, {key: None}, [])
                ran += 1
                window = str(entry.get("window", ""))
                try:
                    plan, found = manual.resolve(
                        self.engine.catalog,
                        target.name,
                        playbook=None,
                        action="process.restart",
                        params=dict(entry["params"]),
                    )
                    await manual.trigger(
                        self.engine.runs,
                        plan,
                        found,
                        actor=ACTOR,
                        force=False,
                        reason=f"maintenance window {window}",
                        dry_run=False,
                    )
                except RemediatorError as exc:  # refused: recorded by the run as skipped
                    log.warning(
                        "scheduled restart not run",
                        extra={"target": target.name, "code": exc.code},
                    )
        return ran

    async def start(self) -> None:
        await self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
