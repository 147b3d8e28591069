"""Outgoing webhooks: each notification POSTed as JSON to a configured URL.

The request
-----------
``POST <url>`` with the body ``{"id", "incident", "phase", "title", "severity", "fields",
"links", "detail", "data"}`` serialized deterministically (``sort_keys``, separators ``,`` and
``:``, UTF-8) and the headers:

* ``Content-Type: application/json``
* ``X-Remediator-Event-Id: <notification id>``: the same on every retry; receivers should use
  it to drop duplicates (delivery is at-least-once).
* ``X-Remediator-Timestamp: <unix seconds>``: when this attempt was signed.
* ``X-Remediator-Signature: sha256=<hex>``: only when the webhook has ``secret_env``.
* ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``: only when the webhook has
  ``standard_webhooks_secret_env``, the Standard Webhooks headers (below).

Signature scheme
----------------
``hex(HMAC-SHA256(key=<secret, UTF-8>, msg=<timestamp> + "." + <raw body bytes>))``, where
``<timestamp>`` is the ``X-Remediator-Timestamp`` header value exactly as sent. A receiver
recomputes it over the raw body it received (before any JSON parsing), compares in constant
time, and should reject timestamps too far from its own clock to stop replays;
:func:`verify_signature` does both.

Standard Webhooks (https://www.standardwebhooks.com): the secret is ``whsec_`` and the base64
of the key; ``webhook-id`` is the notification id (the same on every retry),
``webhook-timestamp`` the ``X-Remediator-Timestamp`` value, and ``webhook-signature`` is
``v1,`` and ``base64(HMAC-SHA256(key, <id> + "." + <timestamp> + "." + <raw body>))``, so a
receiver verifies with any Standard Webhooks library (e.g. ``standardwebhooks.Webhook``).

Outcomes
--------
Redirects are never followed (a 3xx is a configuration problem: permanent). 2xx: ok. 429 and
503 with ``Retry-After``: retry after that many seconds. Other 5xx, 408, 429, connection
errors and timeouts: retryable. Other 4xx and an unknown webhook name: permanent. A missing
secret is a :class:`~remediator.errors.ConfigError` when the notifier is built.
The URL (which may embed a token) and the secret never appear in ``detail``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import httpx2

from remediator.audit.events import Event
from remediator.clock import Clock
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


class WebhookConfig(ChannelConfig):
    DESTINATION: ClassVar[tuple[str, ...]] = ("url",)
    name: str
    url: str
    secret_env: str | None = None
    standard_webhooks_secret_env: str | None = None


SIGNATURE_PREFIX = "sha256="
STANDARD_SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
STANDARD_MIN_KEY_BYTES = 16
MAX_RETRY_AFTER = 24 * 3600.0
DEFAULT_TIMEOUT = 10.0


def payload(note: Notification) -> dict[str, Any]:
    return {
        "id": note.id,
        "incident": note.incident,
        "phase": note.phase,
        "title": note.title,
        "severity": note.severity,
        "fields": note.fields,
        "links": note.links,
        "detail": note.detail,
        "data": note.data,
    }


def encode_body(note: Notification) -> bytes:
    """The request body: deterministic JSON (sorted keys, compact, UTF-8)."""
    text = json.dumps(
        payload(note),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=str,
    )
    return text.encode("utf-8")


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Remediator-Signature`` value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(_key(secret), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return SIGNATURE_PREFIX + digest.hexdigest()


def verify_signature(
    secret: str | bytes,
    timestamp: str,
    body: bytes,
    header: str,
    *,
    max_age: float | None = None,
    now: float | None = None,
) -> bool:
    """Whether ``header`` (``X-Remediator-Signature``) signs ``body`` at ``timestamp`` with
    ``secret``; with ``max_age``, also whether ``timestamp`` is within that many seconds of
    ``now`` (default: the current time)."""
    if not header.startswith(SIGNATURE_PREFIX) or not timestamp.isascii():
        return False
    if max_age is not None:
        try:
            sent = int(timestamp)
        except ValueError:
            return False
        if abs((time.time() if now is None else now) - sent) > max_age:
            return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


def standard_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret (``whsec_`` + base64 of at least 16 bytes);
    ValueError if it is not one."""
    try:
        key = base64.b64decode(secret.removeprefix(STANDARD_SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) < STANDARD_MIN_KEY_BYTES:
        raise ValueError(
            f"not a Standard Webhooks secret ({STANDARD_SECRET_PREFIX} and the base64 of "
            f"at least {STANDARD_MIN_KEY_BYTES} bytes)"
        )
    return key


def standard_signature(key: bytes, *, msg_id: str, timestamp: str, body: bytes) -> str:
    """The ``webhook-signature`` value of ``body`` (Standard Webhooks, version 1)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), if valid."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def classify(name: str, status: int, headers: Mapping[str, str]) -> Delivery:
    """What an HTTP status means for the outbox."""
    where = f"webhook {name}: HTTP {status}"
    if 200 <= status < 300:
        return Delivery(True, where)
    if status in (429, 503):
        wait = retry_after(headers.get("retry-after"))
        if wait is not None:
            return Delivery(False, f"{where}; retry after {wait:g}s", retry_after=wait)
        return Delivery(False, where)
    if status >= 500 or status == 408:
        return Delivery(False, where)
    if 300 <= status < 400:
        return Delivery(False, f"{where} (redirects are not followed)", permanent=True)
    return Delivery(False, where, permanent=True)


class WebhookNotifier(Unthreaded):
    channel: ClassVar[Channel] = "webhook"
    config_key: ClassVar[str] = "webhooks"  # notifications.webhooks, a list
    summary: ClassVar[str] = (
        "Outgoing webhooks: every notification POSTed as JSON, optionally signed."
    )
    config_model: ClassVar[type[ChannelConfig]] = WebhookConfig
    # Every step of a remediation.
    phases: ClassVar[Mapping[str, Phase]] = {
        "recovery:started": "remediating",
        "recovery:action": "remediating",
        "recovery:succeeded": "recovered",
        "recovery:failed": "failed",
        "service:recovered": "recovered",
        "audit:signed_checkpoint": "info",  # exported outside the store (only with a signing key)
    }

    @staticmethod
    def configured(section: list[WebhookConfig]) -> bool:
        return bool(section)

    @staticmethod
    def destinations(section: list[WebhookConfig], event: Event) -> list[str]:
        return [hook.name for hook in section]

    @staticmethod
    def names(section: list[WebhookConfig]) -> list[str]:
        return [hook.name for hook in section]

    @classmethod
    def build(
        cls, section: list[WebhookConfig], *, clock: Clock, env: Mapping[str, str] | None
    ) -> WebhookNotifier:
        return cls(list(section), env=env)

    def __init__(
        self,
        configs: list[WebhookConfig],
        *,
        client: httpx2.AsyncClient | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        environ = os.environ if env is None else env
        self._configs = {c.name: c for c in configs}
        self._secrets: dict[str, str] = {}
        problems: list[str] = []
        for i, config in enumerate(configs):
            if config.secret_env is None:
                continue
            secret = environ.get(config.secret_env)
            if secret:
                self._secrets[config.name] = secret
            else:
                where = f"notifications.webhooks[{i}].secret_env"
                problems.append(f"{where}: {config.secret_env} is not set")
        self._standard: dict[str, bytes] = {}
        for i, config in enumerate(configs):
            if config.standard_webhooks_secret_env is None:
                continue
            where = f"notifications.webhooks[{i}].standard_webhooks_secret_env"
            value = environ.get(config.standard_webhooks_secret_env)
            if not value:
                problems.append(f"{where}: {config.standard_webhooks_secret_env} is not set")
                continue
            try:
                self._standard[config.name] = standard_key(value)
            except ValueError as exc:
                problems.append(f"{where}: {config.standard_webhooks_secret_env}: {exc}")
        if problems:
            raise ConfigError(problems)
        self._own_client = client is None
        self._client = client or httpx2.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            timeout=httpx2.Timeout(DEFAULT_TIMEOUT),
        )

    async def send(self, note: Notification, *, thread: Thread | None = None) -> Delivery:
        name = note.destination
        config = self._configs.get(name)
        if config is None:
            return Delivery(False, f"webhook {name!r} is not configured", permanent=True)
        secret = self._secrets.get(name)
        try:
            body = encode_body(note)
        except (TypeError, ValueError) as exc:
            return Delivery(False, f"webhook {name}: cannot encode: {exc}", permanent=True)
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Remediator-Event-Id": str(note.id),
            "X-Remediator-Timestamp": timestamp,
        }
        if secret:
            headers["X-Remediator-Signature"] = sign(secret, timestamp, body)
        standard = self._standard.get(name)
        if standard is not None:
            msg_id = str(note.id)
            headers["webhook-id"] = msg_id
            headers["webhook-timestamp"] = timestamp
            headers["webhook-signature"] = standard_signature(
                standard, msg_id=msg_id, timestamp=timestamp, body=body
            )
        try:
            async with self._client.stream(
                "POST", config.url, content=body, headers=headers, follow_redirects=False
            ) as response:
                return classify(name, response.status_code, response.headers)
        except Exception as exc:  # never raise out of a notifier
            return _failure(name, exc, tuple(s for s in (config.url, secret) if s))

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()


def _failure(name: str, exc: Exception, secrets: tuple[str, ...]) -> Delivery:
    text = redact_text(str(exc), secrets)[:200]
    error = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if isinstance(exc, httpx2.TimeoutException | TimeoutError):
        return Delivery(False, f"webhook {name}: timed out ({type(exc).__name__})")
    if isinstance(exc, httpx2.InvalidURL | httpx2.UnsupportedProtocol):
        return Delivery(False, f"webhook {name}: bad URL: {error}", permanent=True)
    return Delivery(False, f"webhook {name}: {error}")  # connection errors and the rest: retry
