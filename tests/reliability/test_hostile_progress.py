"""Hostile alert labels against the progress ``ansible.playbook`` streams into the audit chain.

A playbook's task results become ``recovery:progress`` events while it runs; alert text can
reach them only through the extra vars the step lists, each checked against its regex before
ansible starts. Every hostile value of ``who`` (shell metacharacters, a newline, a NUL, a value
too long, a template, ...), sent with unlisted labels named like the progress fields
(``task``, ``host``, ``status``, ``changed``), is refused: the playbook never runs (its file is
never written) and not one ``recovery:progress`` event is recorded; a dry run records none
either. A legitimate value then runs, and its progress names the task as the playbook templates
it with the validated value, and nothing of the unlisted labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from remediator.alerts import Alert
from remediator.engine import verifier
from tests.actions.test_ansible_playbook import greet_book
from tests.engine_harness import EngineHarness, alert
from tests.reliability.conftest import Figures
from tests.reliability.test_hostile_hosts import hostile
from tests.sshhost import Sshd
from tests.test_hosts_engine import host, run_engine

UNLISTED = {"task": "evil-task", "host": "evil-host", "status": "evil-status", "changed": "evil"}


def greeting(fingerprint: str, who: str, alertname: str = "HostNeedsGreeting") -> Alert:
    made = alert(fingerprint, alertname=alertname, who=who)
    return made.model_copy(update={"labels": {**made.labels, **UNLISTED}})  # "status" included


def book(name: str, alertname: str, *, dry_run: bool = False) -> dict[str, Any]:
    return {**greet_book(name, alertname), "max_per_window": None, "dry_run": dry_run}


def test_hostile_labels_never_reach_the_streamed_progress(
    tmp_path: Path, sshd: Sshd, figures: Figures
) -> None:
    marker = tmp_path / "pwned"
    ran = tmp_path / "ansible-ran"
    books_dir = tmp_path / "ansible"
    books_dir.mkdir()
    (books_dir / "greet.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        '    - name: "greet {{ who }}"\n'
        f"      ansible.builtin.copy: {{dest: {ran}, content: ran}}\n"
    )
    target = host(
        sshd,
        playbook_dir=str(books_dir),
        playbooks=["greet.yml"],
        ansible_python="/usr/bin/python3",
    )
    sections = {
        "targets": [target],
        "playbooks": [book("greet", "HostNeedsGreeting"), book("dry", "DryGreeting", dry_run=True)],
        "circuit_breaker": {"enabled": False},  # every refusal is a failure: keep them all
    }
    values = hostile(marker)

    async def body(h: EngineHarness) -> None:
        await h.send(*(greeting(f"bad-{n}", value) for n, value in enumerate(values)))
        await h.send(greeting("dry", "operators", alertname="DryGreeting"))
        await h.drain()
        assert len(await h.events("recovery:failed")) == len(values)
        assert len(await h.events("recovery:dry_run")) == 1
        assert await h.events("recovery:progress") == []
        assert not ran.exists() and not marker.exists()
        await h.send(greeting("good", "operators"))
        await h.drain()
        [step] = [e for e in await h.events("recovery:action") if e.fingerprint == "good"]
        assert step.outcome == "success", step.message
        [progress] = await h.events("recovery:progress")
        assert progress.fingerprint == "good"
        assert progress.id is not None and step.id is not None and progress.id < step.id
        assert (progress.details["task"], progress.details["host"]) == ("greet operators", "vm1")
        assert (progress.details["status"], progress.details["changed"]) == ("changed", True)
        assert progress.message == "greet operators on vm1: changed"
        assert "evil" not in repr(progress)
        report = await verifier.verify_store(h.rt.store)
        assert report.ok, report

    run_engine(tmp_path, sections, body)
    assert ran.read_text() == "ran" and not marker.exists()
    figures(hostile_values=len(values), progress_events_from_hostile=0)
