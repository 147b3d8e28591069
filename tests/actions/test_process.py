"""process.signal and the process health check against real child processes (by PID only)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remediator.actions.base import Action, ActionContext, ActionResult
from remediator.actions.process import ACTIONS, ProcessSignal, ProcessSignalAction
from remediator.checks.base import CheckResult
from remediator.checks.process import CHECKS, ProcessAliveCheck
from remediator.clients import Clients
from remediator.config import steps
from remediator.config.targets import HttpTarget, ProcessTarget, Target
from remediator.tech.process import parse_signal

CHILD = textwrap.dedent(
    """
    import pathlib, signal, sys, time
    out, ready = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    signal.signal(signal.SIGUSR1, lambda signum, frame: out.write_text("got SIGUSR1"))
    ready.write_text("ready")
    while True:
        time.sleep(0.02)
    """
)


def wait_until(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


class Child:
    def __init__(self, proc: subprocess.Popen[bytes], out: Path, pidfile: Path) -> None:
        self.proc, self.out, self.pidfile = proc, out, pidfile

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def child(tmp_path: Path) -> Iterator[Child]:
    out, ready, pidfile = tmp_path / "out", tmp_path / "ready", tmp_path / "app.pid"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(out), str(ready)])
    started = Child(proc, out, pidfile)
    try:
        assert wait_until(ready.exists), "child did not start"
        pidfile.write_text(f"{proc.pid}\n")
        yield started
    finally:
        started.stop()


def run_action(action: Action, target: Target, step: Any, *, dry_run: bool = False) -> ActionResult:
    async def main() -> ActionResult:
        clients = Clients()
        try:
            ctx = ActionContext(target=target, step=step, clients=clients, dry_run=dry_run)
            return await action.run(ctx)
        finally:
            await clients.aclose()

    return asyncio.run(main())


def check(target: ProcessTarget) -> CheckResult:
    return asyncio.run(ProcessAliveCheck().check(target, Clients(), timeout=5))


def proc_target(pidfile: Path | str) -> ProcessTarget:
    return ProcessTarget(type="process", name="app", pidfile=str(pidfile))


def sig(name: str) -> ProcessSignal:
    return ProcessSignal(action="process.signal", signal=name)


def test_exports() -> None:
    # every process.* step of the registry, and nothing else, comes from this module
    assert sorted(a.name for a in ACTIONS) == [
        n for n in steps.action_names() if n.startswith("process.")
    ]
    assert [a.target_types for a in ACTIONS] == [
        frozenset({"process"}),
        frozenset({"process", "ssh_host"}),  # process.restart of a unit on a host
    ]
    assert [c.target_type for c in CHECKS] == ["process"]


@pytest.mark.parametrize("name", ["SIGUSR1", "USR1"])
def test_signal_is_delivered(child: Child, name: str) -> None:
    result = run_action(ProcessSignalAction(), proc_target(child.pidfile), sig(name))
    assert result.ok, result.detail
    assert result.data == {"pid": child.proc.pid, "signal": "SIGUSR1"}
    assert wait_until(lambda: child.out.exists() and child.out.read_text() == "got SIGUSR1")
    assert child.proc.poll() is None  # handled, still running


def test_dry_run_sends_nothing(child: Child) -> None:
    result = run_action(
        ProcessSignalAction(), proc_target(child.pidfile), sig("USR1"), dry_run=True
    )
    assert result.ok and result.detail == "dry-run: would send SIGUSR1 to the pid in app"
    time.sleep(0.3)
    assert not child.out.exists()


@pytest.mark.parametrize("content", ["1", "0", "-5", "abc", "", "12 34", "9" * 100, "OWN"])
def test_invalid_pidfiles_are_refused(tmp_path: Path, content: str) -> None:
    pidfile = tmp_path / "bad.pid"
    pidfile.write_text(str(os.getpid()) if content == "OWN" else content)
    result = run_action(ProcessSignalAction(), proc_target(pidfile), sig("HUP"))
    assert (result.ok, result.detail) == (False, "invalid pidfile for app")
    assert not check(proc_target(pidfile)).healthy


def test_missing_pidfile_is_refused(tmp_path: Path) -> None:
    result = run_action(ProcessSignalAction(), proc_target(tmp_path / "nope.pid"), sig("HUP"))
    assert (result.ok, result.detail) == (False, "invalid pidfile for app")


def test_process_that_does_not_exist(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(10)  # exited and reaped: its pid is free
    pidfile = tmp_path / "gone.pid"
    pidfile.write_text(str(gone.pid))
    result = run_action(ProcessSignalAction(), proc_target(pidfile), sig("HUP"))
    assert not result.ok and "does not exist" in result.detail


def test_unknown_signal(child: Child) -> None:
    assert parse_signal("hup") is not None and parse_signal("SIGFOO") is None
    result = run_action(ProcessSignalAction(), proc_target(child.pidfile), sig("SIGFOO"))
    assert (result.ok, result.detail) == (False, "unknown signal 'SIGFOO'")


def test_wrong_target_type() -> None:
    target = HttpTarget(type="http", name="web", base_url="http://127.0.0.1:1")
    result = run_action(ProcessSignalAction(), target, sig("HUP"))
    assert (result.ok, result.detail) == (False, "wrong target type")


def test_health_check_up_and_down(child: Child) -> None:
    up = check(proc_target(child.pidfile))
    assert up.healthy and up.detail == f"process {child.proc.pid} is running"
    child.stop()
    down = check(proc_target(child.pidfile))
    assert not down.healthy and "not running" in down.detail


def test_health_check_sees_a_zombie(child: Child) -> None:
    os.kill(child.proc.pid, signal.SIGKILL)  # our own child, by PID; not reaped yet
    try:
        assert wait_until(lambda: "zombie" in check(proc_target(child.pidfile)).detail)
        assert not check(proc_target(child.pidfile)).healthy
    finally:
        child.proc.wait(5)
