"""Process recovery action: process.signal (send a signal to the pid in the target's pidfile)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, ClassVar, Literal

from remediator.actions.base import ActionContext, ActionResult, BuiltinAction, Signal, StepModel
from remediator.targets import ProcessTarget
from remediator.tech.process import parse_signal, read_pidfile


class ProcessSignal(StepModel):
    action: Literal["process.signal"]
    signal: Signal = "SIGHUP"


__all__ = ["ACTIONS", "ProcessSignal", "ProcessSignalAction"]


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


ACTIONS: tuple[BuiltinAction, ...] = (ProcessSignalAction(),)
