"""Approvals in Slack (issue #15): the incident message carries Approve and Deny buttons, is
updated with who decided (any channel), and Slack user groups may approve — against the local
Slack Web API server (tests/slackapi.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.slackapi import Call, SlackAPI
from tests.test_approvals import App, click, started

TOKEN_ENV = "TEST_APPROVAL_SLACK_TOKEN"


def slack_sections(api: SlackAPI) -> dict[str, Any]:
    return {
        "notifications": {
            "slack": {"api_url": api.url, "token_env": TOKEN_ENV, "pace": "0s"},
        }
    }


def delivered(app: App, api: SlackAPI, until: Callable[[list[Call]], bool]) -> list[Call]:
    """Run the outbox until the Slack server got what ``until`` waits for."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        app.run(app.rt.outbox.run_once)
        if until(list(api.messages)):
            return list(api.messages)
        time.sleep(0.02)
    raise AssertionError(f"Slack got {api.messages}")


def requested(app: App, api: SlackAPI, fingerprint: str = "f1") -> tuple[int, Call]:
    """Fire the alert: its approval's id and the request's Slack message."""
    before = len(api.messages)
    app.fire(fingerprint)
    rid = app.open_id()
    posted = delivered(app, api, lambda m: len(m) > before)[before]
    return rid, posted


def update_saying(app: App, api: SlackAPI, words: str) -> Call:
    """The one message change that says ``words``."""
    messages = delivered(app, api, lambda m: any(words in text_of(c) for c in m))
    [update] = [c for c in messages if words in text_of(c)]
    return update


def actions(call: Call) -> list[dict[str, Any]]:
    return [b for b in call.blocks if b.get("type") == "actions"]


def text_of(call: Call) -> str:
    return " ".join(str((b.get("text") or {}).get("text", "")) for b in call.blocks)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, slack_api: SlackAPI) -> SlackAPI:
    monkeypatch.setenv(TOKEN_ENV, slack_api.token)
    return slack_api


def test_the_request_message_has_approve_and_deny_buttons_and_an_api_decision_updates_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: SlackAPI
) -> None:
    with started(tmp_path, monkeypatch, sections=slack_sections(env)) as app:
        rid, posted = requested(app, env)
        assert posted.method == "chat.postMessage"
        [block] = actions(posted)
        approve, deny = block["elements"]
        assert (approve["action_id"], approve["value"], approve["style"]) == (
            "approve",
            str(rid),
            "primary",
        )
        assert approve["confirm"]["confirm"]["text"] == "Approve"
        assert (deny["action_id"], deny["value"], deny["style"]) == ("deny", str(rid), "danger")
        assert "Awaiting approval" in text_of(posted)

        app.clock.advance(30)
        answer = app.call("POST", f"/approvals/{rid}/approve", "alice", json={"reason": "go"})
        assert answer.status_code == 200, answer.text
        app.run(app.rt.engine.approvals.drain)
        update = update_saying(app, env, "Approved by")
        # the same message (channel and ts kept), no buttons, who/how/when said
        assert update.method == "chat.update"
        assert (update.channel, update.ts) == (posted.channel, posted.ts)
        assert actions(update) == []
        assert "`alice` via api at " in text_of(update) and ": go" in text_of(update)
        # the decision stays in the incident's thread once the run updates the message
        said = "approved by alice via api after 30s"
        messages = delivered(app, env, lambda m: any(said in c.text for c in m))
        [reply] = [c for c in messages if said in c.text]
        assert (reply.method, reply.thread_ts) == ("chat.postMessage", posted.ts)


def test_a_slack_click_and_an_expiry_update_the_message_without_buttons(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: SlackAPI
) -> None:
    with started(tmp_path, monkeypatch, sections=slack_sections(env)) as app:
        rid, posted = requested(app, env)
        assert app.slack(click(rid, "deny")).status_code == 200
        update = update_saying(app, env, "Denied")
        assert (update.method, update.ts) == ("chat.update", posted.ts)
        assert "Denied by <@U0ALICE01> via slack at" in text_of(update)
        assert actions(update) == []

    with started(tmp_path / "two", monkeypatch, sections=slack_sections(env)) as app:
        _, posted = requested(app, env, "f2")
        app.clock.advance(601)
        assert app.run(app.rt.engine.approvals.sweep) == 1
        update = update_saying(app, env, "Expired")
        assert (update.method, update.ts) == ("chat.update", posted.ts)
        assert actions(update) == []


def test_a_member_of_a_listed_slack_user_group_may_decide_and_others_may_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: SlackAPI
) -> None:
    env.usergroups["S0OPS01"] = ["U0CAROL01"]
    spec: dict[str, Any] = {"slack_users": [], "slack_usergroups": ["S0OPS01", "S0GONE01"]}
    with started(tmp_path, monkeypatch, sections=slack_sections(env), **spec) as app:
        app.fire()
        rid = app.open_id()
        assert app.slack(click(rid, user="U0MALLORY")).status_code == 403
        assert app.slack(click(rid, user="U0ALICE01")).status_code == 403  # not in the group
        assert app.open_id() == rid and app.recorder.count() == 0
        answer = app.slack(click(rid, user="U0CAROL01"))
        assert answer.status_code == 200, answer.text
        app.run(app.rt.engine.approvals.drain)
        assert app.recorder.count() == 1
        [approved] = app.events("recovery:approved")
        assert approved.actor == "slack:U0CAROL01"
        # S0OPS01 listed once (cached for the later clicks); S0GONE01's error asked each time
        asked = [r for r in env.requests if r[0] == "usergroups.users.list"]
        assert len(asked) == 1 + 2


def test_a_slack_user_group_slack_cannot_list_refuses_the_click(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: SlackAPI
) -> None:
    env.usergroups["S0OPS01"] = ["U0CAROL01"]
    spec: dict[str, Any] = {"slack_users": [], "slack_usergroups": ["S0OPS01"]}
    with started(tmp_path, monkeypatch, sections=slack_sections(env), **spec) as app:
        app.fire()
        rid = app.open_id()
        env.fail_next(1, status=500)  # the first lookup fails: refused, and not cached
        assert app.slack(click(rid, user="U0CAROL01")).status_code == 403
        assert app.open_id() == rid and app.recorder.count() == 0
        assert app.slack(click(rid, user="U0CAROL01")).status_code == 200


def test_a_resolved_alert_cancels_its_open_approval_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with started(tmp_path, monkeypatch) as app:
        app.fire()
        rid = app.open_id()
        app.fire(status="resolved")  # no sweep: the worker's resolved path cancels it
        [cancelled] = app.events("recovery:approval_cancelled")
        assert cancelled.details["approval"] == rid
        assert app.call("POST", f"/approvals/{rid}/approve", "alice").status_code == 409
        assert app.recorder.count() == 0
