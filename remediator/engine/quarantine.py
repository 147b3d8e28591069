"""Quarantine: which targets are quarantined, and an operator lifting a quarantine.

The ``quarantine`` step (remediator/engine/runner.py) records the quarantine in the target's stored
state, and for a ``docker_container`` with ``pause: true`` pauses it and sets
``QUARANTINE_PAUSED`` in the target's data. Lifting (``DELETE /quarantine/{target}``, ``remediator quarantine lift``)
releases the target in one store transaction with its ``recovery:quarantine_lifted`` event, so
of two replicas lifting at once one lifts and the other finds nothing; the one that lifted
unpauses the container the quarantine paused. ``remediator_quarantined{target}`` follows the
store: set where this process changes it, and read again from the store on each scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from remediator.actions.base import Action, ActionContext, ActionResult
from remediator.actions.docker import DockerUnpause
from remediator.audit import events as ev
from remediator.audit.events import Event
from remediator.clients import Clients
from remediator.clock import iso
from remediator.config.model import Config
from remediator.engine.runner import QUARANTINE_PAUSED
from remediator.errors import NotQuarantined, StoreUnavailable
from remediator.metrics import Metrics
from remediator.redaction import redact_text
from remediator.store import Store
from remediator.store.records import TargetState

log = logging.getLogger("remediator.quarantine")


@dataclass(frozen=True, slots=True)
class Lifted:
    before: TargetState
    unpaused: bool | None  # None: the quarantine paused nothing
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {
            "target": self.before.target,
            "lifted": True,
            "quarantined_at": iso(self.before.quarantined_at or 0.0),
            "quarantine_reason": self.before.quarantine_reason or "",
            "unpaused": self.unpaused,
            "detail": self.detail,
        }


def state_json(state: TargetState) -> dict[str, Any]:
    return {
        "target": state.target,
        "quarantined_at": iso(state.quarantined_at or 0.0),
        "reason": state.quarantine_reason or "",
        "paused": bool(state.data.get(QUARANTINE_PAUSED)),
    }


async def export(store: Store, metrics: Metrics, *, names: list[str]) -> None:
    """Set ``remediator_quarantined`` for ``names`` and every quarantined target from the
    store (shared by every replica); unchanged while the store is unavailable."""
    try:
        quarantined = {s.target for s in await store.quarantined_targets()}
    except StoreUnavailable:
        return
    for name in sorted({*names, *quarantined}):
        metrics.quarantined.labels(name).set(1 if name in quarantined else 0)


async def lift_in(
    store: Store,
    name: str,
    *,
    actor: str,
    reason: str,
    now: float,
    config: Config,
    config_version: int,
    clients: Clients,
    unpause: Action | None,
    slots: asyncio.Semaphore | None = None,
) -> Lifted:
    """Release ``name`` from quarantine (:class:`NotQuarantined` if it is not), recorded as
    ``recovery:quarantine_lifted`` with ``actor``; then unpause (with ``unpause``, the
    ``docker.unpause`` action) the container the quarantine paused, recorded as a
    ``recovery:action`` event."""

    def events_for(before: TargetState) -> list[Event]:
        return [
            Event(
                type=ev.RECOVERY_QUARANTINE_LIFTED,
                time=now,
                target=name,
                action="quarantine",
                outcome="lifted",
                message=f"quarantine lifted by {actor}: {reason}",
                actor=actor,
                config_version=config_version,
                details={
                    "reason": reason,
                    "quarantine_reason": before.quarantine_reason or "",
                    "quarantined_at": before.quarantined_at,
                },
            )
        ]

    before = await store.lift_quarantine(name, drop=(QUARANTINE_PAUSED,), events_for=events_for)
    if before is None:
        raise NotQuarantined(f"target {name!r} is not quarantined")
    if not before.data.get(QUARANTINE_PAUSED):
        return Lifted(before, None, "quarantine lifted")
    target = config.target(name)
    if target is None or target.type != "docker_container":
        outcome = ActionResult(False, f"{name} is no longer a configured docker_container")
    elif unpause is None:
        outcome = ActionResult(False, "docker.unpause is not available")
    else:
        step = DockerUnpause(action="docker.unpause")
        async with slots if slots is not None else contextlib.nullcontext():
            try:
                outcome = await unpause.run(
                    ActionContext(target=target, step=step, clients=clients)
                )
            except Exception as exc:
                log.exception("unpause raised", extra={"target": name})
                outcome = ActionResult(False, f"docker.unpause raised {type(exc).__name__}")
    await store.append(
        [
            Event(
                type=ev.RECOVERY_ACTION,
                time=now,
                target=name,
                action="docker.unpause",
                outcome="success" if outcome.ok else "failure",
                duration=outcome.duration,
                message=redact_text(outcome.detail),
                actor=actor,
                config_version=config_version,
                details={"quarantine_lifted": True},
            )
        ]
    )
    return Lifted(before, outcome.ok, f"quarantine lifted; {outcome.detail}")
