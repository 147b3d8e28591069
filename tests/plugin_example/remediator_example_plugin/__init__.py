"""An example remediator plugin: one entry point in each group (see ``../pyproject.toml``).

* ``maintenance_file`` (``remediator.actions``): create or remove a flag file next to a
  ``process`` target's pidfile (many daemons switch to maintenance mode while it exists).
* ``drain`` (``remediator.strategies``): for ``QueueBacklog`` alerts no playbook handles, create
  a ``drain`` flag next to the pidfile of the process named by the ``instance`` label.
* ``maintenance_aware`` (``remediator.checks``): the health check of ``process`` targets,
  replacing the built-in one: healthy iff the pidfile names a live process and the target is
  not in maintenance.
* ``recorder`` (``remediator.subscribers``): remembers every recorded event of a few types.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from remediator.actions.base import ActionContext, ActionResult
from remediator.audit.events import Event, EventBus
from remediator.checks.base import CheckResult
from remediator.clients import Clients
from remediator.config.targets import ProcessTarget, Target
from remediator.engine.decisions import Decision
from remediator.plugins import Strategy
from remediator.tech.process import read_pidfile

__all__ = [
    "DRAIN",
    "MAINTENANCE_FLAG",
    "RECEIVED",
    "WATCHED",
    "MaintenanceAwareCheck",
    "MaintenanceFileAction",
    "MaintenanceParams",
    "subscribe",
]

log = logging.getLogger("remediator_example_plugin")
MAINTENANCE_FLAG = "maintenance"


def _set_flag(path: Path, present: bool) -> bool:
    """Create (exclusively) or remove ``path``; whether anything changed."""
    if present:
        try:
            with path.open("x", encoding="utf-8") as handle:
                handle.write("set by remediator\n")
        except FileExistsError:
            return False
        return True
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


# -- remediator.actions ------------------------------------------------------------------------


class MaintenanceParams(BaseModel):
    """The step's ``params``. A plugin validates its own parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # A bare file name (no '/', no leading dot): the flag always lands next to the pidfile.
    name: str = Field(default=MAINTENANCE_FLAG, pattern=r"^[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,63}$")
    present: bool = True  # False removes the flag


class MaintenanceFileAction:
    """Create (``present: true``) or remove the flag file ``name`` next to the pidfile.

    Idempotent: a flag already in the wanted state is success with ``changed: false``. Dry-run
    touches nothing. Never raises: every problem is an ``ok=False`` result.
    """

    name: ClassVar[str] = "maintenance_file"
    target_types: ClassVar[frozenset[str]] = frozenset({"process"})

    async def run(self, ctx: ActionContext) -> ActionResult:
        start = time.monotonic()

        def result(ok: bool, detail: str, data: dict[str, object] | None = None) -> ActionResult:
            return ActionResult(ok, detail, time.monotonic() - start, dict(data or {}))

        target = ctx.target
        if not isinstance(target, ProcessTarget):
            return result(False, "wrong target type")
        try:
            params = MaintenanceParams.model_validate(ctx.step.params)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "params"
            return result(False, f"invalid params: {where}: {first['msg']}")
        flag = Path(target.pidfile).with_name(params.name)
        verb = "set" if params.present else "clear"
        data: dict[str, object] = {"flag": params.name, "present": params.present}
        if ctx.dry_run:
            return result(True, f"dry-run: would {verb} {params.name!r} on {target.name}", data)
        try:
            changed = await asyncio.to_thread(_set_flag, flag, params.present)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            return result(False, f"could not {verb} {params.name!r} on {target.name}: {reason}")
        data["changed"] = changed
        state = "set" if params.present else "cleared"
        detail = f"{params.name!r} {'now' if changed else 'already'} {state} on {target.name}"
        return result(True, detail, data)


# -- remediator.strategies ---------------------------------------------------------------------


def _is_backlog(decision: Decision, labels: dict[str, str]) -> bool:
    return labels.get("alertname") == "QueueBacklog"


async def _drain(ctx: ActionContext) -> ActionResult:
    target = ctx.target
    if not isinstance(target, ProcessTarget):
        return ActionResult(False, "wrong target type")
    flag = Path(target.pidfile).with_name("drain")
    changed = await asyncio.to_thread(_set_flag, flag, True)
    state = "now" if changed else "already"
    return ActionResult(True, f"{target.name} is {state} draining", data={"changed": changed})


DRAIN = Strategy(
    name="drain",
    condition=_is_backlog,
    execute=_drain,
    target="{{ labels.instance }}",
    target_types=frozenset({"process"}),
    priority=10,
)


# -- remediator.checks -------------------------------------------------------------------------


def _probe(target: ProcessTarget) -> tuple[bool, str]:
    if Path(target.pidfile).with_name(MAINTENANCE_FLAG).exists():
        return False, f"example: {target.name} is in maintenance"
    pid = read_pidfile(target.pidfile)
    if pid is None:
        return False, f"example: invalid pidfile for {target.name}"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False, f"example: process {pid} of {target.name} is not running"
    except PermissionError:
        pass  # it exists, owned by someone else
    return True, f"example: process {pid} of {target.name} is running"


class MaintenanceAwareCheck:
    """Healthy iff the pidfile names a live process and no maintenance flag is set."""

    target_type: ClassVar[str] = "process"

    async def check(self, target: Target, clients: Clients, *, timeout: float) -> CheckResult:
        start = time.monotonic()
        if not isinstance(target, ProcessTarget):
            return CheckResult(False, "wrong target type", time.monotonic() - start)
        try:
            healthy, detail = await asyncio.wait_for(
                asyncio.to_thread(_probe, target), timeout=timeout
            )
        except TimeoutError:
            healthy, detail = False, f"example: probe timed out after {timeout}s"
        return CheckResult(healthy, detail, time.monotonic() - start)


# -- remediator.subscribers --------------------------------------------------------------------

WATCHED = ("recovery:action", "recovery:escalated", "service:degraded", "circuit:open")
RECEIVED: list[Event] = []


async def _remember(event: Event) -> None:
    RECEIVED.append(event)


def _on_circuit_open(event: Event) -> None:
    log.warning("circuit open: automatic recovery of %s stopped", event.target)


def subscribe(bus: EventBus) -> None:
    """Called once with the runtime's event bus, before anything is recorded."""
    for event_type in WATCHED:
        bus.on(event_type, _remember)
    bus.on("circuit:open", _on_circuit_open)
