"""Process recovery actions on the pid in the target's pidfile.

``process.signal`` sends a signal. ``process.restart`` sends a signal (SIGTERM) and waits for
the process's supervisor (systemd, runit, supervisord, a shell loop, ...) to start it again:
it succeeds when the pidfile names a new, live pid. remediator never starts a process itself
(no command, no shell): a process without a supervisor stays down and the step times out.

On an ``ssh_host`` target, ``process.restart`` restarts the process of an allow-listed systemd
``unit`` (its supervisor): it is ``systemd.restart`` of that unit, and its result carries the
unit's main pid before and after (remediator/actions/systemd.py).

With a ``window`` (remediator/config/windows.py), a restart outside the window is scheduled
instead: the step succeeds at once, and keeps the restart (its parameters, the unit resolved
from the alert) in the target's stored data under ``scheduled_restart:KEY``, due when the window
next opens; remediator/engine/schedule.py runs it then, through the guards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import replace
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from remediator.actions import systemd
from remediator.actions.base import (
    ActionContext,
    ActionResult,
    BuiltinAction,
    GuardedAction,
    Outcome,
    Signal,
    StepModel,
)
from remediator.actions.ssh import refusal
from remediator.clients import Clients
from remediator.config.commands import check_label_template
from remediator.config.targets import ProcessTarget, SshHostTarget
from remediator.config.windows import MaintenanceWindow
from remediator.errors import ArgumentRefused
from remediator.tech.process import parse_signal, read_pidfile

__all__ = [
    "ACTIONS",
    "ProcessRestart",
    "ProcessRestartAction",
    "ProcessSignal",
    "ProcessSignalAction",
]

_POLL = 0.1  # seconds between two reads of the pidfile while waiting for the new pid
SCHEDULED_RESTART = "scheduled_restart:"  # target data: a restart due at a window's opening


class ProcessSignal(StepModel):
    action: Literal["process.signal"]
    signal: Signal = "SIGHUP"


class ProcessRestart(StepModel):
    action: Literal["process.restart"] = Field(
        description="Signal the pid in the pidfile, then wait for its supervisor to write a "
        "new live pid there (remediator never starts a process itself)."
    )
    signal: Signal = Field(
        default="SIGTERM", description="The signal that stops the process, e.g. `TERM` or `INT`."
    )
    unit: str | None = Field(
        default=None,
        max_length=300,
        description="On an `ssh_host` target: the unit whose process is restarted (literal or "
        "`{{ labels.NAME }}`, one of the target's `units`).",
    )
    sudo: bool = Field(default=False, description="On an `ssh_host` target: `sudo -n systemctl`.")
    window: MaintenanceWindow | None = Field(
        default=None,
        description="Restart only within this maintenance window: outside it, the restart is "
        "scheduled for the window's next opening and the step succeeds at once.",
    )

    @field_validator("unit")
    @classmethod
    def _unit(cls, value: str | None) -> str | None:
        return None if value is None else check_label_template(value)

    @field_validator("signal")
    @classmethod
    def _known(cls, value: str) -> str:
        if parse_signal(value) is None:
            raise ValueError(f"unknown signal {value!r}")
        return value


class ProcessSignalAction:
    """os.kill(pid from the pidfile, the configured signal)."""

    name: ClassVar[str] = "process.signal"
    step_type: ClassVar[type[StepModel]] = ProcessSignal
    target_types: ClassVar[frozenset[str]] = frozenset({"process"})
    changes_state: ClassVar[bool] = True
    switches_endpoint: ClassVar[bool] = False

    async def run(self, ctx: ActionContext) -> ActionResult:
        start = time.monotonic()

        def result(ok: bool, detail: str, data: dict[str, Any] | None = None) -> ActionResult:
            return ActionResult(ok, detail, time.monotonic() - start, data or {})

        target, step = ctx.target, ctx.step
        if not isinstance(target, ProcessTarget):
            return result(False, "wrong target type")
        if not isinstance(step, ProcessSignal):
            return result(False, f"wrong step for {self.name}")
        sig = parse_signal(step.signal)
        if sig is None:
            return result(False, f"unknown signal {step.signal!r}")
        if ctx.dry_run:
            return result(True, f"dry-run: would send {sig.name} to the pid in {target.name}")
        try:
            pid = await asyncio.wait_for(
                asyncio.to_thread(read_pidfile, target.pidfile), timeout=step.timeout
            )
        except TimeoutError:
            return result(False, f"reading the pidfile of {target.name} timed out")
        if pid is None:
            return result(False, f"invalid pidfile for {target.name}")
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return result(False, f"process {pid} of {target.name} does not exist", {"pid": pid})
        except PermissionError:
            return result(False, f"not permitted to signal process {pid} of {target.name}")
        except OSError as exc:
            return result(False, f"signalling {pid} failed: {type(exc).__name__}")
        detail = f"sent {sig.name} to process {pid} of {target.name}"
        return result(True, detail, {"pid": pid, "signal": sig.name})


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True


class ProcessRestartAction(GuardedAction):
    """Signal the pid in the pidfile, then wait (up to the step's timeout) until the pidfile
    names a new live pid, written by the process's supervisor; on an ``ssh_host``, restart the
    step's unit."""

    name = "process.restart"
    step_type = ProcessRestart
    target_types: ClassVar[frozenset[str]] = frozenset({"process", "ssh_host"})
    target_class = ProcessTarget

    async def run(self, ctx: ActionContext) -> ActionResult:
        step = ctx.step
        if isinstance(step, ProcessRestart) and step.window is not None:
            now = ctx.now if ctx.now is not None else time.time()
            opens = step.window.next_start(now)
            if opens > now:
                return self._schedule(ctx, step, step.window, opens)
        if isinstance(ctx.target, SshHostTarget):
            return await self._remote(ctx)
        return await super().run(ctx)

    def _schedule(
        self, ctx: ActionContext, step: ProcessRestart, window: MaintenanceWindow, opens: float
    ) -> ActionResult:
        """Keep the restart for the window's opening (a later one replaces it)."""
        target = ctx.target
        params: dict[str, Any] = {"signal": step.signal, "timeout": step.timeout}
        key = "process"
        if isinstance(target, SshHostTarget):
            if step.unit is None:
                return ActionResult(False, f"{self.name} on {target.name}: an ssh_host needs unit")
            as_unit = systemd.SystemdRestart(action="systemd.restart", unit=step.unit)
            try:
                unit = systemd.resolve_unit(target, as_unit, dict(ctx.labels))
            except ArgumentRefused as exc:
                return refusal(self.name, target.name, exc)
            params.update(unit=unit, sudo=step.sudo)
            key = unit
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(opens))
        detail = f"restart of {target.name} scheduled for {when} (window {window.name})"
        if ctx.dry_run:
            return ActionResult(
                True, f"dry-run: {detail.replace('scheduled', 'would be scheduled', 1)}"
            )
        entry = {"due": opens, "window": window.name, "params": params}
        return ActionResult(
            True,
            detail,
            data={"scheduled_for": opens, "window": window.name},
            persist={SCHEDULED_RESTART + key: entry},
        )

    async def _remote(self, ctx: ActionContext) -> ActionResult:
        step = ctx.step
        if not isinstance(step, ProcessRestart):
            return ActionResult(False, f"wrong step for {self.name}")
        if step.unit is None:
            return ActionResult(False, f"{self.name} on {ctx.target.name}: an ssh_host needs unit")
        as_unit = systemd.SystemdRestart(
            action="systemd.restart", unit=step.unit, sudo=step.sudo, timeout=step.timeout
        )
        done = await _RESTART_UNIT.run(replace(ctx, step=as_unit))
        return replace(done, detail=done.detail.replace("systemd.restart", self.name, 1))

    def describe(self, target: ProcessTarget, step: ProcessRestart) -> str:
        return f"send {step.signal} to the pid in {target.name} and wait for a new pid"

    async def perform(
        self, target: ProcessTarget, step: ProcessRestart, clients: Clients
    ) -> Outcome:
        sig = parse_signal(step.signal)
        if sig is None:  # the step model refuses unknown names
            return False, f"unknown signal {step.signal!r}", {}
        before = await asyncio.to_thread(read_pidfile, target.pidfile)
        if before is None:
            return False, f"invalid pidfile for {target.name}", {}
        # Already gone (e.g. a taken-over step): wait for its successor all the same.
        with contextlib.suppress(ProcessLookupError):
            os.kill(before, sig)
        while True:
            await asyncio.sleep(_POLL)
            after = await asyncio.to_thread(read_pidfile, target.pidfile)
            if after is not None and after != before and _alive(after):
                detail = f"process of {target.name} restarted: pid {before} -> {after}"
                return True, detail, {"pid_before": before, "pid_after": after, "signal": sig.name}


_RESTART_UNIT = systemd.SystemdRestartAction()
ACTIONS: tuple[BuiltinAction, ...] = (ProcessSignalAction(), ProcessRestartAction())
