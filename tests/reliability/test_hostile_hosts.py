"""Hostile alert labels against the host actions, through the engine and the real sshd.

Every input path the host actions add reads alert labels: the argument of a named command
(``ssh.run``), the unit of a ``systemd.*`` or ``process.restart`` step, and the extra vars of
``ansible.playbook``. Each hostile value (shell metacharacters,
``$(...)``, backquotes, a newline, a NUL, a value too long for its regex or for any argument)
must be refused by the argument check before a connection is made: the sshd's command record
(its ForceCommand logs every command line it is sent) shows none of them, the systemctl
stand-in is never called with them, ansible never starts, and the marker file a shell would
create never appears.
A legitimate value then runs, so the path refused is the one that works.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from remediator.alerts import Alert
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


# (alertname, the label it reads, the step): every host input path that reads a label.
PATHS: list[tuple[str, str, dict[str, Any]]] = [
    ("QueueStuck", "queue", {"action": "ssh.run", "command": "drain"}),
    ("HostServiceDown", "unit", {"action": "systemd.restart", "unit": "{{ labels.unit }}"}),
    ("ProcessLeaking", "unit", {"action": "process.restart", "unit": "{{ labels.unit }}"}),
    (
        "HostNeedsGreeting",
        "who",
        {"action": "ansible.playbook", "playbook": "greet.yml", "labels": {"who": "^[a-z]{1,20}$"}},
    ),
]


def labelled(fingerprint: str, alertname: str, label: str, value: str) -> Alert:
    make: Any = alert  # one label named at run time
    built: Alert = make(fingerprint, alertname=alertname, **{label: value})
    return built


def books() -> list[dict[str, Any]]:
    return [
        {
            "name": f"book-{alertname}",
            "match": [f'alertname="{alertname}"'],
            "target": "vm1",
            "steps": [step],
            "cooldown": "0s",
            "retry": {"max_attempts": 1},
            "max_per_window": None,
        }
        for alertname, _, step in PATHS
    ]


def test_hostile_labels_are_refused_before_anything_reaches_the_host(
    tmp_path: Path, sshd: Sshd, units: Units, figures: Figures
) -> None:
    marker = tmp_path / "pwned"
    ran = tmp_path / "ansible-ran"
    unit = units.create("queue", active=True)
    values = hostile(marker)
    command = {
        "argv": ["echo", "drain", "{{ labels.queue }}"],
        "labels": {"queue": "^[a-z0-9-]{1,40}$"},
    }
    books_dir = tmp_path / "ansible"
    books_dir.mkdir()
    (books_dir / "greet.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        f"    - ansible.builtin.copy: {{dest: {ran}, content: ran}}\n"
    )
    target = host(
        sshd,
        units=[unit],
        commands={"drain": command},
        playbook_dir=str(books_dir),
        playbooks=["greet.yml"],
    )
    sections = {
        "targets": [target],
        "playbooks": books(),
        "circuit_breaker": {"enabled": False},  # every refusal is a failure: keep them all
    }
    sent_before = len(sshd.commands())

    async def body(h: EngineHarness) -> None:
        for n, value in enumerate(values):
            await h.send(*(labelled(f"{name}-{n}", name, label, value) for name, label, _ in PATHS))
            await h.drain()
        failed = await h.events("recovery:failed")
        assert await h.reasons() == []
        assert len(failed) == len(PATHS) * len(values)
        assert all("refused" in (e.message or "") for e in failed), [e.message for e in failed]
        steps = await h.events("recovery:action")
        assert {e.details["data"]["error"] for e in steps} == {"ARGUMENT_REFUSED"}
        assert await h.events("recovery:succeeded") == []
        assert len(sshd.commands()) == sent_before  # not one command reached the host
        await h.send(
            alert("ok-q", alertname="QueueStuck", queue="jobs-1"),
            alert("ok-u", alertname="HostServiceDown", unit=unit),
            alert("ok-p", alertname="ProcessLeaking", unit=unit),
        )
        await h.drain()
        assert len(await h.events("recovery:succeeded")) == 3

    run_engine(tmp_path, sections, body)
    sent = sshd.commands()[sent_before:]
    assert any(line.endswith("echo drain jobs-1") for line in sent)
    for value in values:
        if value:
            assert not any(value in line for line in sent), value
    restarts = [call for call in units.calls(unit) if call[0] == "restart"]
    assert restarts == [["restart", "--", unit]] * 2
    assert not marker.exists() and not ran.exists()
    figures(
        hostile_values=len(values),
        input_paths=len(PATHS),
        refused=len(PATHS) * len(values),
        sent_to_host=len(sent),
    )
