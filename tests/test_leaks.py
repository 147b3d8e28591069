"""Memory leak detection: a process whose RSS climbs is flagged by its health check, and a
playbook restarts it (remediator/checks/leak.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from remediator.actions.base import ActionContext
from remediator.actions.systemd import SystemdStart, SystemdStartAction
from remediator.checks.leak import LeakWatch, leaking
from remediator.checks.ssh import SshHostCheck
from remediator.clients import Clients
from remediator.config.targets import LeakCheck, ProcessTarget
from remediator.tech.process import read_pidfile
from tests.engine_harness import EngineHarness, alert
from tests.sshhost import Sshd, Units, host_target
from tests.test_hosts_engine import run_engine

SPEC = LeakCheck(window=60, min_growth="1m", min_samples=4)
MIB = 1 << 20
# Grows by about 2 MiB a second until it is killed.
LEAKER = "import time\nheap = []\nwhile True:\n    heap.append(b'x' * 200_000)\n    time.sleep(0.1)"
SUPERVISOR = 'while true; do "$2" -c "$3" & echo "$!" > "$1"; wait "$!"; done'


def test_a_steady_climb_over_the_window_is_a_leak() -> None:
    samples = [(t * 20.0, 100 * MIB + t * MIB) for t in range(4)]
    assert leaking(samples, SPEC) == (
        "RSS grew steadily by 3072 KiB in 60s (102400 -> 105472 KiB, 4 samples)"
    )


@pytest.mark.parametrize(
    "samples",
    [
        [(0.0, 100 * MIB), (20.0, 101 * MIB), (40.0, 90 * MIB), (60.0, 104 * MIB)],  # a drop
        [(0.0, 100 * MIB), (10.0, 101 * MIB), (20.0, 102 * MIB), (30.0, 104 * MIB)],  # short
        [(0.0, 100 * MIB), (60.0, 104 * MIB)],  # too few samples
        [(t * 20.0, 100 * MIB + t * 1000) for t in range(4)],  # too little growth
    ],
)
def test_no_leak_without_a_steady_climb_over_the_window(samples: list[tuple[float, int]]) -> None:
    assert leaking(samples, SPEC) is None


def test_a_new_pid_starts_a_new_history() -> None:
    watch = LeakWatch()
    for t in range(3):
        assert watch.observe("w", pid=10, at=t * 20.0, rss=100 * MIB + t * MIB, spec=SPEC) is None
    assert watch.observe("w", pid=11, at=60.0, rss=110 * MIB, spec=SPEC) is None
    assert watch.observe("w", pid=10, at=80.0, rss=120 * MIB, spec=SPEC) is None


def test_sizes_and_units_are_checked() -> None:
    assert LeakCheck(window=10, min_growth="64m").min_growth == 64 * MIB
    assert LeakCheck(window=10, min_growth="512KiB").min_growth == 512 * 1024
    with pytest.raises(ValidationError, match="invalid size"):
        LeakCheck(window=10, min_growth="lots")
    with pytest.raises(ValidationError, match=r"leak\.unit is for ssh_host"):
        ProcessTarget(
            type="process", name="p", pidfile="/x", leak={"window": 5, "min_growth": 1, "unit": "u"}
        )


@pytest.fixture
def leaker(tmp_path: Path) -> Iterator[Path]:
    """A leaking python process kept up by a shell loop; its group is killed by PID afterwards."""
    pidfile = tmp_path / "leaker.pid"
    proc = subprocess.Popen(
        ["sh", "-c", SUPERVISOR, "sh", str(pidfile), sys.executable, LEAKER],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while read_pidfile(str(pidfile)) is None:
            assert time.monotonic() < deadline, "the leaker did not start"
            time.sleep(0.05)
        yield pidfile
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def test_a_leaking_process_is_flagged_and_restarted_by_a_playbook(
    tmp_path: Path, leaker: Path
) -> None:
    target: dict[str, Any] = {
        "type": "process",
        "name": "leaker",
        "pidfile": str(leaker),
        "leak": {"window": "3s", "min_growth": "1m", "min_samples": 3},
    }
    book = {
        "name": "restart-leaker",
        "match": ['alertname="ProcessMemoryLeak"'],
        "target": "leaker",
        "steps": [
            {"action": "process.restart", "timeout": "10s"},
            {"action": "verify.health", "within": "5s", "interval": "1s"},
        ],
        "cooldown": "0s",
        "retry": {"max_attempts": 1},
    }
    first = read_pidfile(str(leaker))

    async def body(h: EngineHarness) -> None:
        [registered] = h.rt.config.targets
        flagged = None
        deadline = time.monotonic() + 15
        while flagged is None and time.monotonic() < deadline:
            result = await h.rt.monitor.check_now(registered)
            if not result.healthy:
                flagged = result.detail
            await asyncio.sleep(0.4)
        assert flagged is not None and flagged.startswith(f"process {first} leaks memory: RSS")
        [degraded] = await h.events("service:degraded")
        assert degraded.target == "leaker" and degraded.message == flagged
        await h.send(alert("leak", alertname="ProcessMemoryLeak"))
        await h.drain()
        assert len(await h.events("recovery:succeeded")) == 1
        [step] = [e for e in await h.events("recovery:action") if e.action == "process.restart"]
        assert step.details["data"]["pid_before"] == first

    run_engine(tmp_path, {"targets": [target], "playbooks": [book]}, body)
    second = read_pidfile(str(leaker))
    assert second is not None and second != first


def test_a_leaking_unit_on_a_host_is_flagged_over_ssh(
    tmp_path: Path, sshd: Sshd, units: Units
) -> None:
    script = tmp_path / "leaker.py"
    script.write_text(LEAKER)
    unit = units.create("leaker", exec_line=f"{sys.executable} {script}")
    target = host_target(
        sshd,
        units=[unit],
        health_units=[unit],
        leak={"unit": unit, "window": "3s", "min_growth": "1m", "min_samples": 3},
    )

    async def main() -> tuple[int, list[str]]:
        clients = Clients()
        try:
            started = await SystemdStartAction().run(
                ActionContext(
                    target=target,
                    step=SystemdStart(action="systemd.start", unit=unit),
                    clients=clients,
                )
            )
            assert started.ok, started.detail
            pid = units.pid(unit)
            details: list[str] = []
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                result = await SshHostCheck().check(target, clients, timeout=10)
                details.append(result.detail)
                if not result.healthy:
                    break
                await asyncio.sleep(0.4)
            return pid, details
        finally:
            await clients.aclose()

    pid, details = asyncio.run(main())
    assert details[0] == f"reachable; {unit} active"
    assert details[-1].startswith(f"{unit} (pid {pid}) leaks memory: RSS grew steadily by ")
