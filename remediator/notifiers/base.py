"""The notifier interface: one module per channel (slack, email, webhook).

A :class:`Notification` is what the durable outbox stores and hands to a notifier; the notifier
answers with a :class:`Delivery` that tells the outbox what to do next: done, retry later
(``retry_after`` seconds, e.g. Slack's 429 Retry-After), or give up (``permanent``: dead-letter
and escalate through another channel). Notifiers never raise for delivery problems, and never
put secrets (tokens, passwords) in ``detail``. Destinations come only from configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from remediator.audit.events import Event
from remediator.clock import Clock

Channel = str  # a notifier's ``channel`` name (remediator/notifiers/__init__.py lists them)
# The incident's state, as it moves: firing -> remediating -> recovered | failed | escalated;
# with an approval, awaiting (the request) -> decided before remediating.
Phase = Literal[
    "firing", "remediating", "recovered", "failed", "escalated", "info", "awaiting", "decided"
]


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to deliver. ``incident`` groups the messages of one alert episode (Slack
    updates one message per incident and threads details under it)."""

    id: int
    channel: Channel
    destination: str  # Slack channel, email recipients joined by ",", or webhook name
    incident: str  # e.g. "<fingerprint>:<episode>"; stable across the incident's updates
    phase: Phase
    title: str
    fields: dict[str, str] = field(default_factory=dict)  # alert, target, action, outcome, ...
    severity: str = "info"
    links: dict[str, str] = field(default_factory=dict)  # "generator", "runbook" -> URL
    detail: str = ""  # a thread reply / extra text
    data: dict[str, Any] = field(default_factory=dict)  # the full event, for webhooks


@dataclass(frozen=True, slots=True)
class Thread:
    """Where an incident's first message landed (Slack channel id and ts)."""

    channel: str
    ts: str


@dataclass(frozen=True, slots=True)
class Delivery:
    ok: bool
    detail: str = ""
    retry_after: float | None = None  # seconds; set when the provider asked to wait
    permanent: bool = False  # True: retrying cannot help (e.g. SMTP 5xx, Slack channel_not_found)
    thread: Thread | None = None  # set by Slack on the first message of an incident
    refused: tuple[str, ...] = ()  # recipients an SMTP server refused while accepting others


class ChannelConfig(BaseModel):
    """The base of a channel's section under ``notifications:`` in the configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Notifier(Protocol):
    channel: ClassVar[Channel]

    async def send(self, note: Notification, *, thread: Thread | None = None) -> Delivery:
        """Deliver one notification. ``thread`` is the incident's first Slack message, if any:
        then the notifier updates that message and posts ``detail`` as a thread reply."""
        ...

    async def aclose(self) -> None: ...

    async def find_thread(self, store: Any, *, incident: str, destination: str) -> Thread | None:
        """The incident's first message on ``destination``, kept in ``store`` (None: none)."""
        ...

    async def keep_thread(
        self, store: Any, *, incident: str, destination: str, thread: Thread
    ) -> None:
        """Keep where the incident's first message landed (:meth:`find_thread` reads it)."""
        ...


class NotifierClass(Protocol):
    """A channel declares itself once, on its notifier class: its ``channel`` name, its section
    under ``notifications:`` (``config_key``, parsed by ``config_model``, described by
    ``summary``), the event types it
    follows and their phases (``phases``), and its destinations for an event."""

    # (Plain attributes: the registry holds the classes themselves.)
    channel: Channel
    config_key: str
    config_model: type[ChannelConfig]
    summary: str  # what the section is, for docs/configuration.md
    phases: Mapping[str, Phase]

    @staticmethod
    def configured(section: Any) -> bool:
        """Whether the channel is configured (``section`` is its value in the configuration)."""
        ...

    @staticmethod
    def destinations(section: Any, event: Event) -> list[str]:
        """Where ``event`` goes on this channel (from configuration only)."""
        ...

    @staticmethod
    def names(section: Any) -> list[str]:
        """The channel's configured notifiers, by name (the API's health answer lists them)."""
        ...

    @classmethod
    def build(cls, section: Any, *, clock: Clock, env: Mapping[str, str] | None) -> Notifier:
        """The notifier for ``section`` (a missing secret raises ConfigError)."""
        ...


class Unthreaded:
    """For a channel without threads: every message stands alone."""

    async def find_thread(self, store: Any, *, incident: str, destination: str) -> Thread | None:
        return None

    async def keep_thread(
        self, store: Any, *, incident: str, destination: str, thread: Thread
    ) -> None:
        return None
