"""Links taken from alert text, against ``notifications.link_hosts``, through a real served
remediator, the local Slack API server and a real SMTP server.

Anyone who can make Alertmanager fire writes an alert's ``runbook_url`` annotation and its
``generatorURL``. Three unrecognised alerts (each escalated to every channel) carry a runbook on
the allowed host, one on another host, and one that names the allowed host as its user part
(``https://runbooks.example.test@evil.example/``); every ``generatorURL`` is on 127.0.0.1, which
is not allowed. Expected: only the allowed runbook is a link, in Slack and in both parts of the
email; every other link is replaced by "(link hidden: host not allowed)", and no message
contains the foreign host at all.
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import httpx2 as httpx

from tests.reliability.conftest import Figures, Serve
from tests.reliability.support import ALERTS, alert, payload
from tests.slackapi import Call, SlackAPI
from tests.smtpserver import SMTPServer
from tests.waiting import wait_for

SLACK_ENV = "REMEDIATOR_TEST_SLACK_TOKEN"
ALLOWED = "https://runbooks.example.test/zzyzx"
HIDDEN = "(link hidden: host not allowed)"
RUNBOOKS = {
    "allowed": ALLOWED,
    "foreign": "https://evil.example/zzyzx",
    "userpart": "https://runbooks.example.test@evil.example/zzyzx",
}


def flat(value: Any) -> str:
    """Every string inside a Slack message's blocks, joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return " ".join(flat(v) for v in value.values())
    if isinstance(value, list):
        return " ".join(flat(v) for v in value)
    return ""


def slack_text(call: Call) -> str:
    return call.text + " " + flat(call.blocks)


def parts(message: EmailMessage) -> tuple[str, str]:
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


def test_only_links_on_allowed_hosts_are_shown_in_slack_and_email(
    serve: Serve, figures: Figures
) -> None:
    with SlackAPI() as slack, SMTPServer() as smtp:
        notifications = {
            "slack": {
                "api_url": slack.url,
                "token_env": SLACK_ENV,
                "channel": "#ops",
                "pace": "0s",
            },
            "email": smtp.email_config().model_dump(mode="json"),
            "link_hosts": ["runbooks.example.test"],
            # each escalation on its own (not coalesced into a storm summary, which shows no link)
            "coalesce_window": "0s",
        }
        served = serve(
            {"health": {"enabled": False}, "notifications": notifications},
            extra_env={SLACK_ENV: slack.token},
        )
        alerts = [
            alert(f"link{i}", f"Zzyzx{name.capitalize()}", annotations={"runbook_url": url})
            for i, (name, url) in enumerate(RUNBOOKS.items())
        ]

        def top() -> list[Call]:
            return [m for m in slack.messages if m.method == "chat.postMessage" and not m.thread_ts]

        for sent, one in enumerate(alerts, start=1):  # one at a time: each its own message
            answer = httpx.post(served.url + ALERTS, json=payload([one]),
                                headers=served.headers("alertmanager"), timeout=10)  # fmt: skip
            assert answer.status_code == 200, answer.text
            wait_for(lambda n=sent: len(top()) == n and len(smtp.messages) == n, timeout=30,  # type: ignore[misc]
                     what=f"escalation {sent}")  # fmt: skip
        slack_by = {name: [m for m in top() if f"Zzyzx{name.capitalize()}" in m.text]
                    for name in RUNBOOKS}  # fmt: skip
        mail_by = {name: [m for m in smtp.messages
                          if f"Zzyzx{name.capitalize()}" in str(m.message["Subject"])]
                   for name in RUNBOOKS}  # fmt: skip
        assert [len(v) for v in slack_by.values()] == [len(v) for v in mail_by.values()] == [1] * 3

        allowed_slack = slack_text(slack_by["allowed"][0])
        assert f"<{ALLOWED}|Runbook>" in allowed_slack
        assert "|Source>" not in allowed_slack and HIDDEN in allowed_slack  # 127.0.0.1 hidden
        text, html = parts(mail_by["allowed"][0].message)
        assert f"Runbook: {ALLOWED}" in text and f'<a href="{ALLOWED}">Runbook</a>' in html
        assert "127.0.0.1:9090" not in text + html and text.count(HIDDEN) == 1
        assert f"*Source*\n{HIDDEN}" in allowed_slack

        for name in ("foreign", "userpart"):
            shown = slack_text(slack_by[name][0])
            text, html = parts(mail_by[name][0].message)
            assert shown.count(HIDDEN) == text.count(HIDDEN) == html.count(HIDDEN) == 2
            assert f"Runbook:  {HIDDEN}" in text and f"Source:   {HIDDEN}" in text
            for where in (shown, text, html):
                assert "evil.example" not in where and "127.0.0.1:9090" not in where
            assert "|Runbook>" not in shown and "href" not in html
        figures(links_sent=6, links_shown=1, messages=6)
