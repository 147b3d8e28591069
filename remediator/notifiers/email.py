"""Email notifications over SMTP, sent with aiosmtplib.

One connection per message: connect (``tls``: ``starttls`` upgrades a plain connection,
``implicit`` speaks TLS from the first byte, ``none`` never encrypts), log in when
``username`` and ``password_env`` are configured, send one multipart/alternative message
(plain text + HTML), quit. The message carries a stable ``Message-ID``
(``<remediator-<id>@remediator>``) so a resend after an unclear failure is recognisable.

Outcomes, as a :class:`~remediator.notifiers.base.Delivery`:

* every recipient accepted: ok;
* some refused, some accepted (aiosmtplib returns the refusals, it does not raise):
  ok, with the refused ones in ``refused`` as ``"addr (code)"``;
* every recipient refused, or any other SMTP reply error: a 5xx reply (and a failed login,
  535) is permanent, a 4xx reply is worth retrying;
* connection refused or lost, timeouts, TLS failures: retryable.

The password is read from the environment once, when the notifier is built (a missing one is a
:class:`~remediator.errors.ConfigError`), and never appears in ``detail``.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import os
import re
import ssl
from collections.abc import Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, ClassVar, Literal

import aiosmtplib
from pydantic import Field

from remediator.audit.events import Event
from remediator.clock import Clock
from remediator.config.durations import Duration
from remediator.errors import ConfigError
from remediator.notifiers.base import (
    Channel,
    ChannelConfig,
    Delivery,
    Notification,
    Phase,
    Thread,
    Unthreaded,
)
from remediator.redaction import redact_text


class EmailConfig(ChannelConfig):
    DESTINATION: ClassVar[tuple[str, ...]] = ("host", "port", "tls", "ca_file")
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    tls: Literal["starttls", "implicit", "none"] = "starttls"
    ca_file: str | None = None  # PEM bundle to trust instead of the system CAs
    username: str | None = None
    password_env: str | None = None
    sender: str
    to: list[str] = Field(min_length=1)
    to_by_severity: dict[str, list[str]] = Field(default_factory=dict)
    timeout: Duration = 10.0


FIELD_LABELS = (
    ("alert", "Alert"),
    ("target", "Target"),
    ("action", "Action"),
    ("outcome", "Outcome"),
    ("duration", "Duration"),
)
LINK_LABELS = {"generator": "Alert source", "runbook": "Runbook"}
_SAFE_TOKEN = re.compile(r"[^A-Za-z0-9._-]+")
_WHITESPACE = re.compile(r"\s+")
_MAX_DETAIL = 600
CLOSE_WAIT = 2.0  # seconds to wait for a closed connection to release its socket


def recipients(config: EmailConfig, severity: str) -> list[str]:
    """Who gets mail for ``severity``: ``to_by_severity[severity]`` when set, else ``to``."""
    chosen = config.to_by_severity.get(severity)
    return list(chosen) if chosen else list(config.to)


def message_id(note: Notification) -> str:
    return f"<remediator-{note.id}@remediator>"


def subject(note: Notification) -> str:
    title = _WHITESPACE.sub(" ", note.title).strip() or "(no title)"
    return f"[{note.phase.upper()}] {title}"[:250]


def _rows(note: Notification) -> list[tuple[str, str]]:
    rows = [(label, note.fields[key]) for key, label in FIELD_LABELS if key in note.fields]
    rows.append(("Severity", note.severity))
    known = {key for key, _ in FIELD_LABELS} | {"severity"}
    rows += [
        (key.replace("_", " ").capitalize(), value)
        for key, value in sorted(note.fields.items())
        if key not in known
    ]
    return rows


def _links(note: Notification) -> list[tuple[str, str]]:
    ordered = [k for k in LINK_LABELS if k in note.links]
    ordered += sorted(k for k in note.links if k not in LINK_LABELS)
    return [
        (LINK_LABELS.get(k, k.replace("_", " ").capitalize()), note.links[k])
        for k in ordered
        if note.links[k]
    ]


def render_text(note: Notification) -> str:
    lines = [subject(note), ""]
    rows = _rows(note)
    width = max(len(label) for label, _ in rows)
    lines += [f"{label + ':':<{width + 1}} {value}" for label, value in rows]
    links = _links(note)
    if links:
        lines.append("")
        lines += [f"{label}: {url}" for label, url in links]
    if note.detail:
        lines += ["", note.detail]
    lines += ["", f"Incident: {note.incident}", "-- remediator"]
    return "\n".join(lines) + "\n"


def _e(value: str) -> str:
    return html.escape(value, quote=True)


def _link_html(label: str, url: str) -> str:
    if url.lower().startswith(("https://", "http://")):
        return f'<li><a href="{_e(url)}">{_e(label)}</a></li>'
    return f"<li>{_e(label)}: {_e(url)}</li>"  # not a web link: shown, never clickable


def render_html(note: Notification) -> str:
    cell = 'style="text-align:left;padding:2px 12px 2px 0;vertical-align:top"'
    rows = "".join(
        f"<tr><th {cell}>{_e(label)}</th><td {cell}>{_e(value)}</td></tr>"
        for label, value in _rows(note)
    )
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8"></head><body>',
        f"<h2>{_e(subject(note))}</h2>",
        f"<table>{rows}</table>",
    ]
    links = _links(note)
    if links:
        parts.append("<ul>" + "".join(_link_html(label, url) for label, url in links) + "</ul>")
    if note.detail:
        parts.append(f'<pre style="white-space:pre-wrap">{_e(note.detail)}</pre>')
    parts.append(f"<p><small>Incident {_e(note.incident)} &middot; remediator</small></p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def build_message(
    note: Notification, sender: str, to: list[str], *, now: datetime | None = None
) -> EmailMessage:
    """The multipart/alternative message (text, then HTML) for ``note``."""
    msg = EmailMessage()
    msg["Subject"] = subject(note)
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    msg["Message-ID"] = message_id(note)
    incident = _SAFE_TOKEN.sub("-", note.incident).strip("-")[:120] or "unknown"
    msg["References"] = f"<remediator-incident-{incident}@remediator>"
    msg["X-Remediator-Incident"] = _WHITESPACE.sub(" ", note.incident).strip()[:200] or "unknown"
    msg["X-Remediator-Phase"] = note.phase
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(render_text(note))
    msg.add_alternative(render_html(note), subtype="html")
    return msg


def _split(destination: str) -> list[str]:
    return [addr.strip() for addr in destination.split(",") if addr.strip()]


def _reply(code: int, message: str) -> str:
    text = _WHITESPACE.sub(" ", message).strip()
    return f"{code} {text}".strip()


class EmailNotifier(Unthreaded):
    channel: ClassVar[Channel] = "email"
    config_key: ClassVar[str] = "email"  # notifications.email
    summary: ClassVar[str] = (
        "Email over SMTP: one message per remediation outcome and per escalation."
    )
    config_model: ClassVar[type[ChannelConfig]] = EmailConfig
    # One message per remediation outcome.
    phases: ClassVar[Mapping[str, Phase]] = {
        "recovery:succeeded": "recovered",
        "recovery:failed": "failed",
    }

    @staticmethod
    def configured(section: EmailConfig | None) -> bool:
        return section is not None

    @staticmethod
    def destinations(section: EmailConfig, event: Event) -> list[str]:
        return [",".join(recipients(section, event.severity))]

    @staticmethod
    def names(section: EmailConfig) -> list[str]:
        return ["email"]

    @classmethod
    def build(
        cls, section: EmailConfig, *, clock: Clock, env: Mapping[str, str] | None
    ) -> EmailNotifier:
        context = ssl.create_default_context(cafile=section.ca_file) if section.ca_file else None
        return cls(section, env=env, tls_context=context)

    def __init__(
        self,
        config: EmailConfig,
        *,
        env: Mapping[str, str] | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self._config = config
        self._tls_context = tls_context
        self._password: str | None = None
        if config.password_env is not None:
            self._password = (os.environ if env is None else env).get(config.password_env)
            if not self._password:
                problem = f"notifications.email.password_env: {config.password_env} is not set"
                raise ConfigError([problem])

    async def send(self, note: Notification, *, thread: Thread | None = None) -> Delivery:
        password = self._password
        to = _split(note.destination)
        if not to:
            return Delivery(False, "email: no recipients", permanent=True)
        try:
            delivery = await self._send(note, to, password)
        except Exception as exc:  # never raise out of a notifier
            delivery = _failure(exc)
        secrets = (password,) if password else ()
        return _redacted(delivery, secrets)

    async def _send(self, note: Notification, to: list[str], password: str | None) -> Delivery:
        cfg = self._config
        msg = build_message(note, cfg.sender, to)
        client = aiosmtplib.SMTP(
            hostname=cfg.host,
            port=cfg.port,
            use_tls=cfg.tls == "implicit",
            start_tls=False,  # upgraded below, once the socket is known
            tls_context=self._tls_context,
            timeout=cfg.timeout,
        )
        sock: Any = None
        try:
            # aiosmtplib applies the timeout to each step; this bounds the whole conversation.
            async with asyncio.timeout(cfg.timeout * 4):
                await client.connect()
                sock = client.get_transport_info("socket")
                if cfg.tls == "starttls":
                    await client.starttls()
                if cfg.username is not None and password is not None:
                    await client.login(cfg.username, password)
                errors, response = await client.send_message(msg, sender=cfg.sender, recipients=to)
                with contextlib.suppress(aiosmtplib.SMTPException):
                    await client.quit()
        finally:
            client.close()
            await _closed(sock, min(cfg.timeout, CLOSE_WAIT))
        total = len(to)
        if not errors:
            return Delivery(True, f"email: delivered to {total} of {total} recipients")
        refused = tuple(f"{addr} ({resp.code})" for addr, resp in sorted(errors.items()))
        reasons = "; ".join(
            f"{addr}: {_reply(resp.code, resp.message)}" for addr, resp in sorted(errors.items())
        )
        accepted = total - len(errors)
        detail = f"email: delivered to {accepted} of {total} recipients; refused {reasons}"
        if response:
            detail += f" (server: {_WHITESPACE.sub(' ', response).strip()})"
        return Delivery(True, detail, refused=refused)

    async def aclose(self) -> None:
        """Nothing to close: each send opens and closes its own connection."""


async def _closed(sock: Any, limit: float) -> None:
    """Give a closing connection (a TLS one sends close_notify first) a moment to let go of
    its socket, so a caller whose event loop ends right after us leaks nothing."""
    if sock is None:
        return
    step = 0.005  # aiosmtplib offers nothing to await here: poll, boundedly
    for _ in range(max(1, int(limit / step))):
        if sock.fileno() == -1:
            return
        await asyncio.sleep(step)


def _failure(exc: BaseException) -> Delivery:
    """Classify what went wrong: 5xx replies are permanent, the rest is worth a retry."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        listed = "; ".join(f"{r.recipient}: {_reply(r.code, r.message)}" for r in exc.recipients)
        permanent = bool(codes) and all(code >= 500 for code in codes)
        return Delivery(False, f"email: all recipients refused: {listed}", permanent=permanent)
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return Delivery(
            False,
            f"email: login refused: {_reply(exc.code, exc.message)}",
            permanent=exc.code >= 500,
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code > 0:
        step = {
            aiosmtplib.SMTPSenderRefused: "sender refused",
            aiosmtplib.SMTPDataError: "message refused",
            aiosmtplib.SMTPHeloError: "greeting refused",
            aiosmtplib.SMTPConnectResponseError: "connection refused by server",
        }.get(type(exc), "server error")
        return Delivery(
            False, f"email: {step}: {_reply(exc.code, exc.message)}", permanent=exc.code >= 500
        )
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        # e.g. STARTTLS or AUTH configured but not offered: retrying cannot fix the config.
        return Delivery(False, f"email: not supported by server: {exc.message}", permanent=True)
    if isinstance(exc, TimeoutError):  # includes aiosmtplib's SMTPTimeoutError
        return Delivery(False, "email: timed out")
    if isinstance(exc, ssl.SSLError):
        return Delivery(False, f"email: TLS failed: {type(exc).__name__}: {exc}")
    if isinstance(exc, aiosmtplib.SMTPException):
        return Delivery(False, f"email: {type(exc).__name__}: {exc.message}")
    if isinstance(exc, OSError):
        return Delivery(False, f"email: connection failed: {type(exc).__name__}: {exc}")
    if isinstance(exc, ValueError):  # an address or header that cannot be sent safely
        return Delivery(False, f"email: cannot send: {exc}", permanent=True)
    return Delivery(False, f"email: {type(exc).__name__}")


def _redacted(delivery: Delivery, secrets: tuple[str, ...]) -> Delivery:
    detail = redact_text(delivery.detail, secrets)
    if len(detail) > _MAX_DETAIL:
        detail = detail[:_MAX_DETAIL] + "..."
    return Delivery(
        delivery.ok,
        detail,
        retry_after=delivery.retry_after,
        permanent=delivery.permanent,
        refused=delivery.refused,
    )
