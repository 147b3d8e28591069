"""Approvals by email (issue #15): the request mail, through the real SMTP server
(tests/smtpserver.py), carries single-use, expiring signed links; a GET only asks to confirm,
the POST decides once."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from remediator.config import model as config_mod
from remediator.errors import ConfigError
from tests.engine_harness import restart_playbook
from tests.smtpserver import Received, SMTPServer
from tests.test_approvals import App, started

LINK_KEY_ENV = "TEST_APPROVAL_LINK_KEY"
PUBLIC = "https://remediator.example.test"
APPROVER = "carol@example.test"


def email_sections(server: SMTPServer) -> dict[str, Any]:
    return {
        "notifications": {"email": server.email_config().model_dump(mode="json")},
        "approvals": {
            "slack_signing_secret_env": "TEST_SLACK_SIGNING_SECRET",
            "link_secret_env": LINK_KEY_ENV,
            "public_url": PUBLIC,
        },
    }


@contextmanager
def mailed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: SMTPServer, **spec: Any
) -> Iterator[App]:
    monkeypatch.setenv(LINK_KEY_ENV, "k" * 48)
    spec = {"approvers": ["alice"], "slack_users": [], "emails": [APPROVER], **spec}
    with started(tmp_path, monkeypatch, sections=email_sections(server), **spec) as app:
        yield app


def mail_to(app: App, server: SMTPServer, address: str) -> Received:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        app.run(app.rt.outbox.run_once)
        found = server.to(address)
        if found:
            assert len(found) == 1
            return found[0]
        time.sleep(0.02)
    raise AssertionError(f"no mail to {address}")


def links(received: Received) -> dict[str, str]:
    """The approve and deny links of a request mail (its text part), as paths with query."""
    part = received.message.get_body(preferencelist=("plain",))
    assert part is not None
    text = part.get_content()
    found = {}
    for decision in ("approve", "deny"):
        [url] = re.findall(rf"{re.escape(PUBLIC)}/\S+/email/{decision}\?token=\S+", text)
        parts = urlsplit(url)
        found[decision] = f"{parts.path}?{parts.query}"
    return found


def test_the_request_mail_has_signed_links_a_get_asks_and_a_post_decides_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smtp_server: SMTPServer
) -> None:
    with mailed(tmp_path, monkeypatch, smtp_server) as app:
        app.fire()
        rid = app.open_id()
        received = mail_to(app, smtp_server, APPROVER)
        assert received.message["Subject"].startswith("[AWAITING] Approval requested")
        link = links(received)
        assert f"/approvals/{rid}/email/approve?token=" in link["approve"]

        # a GET (a mail scanner, or the person) shows a confirm form and changes nothing
        page = app.client.get(link["approve"])
        assert page.status_code == 200 and "<form" in page.text
        assert page.headers["cache-control"] == "no-store"
        assert app.open_id() == rid and app.recorder.count() == 0

        token = link["approve"].split("token=", 1)[1]
        path = link["approve"].split("?", 1)[0]
        form = {"token": unquote(token)}
        done = app.client.post(path, data=form)
        assert done.status_code == 200, done.text
        app.run(app.rt.engine.approvals.drain)
        assert app.recorder.count() == 1
        [approved] = app.events("recovery:approved")
        assert approved.actor == f"email:{APPROVER}" and approved.details["channel"] == "email"

        # the same link again: 410, nothing more happens; the other link: the decision is taken
        assert app.client.post(path, data=form).status_code == 410
        deny_path, deny_token = link["deny"].split("?token=", 1)
        again = app.client.post(deny_path, data={"token": unquote(deny_token)})
        assert again.status_code == 409
        assert app.recorder.count() == 1
        assert len(app.events("recovery:approved")) == 1
        assert app.events("recovery:denied") == []


def test_a_deny_link_denies_and_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smtp_server: SMTPServer
) -> None:
    with mailed(tmp_path, monkeypatch, smtp_server) as app:
        app.fire()
        link = links(mail_to(app, smtp_server, APPROVER))
        path, token = link["deny"].split("?token=", 1)
        answer = app.client.post(path, data={"token": unquote(token)})
        assert answer.status_code == 200 and "denied" in answer.text
        [denied] = app.events("recovery:denied")
        assert denied.actor == f"email:{APPROVER}"
        assert app.recorder.count() == 0


def test_approvers_by_email_without_a_mail_channel_or_a_link_key_are_refused_at_load() -> None:
    base = {
        "targets": [{"name": "web", "type": "docker_container", "container": "web"}],
        "playbooks": [restart_playbook(approval={"emails": [APPROVER]})],
    }
    with pytest.raises(ConfigError) as refused:
        config_mod.parse(base, env={})
    assert (
        "playbooks[0].approval.emails: approvers by email need notifications.email and "
        "approvals.link_secret_env" in refused.value.problems[0]
    )
