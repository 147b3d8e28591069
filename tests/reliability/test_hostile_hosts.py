"""Hostile alert labels against the host actions, through the engine and the real sshd.

Every input path the host actions add reads alert labels: the argument of a named command
(``ssh.run``) and the unit of a ``systemd.*`` step. Each hostile value (shell metacharacters,
``$(...)``, backquotes, a newline, a NUL, a value too long for its regex or for any argument)
must be refused by the argument check before a connection is made: the sshd's command record
(its ForceCommand logs every command line it is sent) shows none of them, the systemctl
stand-in is never called with them, and the marker file a shell would create never appears.
A legitimate value then runs, so the path refused is the one that works.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.engine_harness import EngineHarness, alert
from tests.reliability.conftest import Figures
from tests.sshhost import Sshd, Units
from tests.test_hosts_engine import host, run_engine


def hostile(marker: Path) -> list[str]:
    return [
        "app; rm -rf /",
        f"app; touch {marker}",
        f"$(touch {marker})",
        f"`touch {marker}`",
        f"app && touch {marker}",
        f"app | tee {marker}",
        "app\nid",
        "app\r\nid",
        "app\x00id",
        "a" * 41,
        "a" * 70000,
        "",
        "../../etc/passwd",
        "app' 'x",
        'app" "x',
        "{{ labels.queue }}",
        "APP",
        "app\u202eevil",
    ]


def books(unit_pattern: str) -> list[dict[str, Any]]:
    return [
        {
            "name": "drain-queue",
            "match": ['alertname="QueueStuck"'],
            "target": "vm1",
            "steps": [{"action": "ssh.run", "command": "drain"}],
            "cooldown": "0s",
            "retry": {"max_attempts": 1},
            "max_per_window": None,
        },
        {
            "name": "restart-unit",
            "match": ['alertname="HostServiceDown"'],
            "target": "vm1",
            "steps": [{"action": "systemd.restart", "unit": unit_pattern}],
            "cooldown": "0s",
            "retry": {"max_attempts": 1},
            "max_per_window": None,
        },
    ]


def test_hostile_labels_are_refused_before_anything_reaches_the_host(
    tmp_path: Path, sshd: Sshd, units: Units, figures: Figures
) -> None:
    marker = tmp_path / "pwned"
    unit = units.create("queue", active=True)
    values = hostile(marker)
    command = {
        "argv": ["echo", "drain", "{{ labels.queue }}"],
        "labels": {"queue": "^[a-z0-9-]{1,40}$"},
    }
    sections = {
        "targets": [host(sshd, units=[unit], commands={"drain": command})],
        "playbooks": books("{{ labels.unit }}"),
        "circuit_breaker": {"enabled": False},  # every refusal is a failure: keep them all
    }
    sent_before = len(sshd.commands())

    async def body(h: EngineHarness) -> None:
        for n, value in enumerate(values):
            await h.send(
                alert(f"q{n}", alertname="QueueStuck", queue=value),
                alert(f"u{n}", alertname="HostServiceDown", unit=value),
            )
            await h.drain()
        failed = await h.events("recovery:failed")
        assert await h.reasons() == []
        assert len(failed) == 2 * len(values)
        assert all("refused" in (e.message or "") for e in failed), [e.message for e in failed]
        assert await h.events("recovery:succeeded") == []
        assert len(sshd.commands()) == sent_before  # not one connection's command
        await h.send(
            alert("ok-q", alertname="QueueStuck", queue="jobs-1"),
            alert("ok-u", alertname="HostServiceDown", unit=unit),
        )
        await h.drain()
        assert len(await h.events("recovery:succeeded")) == 2

    run_engine(tmp_path, sections, body)
    sent = sshd.commands()[sent_before:]
    assert any(line.endswith("echo drain jobs-1") for line in sent)
    for value in values:
        if value:
            assert not any(value in line for line in sent), value
    assert [call for call in units.calls(unit) if call[0] == "restart"] == [["restart", "--", unit]]
    assert not marker.exists()
    figures(hostile_values=len(values), refused=2 * len(values), sent_to_host=len(sent))
