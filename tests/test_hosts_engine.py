"""Alerts about VMs and bare hosts run host playbooks through the engine, over the real sshd.

The engine runs with the built-in actions on a real SQLite store and a fake clock; the host is
the sshd of tests/services.sh, its units those of the systemctl stand-in (systemd cannot run as
PID 1 here; tests/fixtures/hosts/systemctl keeps unit state in files and answers like it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncssh

from remediator.actions import builtin_actions
from tests.engine_harness import EngineHarness, alert
from tests.realservices import free_port
from tests.sshhost import Sshd, Units


def host(sshd: Sshd, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "type": "ssh_host",
        "name": "vm1",
        "host": sshd.host,
        "port": sshd.port,
        "user": sshd.user,
        "private_key_file": sshd.client_key,
        "host_key": sshd.host_key,
        "systemctl": sshd.systemctl,
        "connect_timeout": 5,
        "command_timeout": 10,
    }
    data.update(fields)
    return data


def restart_unit(**extra: Any) -> dict[str, Any]:
    book: dict[str, Any] = {
        "name": "restart-unit",
        "match": ['alertname="HostServiceDown"'],
        "target": "{{ labels.host }}",
        "steps": [
            {"action": "systemd.restart", "unit": "{{ labels.unit }}"},
            {"action": "verify.health", "within": "10s", "interval": "1s"},
        ],
        "cooldown": "0s",
        "retry": {"max_attempts": 1},
    }
    book.update(extra)
    return book


def run_engine(
    tmp_path: Path, sections: dict[str, Any], body: Callable[[EngineHarness], Awaitable[None]]
) -> None:
    """``body`` on an engine with the built-in actions (real SSH), closed afterwards."""

    async def main() -> None:
        h = await EngineHarness.create(tmp_path, sections, actions=builtin_actions())
        try:
            await body(h)
        finally:
            await h.close()

    asyncio.run(main())


def down(unit: str, fingerprint: str = "f1") -> Any:
    return alert(fingerprint, alertname="HostServiceDown", host="vm1", unit=unit)


def test_a_host_alert_restarts_the_unit_over_ssh_and_verifies_it(
    tmp_path: Path, sshd: Sshd, units: Units
) -> None:
    unit = units.create("web", exec_line="sleep 600")
    sections = {
        "targets": [host(sshd, units=[unit], health_units=[unit])],
        "playbooks": [restart_unit()],
    }

    async def body(h: EngineHarness) -> None:
        await h.send(down(unit))
        await h.drain()
        assert len(await h.events("recovery:succeeded")) == 1
        [step] = [e for e in await h.events("recovery:action") if e.action == "systemd.restart"]
        data = step.details["data"]
        assert data["unit"] == unit
        assert data["before"] == {"ActiveState": "inactive", "SubState": "dead", "MainPID": 0}
        assert data["after"]["ActiveState"] == "active"
        assert data["after"]["MainPID"] == units.pid(unit) > 1
        assert len(await h.events("recovery:verified")) == 1

    run_engine(tmp_path, sections, body)
    assert units.state(unit) == "active"


def test_a_changed_host_key_fails_the_remediation_and_escalates(
    tmp_path: Path, sshd: Sshd, units: Units
) -> None:
    unit = units.create("web", active=True)
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    sections = {
        "targets": [host(sshd, units=[unit], host_key=other)],
        "playbooks": [restart_unit()],
    }
    sent = len(sshd.commands())

    async def body(h: EngineHarness) -> None:
        await h.send(down(unit))
        await h.drain()
        [failed] = await h.events("recovery:failed")
        assert "host key mismatch" in (failed.message or "")
        [escalated] = await h.events("recovery:escalated")
        assert escalated.outcome == "remediation_failed"
        assert "host key mismatch" in (escalated.message or "")

    run_engine(tmp_path, sections, body)
    assert len(sshd.commands()) == sent and units.calls(unit) == []


def test_an_unreachable_host_opens_its_breaker(tmp_path: Path, sshd: Sshd) -> None:
    sections = {
        "targets": [host(sshd, port=free_port(), units=["web.service"])],
        "playbooks": [restart_unit()],
        "circuit_breaker": {"failure_threshold": 2, "reset_timeout": "1h"},
    }

    async def body(h: EngineHarness) -> None:
        for n in range(3):
            await h.send(down("web.service", fingerprint=f"f{n}"))
            await h.drain()
        opened = await h.events("circuit:open")
        assert [e.target for e in opened] == ["vm1"]
        failures = await h.events("recovery:failed")
        assert len(failures) == 2
        assert all("ConnectionRefusedError" in (e.message or "") for e in failures)
        assert "circuit_open" in await h.reasons()

    run_engine(tmp_path, sections, body)


def test_the_health_detail_lists_host_targets(tmp_path: Path, sshd: Sshd, units: Units) -> None:
    from remediator.http.management import health_detail

    unit = units.create("web", active=True)
    sections = {"targets": [host(sshd, units=[unit], health_units=[unit])]}

    async def body(h: EngineHarness) -> None:
        [target] = h.rt.config.targets
        assert (await h.rt.monitor.check_now(target)).healthy
        detail = await health_detail(h.rt, store_up=True)
        assert detail["ssh_host"] == [
            {
                "target": "vm1",
                "type": "ssh_host",
                "status": "up",
                "detail": f"reachable; {unit} active",
            }
        ]

    run_engine(tmp_path, sections, body)
