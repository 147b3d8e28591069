"""Notification channels, built from configuration in an explicit dict."""

from __future__ import annotations

import ssl
from collections.abc import Mapping

from remediator.clock import Clock
from remediator.config import Config
from remediator.notifiers.base import Delivery, Notification, Notifier, Thread
from remediator.notifiers.email import EmailNotifier
from remediator.notifiers.slack import SlackNotifier
from remediator.notifiers.webhook import WebhookNotifier


def build_notifiers(
    config: Config, *, clock: Clock, env: Mapping[str, str] | None = None
) -> dict[str, Notifier]:
    """One notifier per configured channel (a missing secret raises ConfigError)."""
    notes = config.notifications
    built: dict[str, Notifier] = {}
    if notes.slack is not None:
        built["slack"] = SlackNotifier(notes.slack, clock=clock, env=env)
    if notes.email is not None:
        context = None
        if notes.email.ca_file:
            context = ssl.create_default_context(cafile=notes.email.ca_file)
        built["email"] = EmailNotifier(notes.email, env=env, tls_context=context)
    if notes.webhooks:
        built["webhook"] = WebhookNotifier(list(notes.webhooks), env=env)
    return built


__all__ = ["Delivery", "Notification", "Notifier", "Thread", "build_notifiers"]
