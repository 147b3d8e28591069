"""systemd.* and ssh.run on an ``ssh_host`` target, over the real sshd of tests/services.sh.

systemd cannot run as PID 1 on the test machine: the units here belong to the systemctl
stand-in (tests/fixtures/hosts/systemctl), which keeps unit state in files and answers like
systemctl; the target names it as its ``systemctl``. docs/runbook.md gives the manual check
against a real systemd.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from remediator.actions import builtin_actions
from remediator.actions.base import ActionContext, ActionResult
from remediator.checks.ssh import SshHostCheck
from remediator.clients import Clients
from remediator.config.steps import ACTION_TARGET_TYPES, STATE_CHANGING, Step
from remediator.config.targets import SshHostTarget
from tests.sshhost import Sshd, Units, host_target


def act(
    target: SshHostTarget,
    step: dict[str, Any],
    *,
    labels: Mapping[str, str] | None = None,
    dry_run: bool = False,
) -> ActionResult:
    parsed = TypeAdapter(Step).validate_python(step)
    action = builtin_actions()[step["action"]]

    async def main() -> ActionResult:
        clients = Clients()
        try:
            ctx = ActionContext(
                target=target, step=parsed, clients=clients, dry_run=dry_run, labels=labels or {}
            )
            return await action.run(ctx)
        finally:
            await clients.aclose()

    return asyncio.run(main())


def check(target: SshHostTarget) -> tuple[bool, str]:
    async def main() -> tuple[bool, str]:
        clients = Clients()
        try:
            result = await SshHostCheck().check(target, clients, timeout=10)
            return result.healthy, result.detail
        finally:
            await clients.aclose()

    return asyncio.run(main())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    return stat.rpartition(b")")[2][1:2] != b"Z"


def test_the_host_actions_are_registered_state_changing_steps_on_ssh_hosts() -> None:
    for name in ("systemd.restart", "systemd.start", "systemd.stop", "systemd.reload", "ssh.run"):
        assert ACTION_TARGET_TYPES[name] == frozenset({"ssh_host"})
        assert name in STATE_CHANGING


def test_a_target_needs_exactly_one_private_key_and_a_pinned_host_key(sshd: Sshd) -> None:
    with pytest.raises(ValidationError, match="exactly one of private_key_file"):
        host_target(sshd, private_key_env="KEY")
    with pytest.raises(ValidationError, match="host_key"):
        host_target(sshd, host_key="not a key")
    with pytest.raises(ValidationError, match="health_units not in units"):
        host_target(sshd, units=["a.service"], health_units=["b.service"])
    with pytest.raises(ValidationError, match="has no regex"):
        host_target(sshd, commands={"c": {"argv": ["echo", "{{ labels.x }}"]}})


def test_a_unit_is_restarted_and_verified_with_its_state_before_and_after(
    sshd: Sshd, units: Units
) -> None:
    unit = units.create("web", exec_line="sleep 600")
    target = host_target(sshd, units=[unit], health_units=[unit])
    assert check(target) == (False, f"reachable; not all units active: {unit} inactive")
    started = act(target, {"action": "systemd.start", "unit": unit})
    assert started.ok, started.detail
    first = units.pid(unit)
    assert first > 1 and alive(first)
    restarted = act(target, {"action": "systemd.restart", "unit": unit})
    assert restarted.ok, restarted.detail
    second = units.pid(unit)
    assert second != first and alive(second) and not alive(first)
    assert restarted.data["before"] == {
        "ActiveState": "active",
        "SubState": "running",
        "MainPID": first,
    }
    assert restarted.data["after"] == {
        "ActiveState": "active",
        "SubState": "running",
        "MainPID": second,
    }
    assert restarted.detail == (
        f"systemctl restart {unit} on host1: active/running (pid {first} -> {second})"
    )
    assert check(target) == (True, f"reachable; {unit} active")
    assert ["restart", "--", unit] in units.calls(unit)


def test_stop_and_reload_report_the_units_state(sshd: Sshd, units: Units) -> None:
    unit = units.create("worker", exec_line="sleep 600")
    target = host_target(sshd, units=[unit])
    reload_down = act(target, {"action": "systemd.reload", "unit": unit})
    assert not reload_down.ok and reload_down.detail.endswith("exit status 1")
    assert act(target, {"action": "systemd.start", "unit": unit}).ok
    assert act(target, {"action": "systemd.reload", "unit": unit}).ok
    stopped = act(target, {"action": "systemd.stop", "unit": unit})
    assert stopped.ok and stopped.data["after"]["ActiveState"] == "inactive"
    assert units.state(unit) == "inactive"


def test_the_unit_can_come_from_a_label_but_must_be_on_the_list(sshd: Sshd, units: Units) -> None:
    unit = units.create("api", active=True)
    other = units.create("db", active=True)
    target = host_target(sshd, units=[unit])
    step = {"action": "systemd.restart", "unit": "{{ labels.unit }}"}
    assert act(target, step, labels={"unit": unit}).ok
    before = len(sshd.commands())
    refused = act(target, step, labels={"unit": other})
    assert not refused.ok
    assert refused.detail == (
        f"systemd.restart on host1 refused: unit {other!r} is not in the units of host1"
    )
    dry = act(target, {"action": "systemd.stop", "unit": other}, dry_run=True)
    assert not dry.ok and "refused" in dry.detail
    assert len(sshd.commands()) == before
    assert units.calls(other) == []


def test_sudo_runs_systemctl_through_sudo_n(sshd: Sshd, units: Units) -> None:
    unit = units.create("cache", active=True)
    target = host_target(sshd, units=[unit])
    done = act(target, {"action": "systemd.restart", "unit": unit, "sudo": True})
    assert done.ok, done.detail
    assert any(
        line.startswith(f"timeout -k 2 10.0 sudo -n {sshd.systemctl} restart")
        for line in sshd.commands()
    )


def test_ssh_run_runs_a_named_command_with_a_checked_label(sshd: Sshd) -> None:
    target = host_target(
        sshd,
        commands={
            "greet": {
                "argv": ["echo", "hello", "{{ labels.queue }}"],
                "labels": {"queue": "^[a-z0-9-]{1,40}$"},
            },
            "fail": {"argv": ["sh", "-c", "echo password=hunter2 >&2; exit 3"]},
        },
    )
    done = act(target, {"action": "ssh.run", "command": "greet"}, labels={"queue": "jobs-1"})
    assert done.ok, done.detail
    assert done.data == {
        "command": "greet",
        "exit_status": 0,
        "stdout": "hello jobs-1\n",
        "stderr": "",
    }
    failed = act(target, {"action": "ssh.run", "command": "fail"})
    assert not failed.ok and failed.detail == "command fail on host1: exit status 3"
    assert failed.data["stderr"] == "password=***\n"
    unknown = act(target, {"action": "ssh.run", "command": "nope"})
    assert not unknown.ok and "is not in the commands of host1" in unknown.detail


def test_a_command_that_hangs_is_killed_at_its_timeout(sshd: Sshd) -> None:
    marker = "2931.5"  # a sleep nobody else runs
    target = host_target(sshd, command_timeout=1, commands={"hang": {"argv": ["sleep", marker]}})
    done = act(target, {"action": "ssh.run", "command": "hang", "timeout": 30})
    assert not done.ok
    assert done.detail == "command hang on host1: killed at its timeout (1s)"
    assert done.data["exit_status"] == 124
    still = [
        p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline(p) == ["sleep", marker]
    ]
    assert still == []


def _cmdline(proc: Path) -> list[str]:
    try:
        return proc.joinpath("cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def test_a_changed_host_key_is_refused_and_nothing_is_sent(sshd: Sshd, units: Units) -> None:
    import asyncssh

    unit = units.create("web", active=True)
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    target = host_target(sshd, units=[unit], host_key=other)
    before = len(sshd.commands())
    done = act(target, {"action": "systemd.restart", "unit": unit})
    assert not done.ok
    assert done.detail == (
        "systemd.restart on host1 failed: host key mismatch: the host's key is not the pinned "
        "host_key"
    )
    assert check(target) == (
        False,
        "unreachable: host key mismatch: the host's key is not the pinned host_key",
    )
    assert len(sshd.commands()) == before and units.calls(unit) == []


def test_an_unreachable_host_fails_the_check_and_the_action(sshd: Sshd) -> None:
    from tests.realservices import free_port

    target = host_target(sshd, port=free_port(), units=["a.service"])
    healthy, detail = check(target)
    assert not healthy and detail.startswith("unreachable: ConnectionRefusedError")
    done = act(target, {"action": "systemd.start", "unit": "a.service"})
    assert not done.ok and "ConnectionRefusedError" in done.detail


def test_a_private_key_from_the_environment_logs_in(
    sshd: Sshd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REMEDIATOR_TEST_SSH_KEY", Path(sshd.client_key).read_text())
    target = host_target(sshd, private_key_file=None, private_key_env="REMEDIATOR_TEST_SSH_KEY")
    assert check(target) == (True, "reachable")


def test_process_restart_on_a_host_restarts_the_units_process(sshd: Sshd, units: Units) -> None:
    unit = units.create("legacy", exec_line="sleep 600")
    target = host_target(sshd, units=[unit])
    assert act(target, {"action": "systemd.start", "unit": unit}).ok
    first = units.pid(unit)
    done = act(
        target, {"action": "process.restart", "unit": "{{ labels.unit }}"}, labels={"unit": unit}
    )
    assert done.ok, done.detail
    assert done.detail.startswith(f"systemctl restart {unit} on host1: active/running")
    assert (
        done.data["before"]["MainPID"] == first != units.pid(unit) == done.data["after"]["MainPID"]
    )
    without = act(target, {"action": "process.restart"})
    assert not without.ok and without.detail == "process.restart on host1: an ssh_host needs unit"
    refused = act(target, {"action": "process.restart", "unit": "other.service"})
    assert not refused.ok
    assert refused.detail.startswith("process.restart on host1 refused: unit 'other.service'")
    assert refused.data == {"error": "ARGUMENT_REFUSED"}


def test_a_key_the_host_does_not_accept_fails_without_showing_it(
    sshd: Sshd, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncssh

    stranger = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
    monkeypatch.setenv("REMEDIATOR_TEST_SSH_KEY", stranger)
    target = host_target(
        sshd, private_key_file=None, private_key_env="REMEDIATOR_TEST_SSH_KEY", units=["a.service"]
    )
    healthy, detail = check(target)
    assert not healthy and detail.startswith("unreachable: PermissionDenied")
    done = act(target, {"action": "systemd.start", "unit": "a.service"})
    assert not done.ok and "PermissionDenied" in done.detail
    assert "PRIVATE KEY" not in done.detail and stranger.splitlines()[1] not in done.detail
