"""The email notifier against a real aiosmtpd server on 127.0.0.1 (plain, STARTTLS, TLS)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest

from remediator.config.model import EmailConfig
from remediator.errors import ConfigError
from remediator.notifiers.base import Delivery, Notification
from remediator.notifiers.email import EmailNotifier, build_message, recipients
from tests.smtpserver import (
    PASSWORD_ENV,
    SERVICE_UNAVAILABLE,
    TRY_LATER,
    SMTPServer,
    smtp_server,
)

__all__ = ["smtp_server"]  # the fixture, imported for this module's tests

PASSWORD = "pa55-W0rd-never-shown"
OPS = "ops@example.test"
DBA = "dba@example.test"
GHOST = "ghost@example.test"


def note(destination: str = OPS, **overrides: Any) -> Notification:
    values: dict[str, Any] = {
        "id": 42,
        "channel": "email",
        "destination": destination,
        "incident": "abc123:1",
        "phase": "firing",
        "title": "HighMemory on <web-1> & friends",
        "fields": {
            "alert": "HighMemory <script>alert(1)</script>",
            "target": "web-1",
            "action": "docker.restart",
            "outcome": "succeeded",
            "duration": "3.2s",
            "namespace": "prod",
        },
        "severity": "critical",
        "links": {
            "generator": "http://prometheus.example.test/graph?g0.expr=up&x=1",
            "runbook": "https://runbooks.example.test/high-memory",
        },
        "detail": 'Memory at 93% "over" 85% <threshold>',
    }
    values.update(overrides)
    return Notification(**values)


def send(server: SMTPServer, n: Notification, **config: Any) -> Delivery:
    return asyncio.run(send_with(server.email_config(**config), n, server))


async def send_with(cfg: EmailConfig, n: Notification, server: SMTPServer) -> Delivery:
    notifier = EmailNotifier(cfg, env=server.env, tls_context=server.client_tls)
    try:
        return await notifier.send(n)
    finally:
        await notifier.aclose()


@pytest.fixture
def starttls_server() -> Iterator[SMTPServer]:
    with SMTPServer(tls="starttls", username="robot", password=PASSWORD) as server:
        yield server


@pytest.fixture
def implicit_server() -> Iterator[SMTPServer]:
    with SMTPServer(tls="implicit", username="robot", password=PASSWORD) as server:
        yield server


def parts(message: EmailMessage) -> tuple[str, str]:
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert isinstance(text, EmailMessage) and isinstance(html, EmailMessage)
    return str(text.get_content()), str(html.get_content())


def test_recipients_by_severity() -> None:
    cfg = EmailConfig(host="h", sender="s@x.test", to=[OPS], to_by_severity={"critical": [DBA]})
    assert recipients(cfg, "critical") == [DBA]
    assert recipients(cfg, "warning") == [OPS]


def test_plain_delivery_and_message_format(smtp_server: SMTPServer) -> None:
    delivery = send(smtp_server, note())
    assert delivery == Delivery(True, "email: delivered to 1 of 1 recipients")
    [got] = smtp_server.messages
    assert got.rcpt_tos == (OPS,)
    assert got.mail_from == "remediator@example.test"
    assert not got.tls
    msg = got.message
    assert msg["Subject"] == "[FIRING] HighMemory on <web-1> & friends"
    assert msg["Message-ID"] == "<remediator-42@remediator>"
    assert msg["From"] == "remediator@example.test"
    assert msg["To"] == OPS
    assert msg["Date"] is not None
    assert msg["X-Remediator-Incident"] == "abc123:1"
    text, html = parts(msg)
    for label, value in [
        ("Alert:", "HighMemory <script>alert(1)</script>"),
        ("Target:", "web-1"),
        ("Action:", "docker.restart"),
        ("Outcome:", "succeeded"),
        ("Duration:", "3.2s"),
        ("Severity:", "critical"),
    ]:
        line = next(line for line in text.splitlines() if line.startswith(label))
        assert line.split(maxsplit=1)[1] == value
    assert "Runbook: https://runbooks.example.test/high-memory" in text
    assert 'Memory at 93% "over" 85% <threshold>' in text
    # Everything from the alert is escaped in the HTML part.
    assert "<script>" not in html and "<web-1>" not in html and "<threshold>" not in html
    assert "HighMemory &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "HighMemory on &lt;web-1&gt; &amp; friends" in html
    assert "Memory at 93% &quot;over&quot; 85% &lt;threshold&gt;" in html
    assert '<a href="http://prometheus.example.test/graph?g0.expr=up&amp;x=1">' in html
    assert '<a href="https://runbooks.example.test/high-memory">Runbook</a>' in html


def test_subject_by_phase_and_resend_keeps_message_id(smtp_server: SMTPServer) -> None:
    assert send(smtp_server, note(phase="recovered", title="Line\nbreak")).ok
    assert send(smtp_server, note(phase="recovered", title="Line\nbreak")).ok
    first, second = smtp_server.messages
    assert first.message["Subject"] == "[RECOVERED] Line break"
    assert first.message["Message-ID"] == second.message["Message-ID"]


def test_non_http_links_are_not_clickable() -> None:
    msg = build_message(note(links={"runbook": "javascript:alert(1)"}), "s@x.test", [OPS])
    _, html = parts(msg)
    assert "href" not in html and "Runbook: javascript:alert(1)" in html


def test_starttls_with_auth(starttls_server: SMTPServer) -> None:
    delivery = send(starttls_server, note())
    assert delivery.ok, delivery.detail
    [got] = starttls_server.messages
    assert got.tls and got.login == "robot"
    assert starttls_server.logins == [("robot", True)]


def test_starttls_untrusted_certificate_is_retryable(starttls_server: SMTPServer) -> None:
    cfg = starttls_server.email_config()
    notifier = EmailNotifier(cfg, env=starttls_server.env)  # the system CAs: not ours
    delivery = asyncio.run(notifier.send(note()))
    assert not delivery.ok and not delivery.permanent, delivery.detail
    assert starttls_server.messages == []


def test_implicit_tls_with_auth(implicit_server: SMTPServer) -> None:
    delivery = send(implicit_server, note())
    assert delivery.ok, delivery.detail
    [got] = implicit_server.messages
    assert got.tls and got.login == "robot"


def test_wrong_password_is_permanent_and_never_shown(starttls_server: SMTPServer) -> None:
    wrong = "Wr0ng-secret-value"
    cfg = starttls_server.email_config()
    notifier = EmailNotifier(cfg, env={PASSWORD_ENV: wrong}, tls_context=starttls_server.client_tls)
    delivery = asyncio.run(notifier.send(note()))
    assert not delivery.ok and delivery.permanent
    assert "535" in delivery.detail
    assert wrong not in delivery.detail and PASSWORD not in delivery.detail
    # aiosmtplib tries each offered mechanism (PLAIN, LOGIN) before giving up.
    assert starttls_server.logins and all(t == ("robot", False) for t in starttls_server.logins)
    assert starttls_server.messages == []


def test_missing_password_env_is_a_config_error(starttls_server: SMTPServer) -> None:
    with pytest.raises(ConfigError, match=PASSWORD_ENV):
        EmailNotifier(starttls_server.email_config(), env={})


def test_partial_refusal_is_ok_with_refused_listed(smtp_server: SMTPServer) -> None:
    smtp_server.refuse(GHOST)
    delivery = send(smtp_server, note(f"{OPS}, {GHOST}"))
    assert delivery.ok and not delivery.permanent
    assert delivery.refused == (f"{GHOST} (550)",)
    assert "delivered to 1 of 2 recipients" in delivery.detail
    assert "no such user" in delivery.detail
    [got] = smtp_server.to(OPS)
    assert got.rcpt_tos == (OPS,)
    assert smtp_server.to(GHOST) == []


def test_all_refused_550_is_permanent(smtp_server: SMTPServer) -> None:
    smtp_server.refuse(OPS, GHOST)
    delivery = send(smtp_server, note(f"{OPS},{GHOST}"))
    assert not delivery.ok and delivery.permanent
    assert "550" in delivery.detail and GHOST in delivery.detail
    assert smtp_server.messages == []


def test_all_refused_450_is_retryable(smtp_server: SMTPServer) -> None:
    smtp_server.refuse(OPS, reply=TRY_LATER)
    delivery = send(smtp_server, note())
    assert not delivery.ok and not delivery.permanent
    assert "450" in delivery.detail


def test_busy_server_421_is_retryable(smtp_server: SMTPServer) -> None:
    smtp_server.busy = SERVICE_UNAVAILABLE
    delivery = send(smtp_server, note())
    assert not delivery.ok and not delivery.permanent
    assert "421" in delivery.detail


def test_server_down_is_retryable_then_recovers(smtp_server: SMTPServer) -> None:
    smtp_server.down()
    delivery = send(smtp_server, note())
    assert not delivery.ok and not delivery.permanent
    assert delivery.retry_after is None
    smtp_server.up()
    assert send(smtp_server, note()).ok
    assert len(smtp_server.messages) == 1


def test_no_recipients_is_permanent(smtp_server: SMTPServer) -> None:
    delivery = send(smtp_server, note(" , "))
    assert not delivery.ok and delivery.permanent
