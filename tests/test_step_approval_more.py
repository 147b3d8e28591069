"""Approval of a single step (issue #15), the less common shapes: a playbook's own approval and a
step's together, a first step that asks, approvers by email (the real SMTP server), and the
configuration checks of a step's approval."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import pytest

from remediator.config import model as config_mod
from remediator.errors import ConfigError
from tests.console.consoleapp import CSRF
from tests.engine_harness import restart_playbook
from tests.smtpserver import SMTPServer
from tests.test_approvals import approval, started
from tests.test_approvals_email import LINK_KEY_ENV, email_sections, links, mail_to
from tests.test_step_approval import PAUSE, RESTART, remediation

CAROL = "carol@example.test"


def test_the_playbooks_approval_comes_first_then_the_steps_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = [{"action": "docker.pause"},
             {"action": "docker.restart", "approval": {"approvers": ["bob"]}}]  # fmt: skip
    book = restart_playbook(approval=approval(), steps=steps)
    with started(tmp_path, monkeypatch, sections={"playbooks": [book]}) as app:
        app.fire()
        assert app.recorder.calls == []  # the playbook's approval: nothing runs yet
        whole = app.open_id()
        assert app.call("POST", f"/approvals/{whole}/approve", "bob").status_code == 403
        assert app.call("POST", f"/approvals/{whole}/approve", "alice").status_code == 200
        app.run(app.rt.engine.approvals.drain)
        assert app.recorder.calls == [PAUSE]
        step = app.open_id()
        assert step != whole
        assert app.call("POST", f"/approvals/{step}/approve", "alice").status_code == 403
        assert app.call("POST", f"/approvals/{step}/approve", "bob").status_code == 200
        app.run(app.rt.engine.approvals.drain)
        assert app.recorder.calls == [PAUSE, RESTART]
        asked = [a["step"] for a in app.call("GET", "/approvals", "viewer").json()["approvals"]]
        assert asked == [1, None]
        assert remediation(app).state == "succeeded"


def test_a_first_step_that_asks_runs_nothing_before_the_approval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = restart_playbook(steps=[{"action": "docker.restart", "approval": approval()}])
    with started(tmp_path, monkeypatch, sections={"playbooks": [book]}) as app:
        app.fire()
        assert app.recorder.calls == []
        [asked] = app.events("recovery:approval_requested")
        assert asked.details["step"] == 0 and asked.action == "docker.restart"
        rid = app.open_id()
        assert app.call("POST", f"/approvals/{rid}/approve", "alice").status_code == 200
        app.run(app.rt.engine.approvals.drain)
        assert app.recorder.calls == [RESTART]
        assert len(app.events("recovery:succeeded")) == 1


def test_a_steps_approvers_by_email_get_its_request_and_their_link_decides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smtp_server: SMTPServer
) -> None:
    monkeypatch.setenv(LINK_KEY_ENV, "k" * 48)
    steps = [{"action": "docker.pause"},
             {"action": "docker.restart", "approval": {"emails": [CAROL]}}]  # fmt: skip
    sections = {**email_sections(smtp_server), "playbooks": [restart_playbook(steps=steps)]}
    with started(tmp_path, monkeypatch, sections=sections) as app:
        app.fire()
        rid = app.open_id()
        received = mail_to(app, smtp_server, CAROL)
        link = links(received)
        assert f"/approvals/{rid}/email/approve?token=" in link["approve"]
        path, token = link["approve"].split("?token=", 1)
        done = app.client.post(path, data={"token": unquote(token)})
        assert done.status_code == 200, done.text
        app.run(app.rt.engine.approvals.drain)
        assert app.recorder.calls == [PAUSE, RESTART]
        [approved] = app.events("recovery:approved")
        assert approved.actor == f"email:{CAROL}" and approved.details["step"] == 1


def test_a_steps_approval_is_checked_at_load_like_a_playbooks() -> None:
    def load(step_approval: object) -> None:
        steps = [{"action": "docker.restart", "approval": step_approval}]
        config_mod.parse(
            {"targets": [{"name": "web", "type": "docker_container", "container": "web"}],
             "playbooks": [restart_playbook(steps=steps)]},
            env={},
        )  # fmt: skip

    with pytest.raises(ConfigError) as nobody:
        load({"ttl": "5m"})
    assert "name at least one of approvers" in nobody.value.problems[0]
    with pytest.raises(ConfigError) as mail:
        load({"emails": [CAROL]})
    assert (
        "playbooks[0].steps[0].approval.emails: approvers by email need notifications.email and "
        "approvals.link_secret_env" in mail.value.problems[0]
    )
    with pytest.raises(ConfigError) as pattern:
        config_mod.parse(
            {"targets": [{"name": "web", "type": "docker_container", "container": "web"}],
             "patterns": [{"id": "mem", "pattern": "memory", "category": "memory", "target": "web",
                           "recovery": [{"action": "docker.restart",
                                         "approval": {"emails": [CAROL]}}]}]},
            env={},
        )  # fmt: skip
    assert "patterns[0].recovery[0].approval.emails: approvers by email need" in str(
        pattern.value.problems
    )
    with pytest.raises(ConfigError) as unknown:
        load({"approvers": ["alice"], "on_expiry": "run_anyway"})
    assert "on_expiry" in unknown.value.problems[0]


def test_a_patterns_recovery_step_may_ask_and_its_email_approver_gets_the_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smtp_server: SMTPServer
) -> None:
    monkeypatch.setenv(LINK_KEY_ENV, "k" * 48)
    recovery = [{"action": "docker.pause"},
                {"action": "docker.restart", "approval": {"approvers": ["alice"],
                                                          "emails": [CAROL]}}]  # fmt: skip
    pattern = {"id": "mem", "pattern": "memory high", "category": "memory",
               "recovery": recovery, "target": "{{ labels.container }}", "cooldown": "0s"}  # fmt: skip
    sections = {**email_sections(smtp_server), "playbooks": [], "patterns": [pattern]}
    with started(tmp_path, monkeypatch, sections=sections) as app:
        app.fire()
        assert app.recorder.calls == [PAUSE]
        rid = app.open_id()
        assert (
            f"/approvals/{rid}/email/approve?token="
            in links(mail_to(app, smtp_server, CAROL))["approve"]
        )
        assert app.call("POST", f"/approvals/{rid}/approve", "alice").status_code == 200
        app.run(app.rt.engine.approvals.drain)
        assert app.recorder.calls == [PAUSE, RESTART]
        [approved] = app.events("recovery:approved")
        assert approved.playbook == "pattern:mem" and approved.details["step"] == 1


def test_the_console_says_which_step_an_approval_stands_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = [{"action": "docker.pause"},
             {"action": "docker.restart", "approval": {"approvers": ["alice"]}}]  # fmt: skip
    book = restart_playbook(approval=approval(), steps=steps)
    with started(tmp_path, monkeypatch, sections={"playbooks": [book]}) as app:
        app.fire()
        form = app.client.get("/console/login")
        csrf = CSRF.search(form.text)
        assert csrf is not None
        login = {"csrf": csrf.group(1), "token": app.tokens["alice"]}
        signed = app.client.post("/console/login", data=login, follow_redirects=False)
        assert signed.status_code == 303
        rows = approvals_rows(app.client.get("/console/").text)
        assert len(rows) == 1 and "the whole playbook" in rows[0]  # the playbook's own first
        [first] = app.call("GET", "/approvals?state=open", "viewer").json()["approvals"]
        assert app.call("POST", f"/approvals/{first['id']}/approve", "alice").status_code == 200
        app.run(app.rt.engine.approvals.drain)
        assert app.recorder.calls == [PAUSE]
        rows = approvals_rows(app.client.get("/console/").text)
        assert len(rows) == 1 and "steps[1]" in rows[0] and "the whole playbook" not in rows[0]


def approvals_rows(page: str) -> list[str]:
    """The rows of the console's "Awaiting approval" table (its header row left out)."""
    table = page.split('<table id="approvals">', 1)[1].split("</table>", 1)[0]
    return [row for row in table.split("<tr>")[2:] if "none</td>" not in row]
