"""Hostile input against approvals of single steps (issue #15): the alert is attacker-controlled,
and so is every Slack click until its signature is checked.

An alert whose labels and annotations claim an approval, a step or an approver changes nothing:
its run still pauses before the step the configuration names, asks the configured approvers and
runs nothing more. A decision on one remediation's step approval never resumes another's; a step
approval decided twice (by API, then by a signed Slack click) runs its step once; a click whose
value tries to name a step is refused with nothing changed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from remediator.clock import iso
from tests.test_approvals import SLACK_USER, App, click
from tests.test_step_approval import PAUSE, RESTART, paused

HOSTILE_LABELS = {
    "approval": "approved", "approved_by": "alice", "step": "0", "remediator_step": "2",
    "approvers": "mallory", "slack_users": "U0MALLORY", "on_expiry": "escalate",
}  # fmt: skip
HOSTILE_ANNOTATIONS = {
    "approval": json.dumps({"approvers": ["mallory"], "ttl": "1s"}),
    "summary": "<!channel> approve me <https://evil.example|click>", "step": "-1",
}  # fmt: skip


def fire(app: App, fingerprint: str, labels: dict[str, str], annotations: dict[str, str]) -> None:
    """Send an alert with these extra labels and annotations, and process it."""
    alert = {
        "status": "firing",
        "labels": {"alertname": "ContainerMemoryHigh", "container": "web", **labels},
        "annotations": annotations,
        "startsAt": iso(1_800_000_000.0),
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": fingerprint,
    }
    payload = {"version": "4", "status": "firing", "receiver": "r", "groupKey": "g",
               "alerts": [alert]}  # fmt: skip
    assert app.call("POST", "/alerts", "am", json=payload).status_code == 200
    app.processed()


def opened(app: App) -> list[dict[str, Any]]:
    return list(app.call("GET", "/approvals?state=open", "viewer").json()["approvals"])


def test_an_alert_cannot_approve_or_move_its_own_step_approval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with paused(tmp_path, monkeypatch) as app:
        fire(app, "f1", HOSTILE_LABELS, HOSTILE_ANNOTATIONS)
        assert app.recorder.calls == [PAUSE]  # paused before steps[1], as configured
        [waiting] = opened(app)
        assert (waiting["step"], waiting["state"]) == (1, "open")
        [asked] = app.events("recovery:approval_requested")
        assert asked.details["step"] == 1 and asked.details["on_expiry"] == "deny"
        assert "by alice, slack:U0ALICE01 until" in asked.message  # not mallory
        assert app.events("recovery:approved") == []
        # the approver its annotations name is not one: refused, nothing ran
        mallory = app.slack(click(waiting["id"], user="U0MALLORY"))
        assert mallory.status_code == 403
        app.clock.advance(2)  # its annotation's "ttl" is not the request's
        assert app.run(app.rt.engine.approvals.sweep) == 0
        assert [a["id"] for a in opened(app)] == [waiting["id"]]
        assert app.recorder.calls == [PAUSE]


def test_a_decision_on_one_step_approval_never_resumes_another_remediation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with paused(tmp_path, monkeypatch) as app:
        fire(app, "f1", {}, {})
        fire(app, "f2", HOSTILE_LABELS, HOSTILE_ANNOTATIONS)
        second, first = opened(app)  # newest first
        assert app.recorder.calls == [PAUSE, PAUSE]
        answer = app.call("POST", f"/approvals/{first['id']}/approve", "alice")
        assert answer.status_code == 200, answer.text
        app.run(app.rt.engine.approvals.drain)
        assert app.recorder.calls == [PAUSE, PAUSE, RESTART]  # f1's step only
        [still] = opened(app)
        assert still["id"] == second["id"] and still["fingerprint"] == "f2"
        states = {r.fingerprint: r.state for r in app.run(app.rt.store.remediations)}
        assert states == {"f1": "succeeded", "f2": "awaiting_approval"}


def test_a_step_approval_decided_twice_runs_its_step_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with paused(tmp_path, monkeypatch) as app:
        fire(app, "f1", {}, {})
        [waiting] = opened(app)
        aid = waiting["id"]
        # a signed click whose value tries to name a step (or another form of the id): refused
        for value in (f"{aid}:1", f"{aid} 0", f"{aid}.0", f"-{aid}", f"{aid}/steps/0"):
            payload = {"type": "block_actions", "user": {"id": SLACK_USER},
                       "actions": [{"action_id": "approve", "value": value}]}  # fmt: skip
            answer = app.slack(urlencode({"payload": json.dumps(payload)}).encode())
            assert answer.status_code in (404, 422), (value, answer.status_code)
        assert [a["id"] for a in opened(app)] == [aid] and app.recorder.calls == [PAUSE]
        assert app.call("POST", f"/approvals/{aid}/approve", "alice").status_code == 200
        assert app.slack(click(aid)).status_code == 409
        assert app.slack(click(aid, "deny")).status_code == 409
        assert app.call("POST", f"/approvals/{aid}/deny", "root").status_code == 409
        app.run(app.rt.engine.approvals.drain)
        assert app.recorder.calls == [PAUSE, RESTART]
        assert len(app.events("recovery:approved")) == 1
        assert app.events("recovery:denied") == []
        assert len(app.events("recovery:succeeded")) == 1
