"""Notification channels, registered in an explicit tuple and built from configuration.

Each notifier class declares its channel once (:class:`~remediator.notifiers.base.NotifierClass`:
its name, configuration section and model, phases, destinations); the router
(remediator/engine/notifications.py), the configuration's channel names and the metrics loop over
:data:`NOTIFIERS`. Adding a channel is its module, listed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from remediator.clock import Clock
from remediator.notifiers.base import Delivery, Notification, Notifier, NotifierClass, Thread
from remediator.notifiers.email import EmailNotifier
from remediator.notifiers.slack import SlackNotifier
from remediator.notifiers.webhook import WebhookNotifier

NOTIFIERS: tuple[NotifierClass, ...] = (SlackNotifier, EmailNotifier, WebhookNotifier)
CHANNELS: tuple[str, ...] = tuple(kind.channel for kind in NOTIFIERS)


def section(notes: Any, kind: NotifierClass) -> Any:
    """The channel's value under ``notifications:`` (None or [] when not configured): the
    field its notifier declares as ``config_key``."""
    return getattr(notes, kind.config_key)


def configured(notes: Any) -> list[NotifierClass]:
    """The configured channels, in registry order."""
    return [kind for kind in NOTIFIERS if kind.configured(section(notes, kind))]


def build_notifiers(
    config: Any, *, clock: Clock, env: Mapping[str, str] | None = None
) -> dict[str, Notifier]:
    """One notifier per configured channel (a missing secret raises ConfigError)."""
    notes = config.notifications
    return {
        kind.channel: kind.build(section(notes, kind), clock=clock, env=env)
        for kind in configured(notes)
    }


__all__ = [
    "CHANNELS",
    "NOTIFIERS",
    "Delivery",
    "Notification",
    "Notifier",
    "NotifierClass",
    "Thread",
    "build_notifiers",
    "configured",
    "section",
]
