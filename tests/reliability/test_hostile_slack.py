"""Hostile input on the approval channels (issue #15): Slack's interactivity endpoint and the
approval emails' signed links are reachable without a token, so everything they are sent is
hostile until proven otherwise.

Each case sends something forged, tampered, stale, replayed, oversized or malformed to an open
approval and checks that it is refused with the documented status and that nothing changed:
the approval is still open, no decision event was recorded, nothing ran. Alert text that tries
to mention or link in Slack reaches the approval message escaped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from remediator.engine.approval_links import LinkSigner
from tests.reliability.conftest import Figures
from tests.slackapi import SlackAPI
from tests.smtpserver import SMTPServer
from tests.test_approvals import SLACK_USER, App, click, started

LINK_KEY_ENV = "TEST_HOSTILE_LINK_KEY"
LINK_KEY = "h" * 48
SLACK_TOKEN_ENV = "TEST_HOSTILE_SLACK_TOKEN"
P = "/api/v1/recovery"
DECISIONS = ("recovery:approved", "recovery:denied", "recovery:approval_cancelled")


@contextmanager
def waiting(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    smtp: SMTPServer,
    slack: dict[str, Any] | None = None,
) -> Iterator[tuple[App, int]]:
    monkeypatch.setenv(LINK_KEY_ENV, LINK_KEY)
    approvals = {
        "slack_signing_secret_env": "TEST_SLACK_SIGNING_SECRET",
        "link_secret_env": LINK_KEY_ENV,
        "public_url": "https://remediator.example.test",
    }
    spec: dict[str, Any] = {"emails": ["carol@example.test"]}
    notes = {"email": smtp.email_config().model_dump(mode="json"), **(slack or {})}
    with started(
        tmp_path, monkeypatch, sections={"approvals": approvals, "notifications": notes}, **spec
    ) as app:
        app.fire()
        yield app, app.open_id()


def unchanged(app: App, rid: int) -> None:
    """The approval is still open, nothing was decided, nothing ran."""
    assert app.open_id() == rid
    for kind in DECISIONS:
        assert app.events(kind) == [], kind
    assert app.recorder.count() == 0
    [remediation] = app.run(app.rt.store.remediations)
    assert remediation.state == "awaiting_approval"


def test_forged_stale_replayed_and_malformed_slack_requests_change_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, figures: Figures, smtp_server: SMTPServer
) -> None:
    with waiting(tmp_path, monkeypatch, smtp_server) as (app, rid):
        now = int(app.clock.now())
        body = click(rid)
        tried: list[tuple[str, int, int]] = []

        def expect(name: str, answer: Any, status: int) -> None:
            tried.append((name, answer.status_code, status))
            assert answer.status_code == status, (name, answer.text)

        expect("unsigned", app.client.post(P + "/slack/interactions", content=body), 401)
        expect("mis-signed", app.slack(body, secret="x" * 32), 401)
        expect("stale", app.slack(body, ts=now - 301), 401)
        expect("from the future", app.slack(body, ts=now + 301), 401)
        headers = {"X-Slack-Request-Timestamp": "12e3", "X-Slack-Signature": "v0=00"}
        expect("odd timestamp", app.client.post(P + "/slack/interactions", content=body,
                                                headers=headers), 401)  # fmt: skip
        expect("unlisted user", app.slack(click(rid, user="U0MALLORY")), 403)
        expect("unlisted user again", app.slack(click(rid, "deny", user="U0MALLORY")), 403)
        expect("unknown approval", app.slack(click(987654)), 404)
        expect("not a number", app.slack(click(rid).replace(b"%22" + str(rid).encode() + b"%22",
                                                            b"%221e9%22")), 422)  # fmt: skip
        non_json = urlencode({"payload": "{not json"}).encode()
        expect("non-JSON payload", app.slack(non_json), 422)
        expect("no payload", app.slack(b"token=x&team=y"), 422)
        wrong = {"type": "block_actions", "user": {"id": SLACK_USER},
                 "actions": [{"action_id": "delete_everything", "value": str(rid)}]}  # fmt: skip
        expect("other action", app.slack(urlencode({"payload": json.dumps(wrong)}).encode()), 422)
        listy = urlencode({"payload": json.dumps([1, 2, 3])}).encode()
        expect("a list payload", app.slack(listy), 422)
        huge = urlencode({"payload": json.dumps({"pad": "A" * 70_000})}).encode()
        expect("huge body", app.slack(huge), 413)
        unchanged(app, rid)

        # a good click, then the very same request again: a replay
        expect("good", app.slack(body), 200)
        expect("replayed", app.slack(body), 401)
        app.run(app.rt.engine.approvals.drain)
        assert len(app.events("recovery:approved")) == 1 and app.recorder.count() == 1
    figures(slack_inputs=len(tried))


def test_tampered_expired_and_reused_email_links_change_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, figures: Figures, smtp_server: SMTPServer
) -> None:
    with waiting(tmp_path, monkeypatch, smtp_server) as (app, rid):
        signer = LinkSigner(LINK_KEY.encode())
        expires = app.clock.now() + 600
        email = "carol@example.test"

        def token(**kw: Any) -> str:
            args: dict[str, Any] = {"approval": rid, "decision": "approve", "email": email,
                                    "expires": expires} | kw  # fmt: skip
            return signer.sign(**args)

        def post(path_id: int, decision: str, value: str) -> int:
            path = f"{P}/approvals/{path_id}/email/{decision}"
            return int(app.client.post(path, data={"token": value}).status_code)

        good = token()
        payload, mac = good.split(".")
        other_key = LinkSigner(b"o" * 48).sign(
            approval=rid, decision="approve", email=email, expires=expires
        )
        cases = {
            "another approval's token": (rid, "approve", token(approval=rid + 1), 401),
            "a deny token on approve": (rid, "approve", token(decision="deny"), 401),
            "an approve token on deny": (rid, "deny", good, 401),
            "expired": (rid, "approve", token(expires=app.clock.now() - 1), 401),
            "signed with another key": (rid, "approve", other_key, 401),
            "payload swapped": (rid, "approve", f"{token(approval=rid + 1).split('.')[0]}.{mac}",
                                401),
            "truncated mac": (rid, "approve", f"{payload}.{mac[:-4]}", 401),
            "empty": (rid, "approve", "", 401),
            "garbage": (rid, "approve", "\u202e;<script>.%00", 401),
            "huge": (rid, "approve", "A" * 5000, 413),
            "another address": (rid, "approve", token(email="mallory@example.test"), 403),
            "unknown approval": (987654, "approve", token(approval=987654), 404),
            "unknown decision": (rid, "delete", good, 404),
        }  # fmt: skip
        for name, (path_id, decision, value, status) in cases.items():
            assert post(path_id, decision, value) == status, name
        # a GET never decides, even with a good token
        confirm = app.client.get(f"{P}/approvals/{rid}/email/approve", params={"token": good})
        assert confirm.status_code == 200 and "<form" in confirm.text
        unchanged(app, rid)

        # used once: a second use is refused
        assert post(rid, "approve", good) == 200
        assert post(rid, "approve", good) == 410
        app.run(app.rt.engine.approvals.drain)
        assert len(app.events("recovery:approved")) == 1 and app.recorder.count() == 1
    figures(email_link_inputs=len(cases) + 3)


def test_hostile_alert_text_reaches_the_approval_message_escaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slack_api: SlackAPI, smtp_server: SMTPServer
) -> None:
    monkeypatch.setenv(SLACK_TOKEN_ENV, slack_api.token)
    slack = {"slack": {"api_url": slack_api.url, "token_env": SLACK_TOKEN_ENV, "pace": "0s"}}
    with waiting(tmp_path, monkeypatch, smtp_server, slack) as (app, rid):
        deadline = time.monotonic() + 10
        while not slack_api.messages and time.monotonic() < deadline:
            app.run(app.rt.outbox.run_once)
            time.sleep(0.02)
        [posted] = slack_api.messages
        values = [e["value"] for b in posted.blocks if b["type"] == "actions"
                  for e in b["elements"]]  # fmt: skip
        assert values == [str(rid), str(rid)]
        # a denial's reason is free text from the API: escaped when it reaches Slack
        reason = "<!channel> <@U0BOSS> <https://evil.example|click>"
        answer = app.call("POST", f"/approvals/{rid}/deny", "alice", json={"reason": reason})
        assert answer.status_code == 200
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            app.run(app.rt.outbox.run_once)
            if any(m.method == "chat.update" for m in slack_api.messages):
                break
            time.sleep(0.02)
        [update] = [m for m in slack_api.messages if m.method == "chat.update"]
        assert "&lt;!channel&gt;" in json.dumps(update.blocks)
        for message in slack_api.messages:  # the update, the thread reply, the request
            text = json.dumps(message.blocks) + message.text
            assert "<!channel>" not in text and "<@U0BOSS>" not in text
            assert "<https://" not in text
