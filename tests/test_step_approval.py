"""Approval of a single step (issue #15): a step with ``approval:`` pauses its alert's run after
the steps before it; an approval (API, Slack, CLI, email) resumes the run at that step, a
denial, an expiry or a resolved alert ends it as the playbook's own approval does."""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.engine_harness import restart_playbook
from tests.slackapi import SlackAPI
from tests.test_approvals import ROLES, App, approval, click, started
from tests.test_approvals_slack import (
    TOKEN_ENV,
    actions,
    requested,
    slack_sections,
    text_of,
    update_saying,
)
from tests.test_simulate import simulate

PAUSE = ("docker.pause", "web", False)
RESTART = ("docker.restart", "web", False)


def two_steps(**spec: Any) -> dict[str, Any]:
    """Pause the container, then restart it: only the restart asks for approval."""
    steps = [{"action": "docker.pause"},
             {"action": "docker.restart", "approval": approval(**spec)}]  # fmt: skip
    return restart_playbook(steps=steps)


@contextlib.contextmanager
def paused(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    sections: dict[str, Any] | None = None,
    **kw: Any,
) -> Iterator[App]:
    """The app with the two-step playbook (no playbook-level approval)."""
    spec = kw.pop("spec", {})
    more = {"playbooks": [two_steps(**spec)], **(sections or {})}
    with started(tmp_path, monkeypatch, sections=more, **kw) as app:
        yield app


def remediation(app: App) -> Any:
    [found] = app.run(app.rt.store.remediations)
    return found


def test_the_run_pauses_before_the_step_and_an_api_approval_runs_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with paused(tmp_path, monkeypatch) as app:
        app.fire()
        assert app.recorder.calls == [PAUSE]  # the step before it ran; the run waits
        [asked] = app.events("recovery:approval_requested")
        assert (asked.details["step"], asked.action) == (1, "docker.restart")
        assert "awaits approval of steps[1] (docker.restart)" in asked.message
        assert remediation(app).state == "awaiting_approval"
        [listed] = app.call("GET", "/approvals?state=open", "viewer").json()["approvals"]
        assert listed["step"] == 1 and listed["id"] == asked.details["approval"]
        assert app.events("recovery:succeeded") == []
        app.fire()  # Alertmanager repeats the alert: nothing runs again
        assert app.recorder.calls == [PAUSE]
        app.clock.advance(30)
        answer = app.call("POST", f"/approvals/{listed['id']}/approve", "alice")
        assert answer.status_code == 200, answer.text
        assert answer.json()["approval"]["step"] == 1
        app.run(app.rt.engine.approvals.drain)
        assert app.recorder.calls == [PAUSE, RESTART]  # resumed at the step, once
        [approved] = app.events("recovery:approved")
        assert (approved.details["step"], approved.details["action"]) == (1, "docker.restart")
        assert approved.details["waited"] == pytest.approx(30)
        assert len(app.events("recovery:succeeded")) == 1
        assert remediation(app).state == "succeeded"
        assert app.call("POST", f"/approvals/{listed['id']}/approve", "root").status_code == 409
        assert app.recorder.calls == [PAUSE, RESTART]
        metrics = app.client.get("/metrics").text
        assert 'remediator_approvals_total{outcome="approved",playbook="restart"} 1.0' in metrics
        assert "remediator_approval_wait_seconds_count 1.0" in metrics


def test_a_denied_step_never_runs_and_ends_as_a_playbook_denial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with paused(tmp_path, monkeypatch) as app:
        app.fire()
        rid = app.open_id()
        assert app.call("POST", f"/approvals/{rid}/approve", "bob").status_code == 403
        answer = app.call("POST", f"/approvals/{rid}/deny", "alice", json={"reason": "no"})
        assert answer.json()["approval"]["state"] == "denied"
        app.run(app.rt.engine.approvals.drain)
        assert app.recorder.calls == [PAUSE]
        [denied] = app.events("recovery:denied")
        assert denied.actor == "alice" and denied.details["step"] == 1
        assert (remediation(app).state, remediation(app).reason) == ("blocked", "approval_denied")
        assert app.events("recovery:succeeded") == app.events("recovery:failed") == []


@pytest.mark.parametrize("on_expiry", ["deny", "escalate"])
def test_an_undecided_step_approval_expires_after_its_ttl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_expiry: str
) -> None:
    with paused(tmp_path, monkeypatch, spec={"on_expiry": on_expiry}) as app:
        app.fire()
        rid = app.open_id()
        app.clock.advance(599)
        assert app.run(app.rt.engine.approvals.sweep) == 0
        app.clock.advance(2)
        assert app.run(app.rt.engine.approvals.sweep) == 1
        [expired] = app.events("recovery:approval_expired")
        assert expired.details["reason"] == on_expiry and expired.details["step"] == 1
        escalated = [e for e in app.events("recovery:escalated") if e.outcome == "approval_expired"]
        assert len(escalated) == (1 if on_expiry == "escalate" else 0)
        if escalated:
            assert "steps[1] and those after it were not run" in escalated[0].message
        assert app.call("POST", f"/approvals/{rid}/approve", "alice").status_code == 409
        assert app.recorder.calls == [PAUSE]
        assert (remediation(app).state, remediation(app).reason) == ("blocked", "approval_expired")


def test_a_resolved_alert_cancels_the_open_step_approval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with paused(tmp_path, monkeypatch) as app:
        app.fire()
        rid = app.open_id()
        app.fire(status="resolved")
        [cancelled] = app.events("recovery:approval_cancelled")
        assert cancelled.details["step"] == 1
        assert app.call("POST", f"/approvals/{rid}/approve", "alice").status_code == 409
        app.run(app.rt.engine.approvals.drain)
        assert app.recorder.calls == [PAUSE]


def test_an_approval_after_a_quarantine_is_skipped_and_the_step_never_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with paused(tmp_path, monkeypatch) as app:
        app.fire()
        rid = app.open_id()
        app.run(lambda: app.rt.store.set_quarantine("web", reason="hands off", now=1.0, events=[]))
        answer = app.call("POST", f"/approvals/{rid}/approve", "alice")
        assert answer.json()["approval"]["state"] == "skipped"
        app.run(app.rt.engine.approvals.drain)
        assert app.recorder.calls == [PAUSE]
        assert "quarantined" in [e.outcome for e in app.events("recovery:skipped")]


def test_the_wait_survives_a_restart_and_the_approval_resumes_at_the_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = {name: secrets.token_urlsafe(24) for name in ROLES}
    with paused(tmp_path, monkeypatch, tokens=tokens) as first:
        first.fire()
        rid = first.open_id()
    assert first.recorder.calls == [PAUSE]
    with paused(tmp_path, monkeypatch, tokens=tokens) as second:  # the same store, restarted
        assert second.open_id() == rid
        assert remediation(second).state == "awaiting_approval"  # not "interrupted"
        assert second.call("POST", f"/approvals/{rid}/approve", "alice").status_code == 200
        second.run(second.rt.engine.approvals.drain)
        assert second.recorder.calls == [RESTART]  # only the approved step, once
        assert remediation(second).state == "succeeded"


def test_an_expiry_still_fires_after_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with paused(tmp_path, monkeypatch) as first:
        first.fire()
    with paused(tmp_path, monkeypatch) as second:
        second.clock.advance(601)
        assert second.run(second.rt.engine.approvals.sweep) == 1
        assert len(second.events("recovery:approval_expired")) == 1
        assert second.recorder.calls == []


def test_a_signed_slack_click_approves_the_step_and_updates_the_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slack_api: SlackAPI
) -> None:
    monkeypatch.setenv(TOKEN_ENV, slack_api.token)
    with paused(tmp_path, monkeypatch, sections=slack_sections(slack_api)) as app:
        rid, _ = requested(app, slack_api)
        posted = update_saying(app, slack_api, "Awaiting approval")
        assert "Awaiting approval* of steps[1] (docker.restart)" in text_of(posted)
        [buttons] = actions(posted)
        assert buttons["elements"][0]["value"] == str(rid)
        assert app.slack(click(rid, user="U0MALLORY")).status_code == 403
        good = app.slack(click(rid))
        assert good.status_code == 200, good.text
        app.run(app.rt.engine.approvals.drain)
        assert app.recorder.calls == [PAUSE, RESTART]
        [approved] = app.events("recovery:approved")
        assert approved.actor == "slack:U0ALICE01" and approved.details["step"] == 1
        update = update_saying(app, slack_api, "Approved by")
        assert actions(update) == []  # the buttons are gone


def test_simulate_and_a_dry_run_say_the_step_would_ask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {
        "store": {"url": f"sqlite:///{tmp_path}/store/remediator.db"},
        "targets": [{"name": "web", "type": "docker_container", "container": "web"}],
        "playbooks": [two_steps()],
    }
    path = tmp_path / "remediator.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    alert = {"status": "firing", "labels": {"alertname": "ContainerMemoryHigh", "container": "web"},
             "annotations": {}, "startsAt": "2026-01-01T00:00:00Z",
             "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "f1"}  # fmt: skip
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps({"version": "4", "status": "firing", "receiver": "r",
                                   "groupKey": "g", "alerts": [alert]}))  # fmt: skip
    [decision] = simulate(path, str(payload))
    first, second = decision["steps"]
    assert "approval" not in first and decision["approval"] is None
    assert second["approval"]["message"] == "would ask for approval by alice, slack:U0ALICE01"
    assert second["approval"]["ttl"] == 600.0
    with paused(tmp_path, monkeypatch) as app:
        answer = app.call("POST", "/test", json={"target": "web", "playbook": "restart"})
        assert answer.status_code == 200, answer.text
        steps = answer.json()["traces"][0]["steps"]
        assert steps[1]["approval"]["message"].startswith("would ask for approval by alice")
        assert app.events("recovery:approval_requested") == [] and app.recorder.calls == []


def test_two_replicas_taking_a_step_approval_at_once_run_the_step_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_database: str
) -> None:
    tokens = {name: secrets.token_urlsafe(24) for name in ROLES}
    spec = {"approvers": ["alice", "bob"]}
    kw: dict[str, Any] = {"url": pg_database, "tokens": tokens, "spec": spec}
    with (
        paused(tmp_path, monkeypatch, **kw) as one,
        paused(tmp_path, monkeypatch, **kw) as two,
    ):
        one.fire()
        rid = two.open_id()
        with ThreadPoolExecutor(2) as pool:
            a = pool.submit(one.call, "POST", f"/approvals/{rid}/approve", "alice")
            b = pool.submit(two.call, "POST", f"/approvals/{rid}/approve", "bob")
            codes = sorted([a.result().status_code, b.result().status_code])
        assert codes == [200, 409]
        one.run(one.rt.engine.approvals.drain)
        two.run(two.rt.engine.approvals.drain)
        calls = one.recorder.calls + two.recorder.calls
        assert calls.count(RESTART) == 1 and calls.count(PAUSE) == 1
        assert len(one.events("recovery:approved")) == 1
        assert len(one.events("recovery:succeeded")) == 1
