"""ansible.playbook over the real sshd of tests/services.sh (the loopback host), with
ansible-runner and ansible-core; the engine records its task events in the audit chain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from remediator.engine import verifier
from tests.actions.test_ssh_host import act
from tests.engine_harness import EngineHarness, alert
from tests.sshhost import Sshd, host_target
from tests.test_hosts_engine import host, run_engine

PLAYBOOK = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: write the greeting
      ansible.builtin.copy:
        dest: "{out}"
        content: "hello {{{{ who }}}}\\n"
        mode: "0644"
    - name: read it back
      ansible.builtin.command: cat "{out}"
      changed_when: false
"""


def playbooks(tmp_path: Path, out: Path) -> Path:
    books = tmp_path / "ansible"
    books.mkdir()
    (books / "greet.yml").write_text(PLAYBOOK.format(out=out))
    (books / "unlisted.yml").write_text(PLAYBOOK.format(out=out))
    return books


def greet_book(name: str = "greet", alertname: str = "HostNeedsGreeting") -> dict[str, Any]:
    """A playbook running greet.yml on vm1 once, ``who`` a checked label."""
    return {
        "name": name,
        "match": [f'alertname="{alertname}"'],
        "target": "vm1",
        "steps": [
            {
                "action": "ansible.playbook",
                "playbook": "greet.yml",
                "labels": {"who": "^[a-z]{1,20}$"},
                "timeout": "120s",
            }
        ],
        "cooldown": "0s",
        "retry": {"max_attempts": 1},
    }


def test_a_playbook_must_be_listed_and_needs_an_absolute_directory(sshd: Sshd) -> None:
    with pytest.raises(ValidationError, match="playbooks need playbook_dir"):
        host_target(sshd, playbooks=["greet.yml"], playbook_dir="relative")
    with pytest.raises(ValidationError, match=r"a \.yml file name"):
        host_target(sshd, playbooks=["../greet.yml"], playbook_dir="/etc")


def test_an_unlisted_playbook_or_a_refused_label_never_starts_ansible(
    sshd: Sshd, tmp_path: Path
) -> None:
    out = tmp_path / "greeting.txt"
    target = host_target(sshd, playbooks=["greet.yml"], playbook_dir=str(playbooks(tmp_path, out)))
    unlisted = act(target, {"action": "ansible.playbook", "playbook": "unlisted.yml"})
    assert not unlisted.ok
    assert unlisted.detail == (
        "ansible.playbook on host1 refused: playbook 'unlisted.yml' is not in the playbooks "
        "of host1"
    )
    step: dict[str, Any] = {
        "action": "ansible.playbook",
        "playbook": "greet.yml",
        "labels": {"who": "^[a-z]{1,20}$"},
    }
    hostile = act(target, step, labels={"who": "x' && touch /tmp/pwned #"})
    assert not hostile.ok and "label who does not match" in hostile.detail
    assert not out.exists()


def test_a_playbook_changes_a_file_and_streams_its_task_events_into_the_audit_chain(
    tmp_path: Path, sshd: Sshd
) -> None:
    out = tmp_path / "greeting.txt"
    target = host(
        sshd,
        playbooks=["greet.yml"],
        playbook_dir=str(playbooks(tmp_path, out)),
        ansible_python="/usr/bin/python3",
    )
    book = greet_book()

    async def body(h: EngineHarness) -> None:
        await h.send(alert("g1", alertname="HostNeedsGreeting", who="operators"))
        await h.drain()
        [ran] = [e for e in await h.events("recovery:action") if e.action == "ansible.playbook"]
        assert ran.outcome == "success", ran.message
        assert ran.message == "playbook greet.yml on vm1: successful, 2 task(s), 1 changed"
        assert ran.details["data"]["tasks"] == [
            {"task": "write the greeting", "host": "vm1", "status": "changed"},
            {"task": "read it back", "host": "vm1", "status": "ok"},
        ]
        assert ran.hash
        # Each task result was recorded as it happened: its own event, before the step's.
        progress = await h.events("recovery:progress")
        assert [
            (e.details["task"], e.details["status"], e.details["changed"]) for e in progress
        ] == [
            ("write the greeting", "changed", True),
            ("read it back", "ok", False),
        ]
        for e in progress:
            assert e.id is not None and ran.id is not None and e.id < ran.id
            assert (e.target, e.playbook, e.action, e.fingerprint) == (
                "vm1",
                "greet",
                "ansible.playbook",
                "g1",
            )
            assert e.details["host"] == "vm1" and e.outcome == e.details["status"]
        assert progress[0].id is not None and progress[1].id is not None
        assert progress[0].id < progress[1].id
        report = await verifier.verify_store(h.rt.store)
        assert report.ok, report

    run_engine(tmp_path, {"targets": [target], "playbooks": [book]}, body)
    assert out.read_text() == "hello operators\n"
