"""process.restart against a real process kept up by a tiny supervisor shell loop (by PID only)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from remediator.actions import builtin_actions
from remediator.actions.base import ActionContext, ActionResult
from remediator.actions.process import ProcessRestart, ProcessRestartAction
from remediator.checks.process import ProcessAliveCheck
from remediator.clients import Clients
from remediator.config.steps import ACTION_TARGET_TYPES, STATE_CHANGING, Step
from remediator.config.targets import ProcessTarget, Target
from remediator.tech.process import read_pidfile
from tests.actions.test_process import wait_until

# The supervisor: start the worker, write its pid, wait for it to exit, start it again.
SUPERVISOR = 'while true; do sleep 300 & echo "$!" > "$1"; wait "$!"; done'


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat", "rb") as handle:  # a zombie is not alive
        return handle.read().rpartition(b")")[2][1:2] != b"Z"


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop the process group this test started (its leader is ``proc``, by PID)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(5)


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    pidfile = tmp_path / "worker.pid"
    proc = subprocess.Popen(["sh", "-c", SUPERVISOR, "sh", str(pidfile)], start_new_session=True)
    try:
        assert wait_until(lambda: read_pidfile(str(pidfile)) is not None), "no worker started"
        yield proc, pidfile
    finally:
        stop_group(proc)


def target(pidfile: Path) -> ProcessTarget:
    return ProcessTarget(type="process", name="worker", pidfile=str(pidfile))


def restart(target: Target, *, timeout: float = 10.0, dry_run: bool = False) -> ActionResult:
    step = ProcessRestart(action="process.restart", timeout=timeout)

    async def main() -> ActionResult:
        clients = Clients()
        try:
            ctx = ActionContext(target=target, step=step, clients=clients, dry_run=dry_run)
            return await ProcessRestartAction().run(ctx)
        finally:
            await clients.aclose()

    return asyncio.run(main())


def test_process_restart_is_a_registered_state_changing_step_on_process_targets() -> None:
    step = TypeAdapter(Step).validate_python({"action": "process.restart"})
    assert isinstance(step, ProcessRestart) and step.signal == "SIGTERM"
    assert isinstance(builtin_actions()["process.restart"], ProcessRestartAction)
    assert ACTION_TARGET_TYPES["process.restart"] == frozenset({"process", "ssh_host"})
    assert "process.restart" in STATE_CHANGING


def test_an_unknown_signal_is_a_configuration_error() -> None:
    with pytest.raises(ValidationError, match="unknown signal"):
        TypeAdapter(Step).validate_python({"action": "process.restart", "signal": "SIGFOO"})


def test_the_supervised_process_is_restarted_under_a_new_pid(
    supervised: tuple[subprocess.Popen[bytes], Path],
) -> None:
    _, pidfile = supervised
    before = read_pidfile(str(pidfile))
    assert before is not None and alive(before)
    result = restart(target(pidfile))
    assert result.ok, result.detail
    after = result.data["pid_after"]
    assert result.data == {"pid_before": before, "pid_after": after, "signal": "SIGTERM"}
    assert after != before and alive(after) and not alive(before)
    assert result.detail == f"process of worker restarted: pid {before} -> {after}"
    checked = asyncio.run(ProcessAliveCheck().check(target(pidfile), Clients(), timeout=5))
    assert checked.healthy and checked.detail == f"process {after} is running"


def test_a_dry_run_signals_nothing(supervised: tuple[subprocess.Popen[bytes], Path]) -> None:
    _, pidfile = supervised
    before = read_pidfile(str(pidfile))
    result = restart(target(pidfile), dry_run=True)
    assert result.ok
    assert (
        result.detail == "dry-run: would send SIGTERM to the pid in worker and wait for a new pid"
    )
    time.sleep(0.3)
    assert read_pidfile(str(pidfile)) == before and before is not None and alive(before)


def test_a_process_without_supervisor_stays_down_and_the_step_times_out(tmp_path: Path) -> None:
    lone = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        pidfile = tmp_path / "lone.pid"
        pidfile.write_text(f"{lone.pid}\n")
        result = restart(target(pidfile), timeout=1.0)
        assert not result.ok
        assert result.detail == "process.restart on worker: timed out after 1.0s"
        assert lone.wait(5) == -signal.SIGTERM  # it was stopped, and nobody started it again
    finally:
        stop_group(lone)


def test_an_invalid_pidfile_is_refused(tmp_path: Path) -> None:
    result = restart(target(tmp_path / "missing.pid"))
    assert (result.ok, result.detail) == (False, "invalid pidfile for worker")
