"""Outgoing webhooks signed the Standard Webhooks way, verified by the ``standardwebhooks``
package (what a receiver would use) on what a real HTTP server on 127.0.0.1 received."""

from __future__ import annotations

import asyncio
import base64
import secrets

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from remediator.config.model import WebhookConfig, parse
from remediator.errors import ConfigError
from remediator.notifiers.base import Delivery, Notification
from remediator.notifiers.webhook import WebhookNotifier, verify_signature
from remediator.redaction import configured_secrets
from tests.test_notifier_webhook import Seen, Server, note, server

__all__ = ["server"]  # the fixture

STANDARD = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
STANDARD_ENV = "REMEDIATOR_TEST_STANDARD_SECRET"
LEGACY = "legacy-secret-0123456789"
LEGACY_ENV = "REMEDIATOR_TEST_LEGACY_SECRET"


def _send(
    server: Server, n: Notification, *, legacy: bool, env: dict[str, str] | None = None
) -> Delivery:
    config = WebhookConfig(
        name="signed",
        url=server.url("/std"),
        secret_env=LEGACY_ENV if legacy else None,
        standard_webhooks_secret_env=STANDARD_ENV,
    )

    async def main() -> Delivery:
        notifier = WebhookNotifier(
            [config], env=env if env is not None else {STANDARD_ENV: STANDARD, LEGACY_ENV: LEGACY}
        )
        try:
            return await notifier.send(n)
        finally:
            await notifier.aclose()

    return asyncio.run(main())


def _received(server: Server) -> Seen:
    [seen] = server.seen
    return seen


def test_a_receiver_verifies_the_request_with_the_standard_webhooks_library(
    server: Server,
) -> None:
    assert _send(server, note(), legacy=True).ok
    seen = _received(server)
    headers = {k.lower(): v for k, v in seen.headers.items()}
    payload = Webhook(STANDARD).verify(seen.body, headers)
    assert payload["id"] == 42 and payload["phase"] == "recovered"
    assert headers["webhook-id"] == "42" == headers["x-remediator-event-id"]
    assert headers["webhook-timestamp"] == headers["x-remediator-timestamp"]
    # today's signature still comes along, and still verifies
    assert verify_signature(
        LEGACY,
        headers["x-remediator-timestamp"],
        seen.body,
        headers["x-remediator-signature"],
    )


def test_a_changed_body_id_or_key_fails_verification(server: Server) -> None:
    assert _send(server, note(), legacy=False).ok
    seen = _received(server)
    headers = {k.lower(): v for k, v in seen.headers.items()}
    assert "x-remediator-signature" not in headers  # only the standard signature was asked for
    with pytest.raises(WebhookVerificationError):
        Webhook(STANDARD).verify(seen.body.replace(b"recovered", b"failed"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(STANDARD).verify(seen.body, {**headers, "webhook-id": "43"})
    other = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(seen.body, headers)


def test_a_retry_carries_the_same_webhook_id(server: Server) -> None:
    assert _send(server, note(), legacy=False).ok
    assert _send(server, note(), legacy=False).ok
    ids = [s.headers["webhook-id"] for s in server.seen]
    assert ids == ["42", "42"]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (None, f"{STANDARD_ENV} is not set"),
        ("whsec_not base64!", "not a Standard Webhooks secret"),
        ("whsec_" + base64.b64encode(b"short").decode(), "at least 16 bytes"),
    ],
)
def test_a_missing_or_malformed_secret_is_a_config_error(
    server: Server, value: str | None, problem: str
) -> None:
    env = {} if value is None else {STANDARD_ENV: value}
    with pytest.raises(ConfigError) as bad:
        _send(server, note(), legacy=False, env=env)
    [line] = bad.value.problems
    assert line.startswith("notifications.webhooks[0].standard_webhooks_secret_env: ")
    assert problem in line
    assert value is None or value not in line  # the secret itself is never echoed
    assert server.seen == []


def test_the_standard_secret_is_one_of_the_secrets_redacted() -> None:
    cfg = parse(
        {
            "notifications": {
                "webhooks": [
                    {
                        "name": "w",
                        "url": "http://127.0.0.1:1/h",
                        "standard_webhooks_secret_env": STANDARD_ENV,
                    }
                ]
            }
        },
        {},
    )
    assert STANDARD in configured_secrets(cfg, (), {STANDARD_ENV: STANDARD})
