"""The progress of a running step: what an action reports while it runs, recorded at once.

An action that runs for long (``ansible.playbook``: one item per task result) reports through
its context's ``progress`` (remediator/actions/base.py), on the event loop. A
:class:`ProgressLog`, made by the runner for one real (not dry) step, turns each item into a
``recovery:progress`` event carrying the step's fields (target, playbook, action, the alert's
fingerprint) and appends it to the audit chain as it comes, in order (what arrives while an
append is under way goes in the next one, as one batch): the chain shows the run while it goes,
before the step's ``recovery:action``. At most :data:`MAX_EVENTS` per step; only the fields of
:data:`FIELDS` are kept, each string cut to :data:`MAX_TEXT` characters and redacted. An append
that fails is logged and the step goes on: progress never fails a step.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from remediator.audit import events as ev
from remediator.audit.events import Event, evolve
from remediator.clock import Clock
from remediator.redaction import redact, redact_text
from remediator.store.base import AuditChain

__all__ = ["FIELDS", "MAX_EVENTS", "MAX_TEXT", "ProgressLog"]

log = logging.getLogger("remediator.progress")
MAX_EVENTS = 200
MAX_TEXT = 200
FIELDS = ("task", "host", "status", "changed")


def _bounded(item: Mapping[str, Any]) -> dict[str, Any]:
    """The item's known fields: strings cut and redacted, ``changed`` a boolean."""
    kept: dict[str, Any] = {}
    for name in FIELDS:
        value = item.get(name)
        if name == "changed":
            kept[name] = bool(value)
        elif value is not None:
            kept[name] = str(value)[:MAX_TEXT]
    redacted: dict[str, Any] = redact(kept)
    return redacted


class ProgressLog:
    """Records one step's progress items as ``recovery:progress`` events, in order."""

    def __init__(self, *, store: AuditChain, clock: Clock, base: Event) -> None:
        self.store = store
        self.clock = clock
        self.base = base  # the step's event: target, playbook and action filled in
        self.count = 0
        self._pending: list[Event] = []
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    def report(self, item: Mapping[str, Any]) -> None:
        """Record one item (called on the event loop); ignored after :meth:`close`."""
        if self._closed or self.count >= MAX_EVENTS:
            return
        self.count += 1
        self._pending.append(self._event(item))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(
                self._write(), name="remediator-progress"
            )

    async def close(self) -> None:
        """Take no more items and wait until every item reported so far is appended."""
        self._closed = True
        if self._writer is not None:
            await asyncio.shield(self._writer)

    def _event(self, item: Mapping[str, Any]) -> Event:
        fields = _bounded(item)
        status = str(fields.get("status", ""))
        what = f"{fields.get('task', '')} on {fields.get('host', '')}: {status}"
        return evolve(
            self.base,
            type=ev.RECOVERY_PROGRESS,
            time=self.clock.now(),
            outcome=status,
            message=redact_text(what),
            details={**self.base.details, **fields},
        )

    async def _write(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self.store.append(batch)
            except Exception:
                log.warning("progress events not recorded", extra={"events": len(batch)})
