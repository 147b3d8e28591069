"""Recorded events: what happened, in one append-only, hash-chained table.

Every event is hashed with SHA-256 over its canonical JSON record and the previous event's hash,
so the table is a chain: modifying, deleting or reordering a record breaks it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

# Event types. The seed's names are kept exactly.
ALERT_RECEIVED = "alert:received"
ALERT_DUPLICATE = "alert:duplicate"
ALERT_RESOLVED = "alert:resolved"
SERVICE_REGISTERED = "service:registered"
SERVICE_DEGRADED = "service:degraded"
SERVICE_RECOVERED = "service:recovered"
CIRCUIT_OPEN = "circuit:open"
CIRCUIT_HALF_OPEN = "circuit:half-open"
CIRCUIT_CLOSED = "circuit:closed"
RECOVERY_ACTION = "recovery:action"
RECOVERY_FAILED = "recovery:failed"
RECOVERY_SKIPPED = "recovery:skipped"
RECOVERY_ESCALATED = "recovery:escalated"
RECOVERY_VERIFIED = "recovery:verified"
CONFIG_CHANGED = "config:changed"

GENESIS_HASH = "0" * 64


@dataclass(frozen=True, slots=True)
class Event:
    """One audit record. ``id``, ``prev_hash`` and ``hash`` are set by the store on append."""

    type: str
    time: float
    severity: str = "info"
    category: str = ""
    target: str = ""
    playbook: str = ""
    action: str = ""
    outcome: str = ""
    duration: float | None = None
    fingerprint: str = ""
    alertname: str = ""
    status: str = ""
    message: str = ""
    actor: str = "remediator"
    config_version: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    id: int | None = None
    prev_hash: str = ""
    hash: str = ""

    def chained(self, *, event_id: int, prev_hash: str) -> Event:
        """This event as appended after ``prev_hash`` with ``event_id``, hash filled in."""
        linked = replace(self, id=event_id, prev_hash=prev_hash, hash="")
        return replace(linked, hash=record_hash(linked))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def canonical(event: Event) -> bytes:
    """The canonical bytes of a record: sorted keys, no whitespace, without its own hash."""
    record = event.as_dict()
    record.pop("hash")
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(event: Event) -> str:
    """SHA-256 over the canonical record, which includes ``prev_hash``."""
    return hashlib.sha256(canonical(event)).hexdigest()


Handler = Callable[[Event], Awaitable[None] | None]


class EventBus:
    """In-process subscription to recorded events: ``bus.on("circuit:open", handler)``.

    Handlers run after the event is durably recorded; a failing handler is logged and never
    stops the others or the caller.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}

    def on(self, event_type: str, handler: Handler) -> None:
        """Call ``handler`` for every event of ``event_type`` (``"*"`` for all)."""
        self._handlers.setdefault(event_type, []).append(handler)

    def handlers_for(self, event_type: str) -> list[Handler]:
        return [*self._handlers.get(event_type, []), *self._handlers.get("*", [])]

    async def publish(self, events: list[Event]) -> None:
        import inspect
        import logging

        log = logging.getLogger("remediator.events")
        for event in events:
            for handler in self.handlers_for(event.type):
                try:
                    result = handler(event)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("event handler failed", extra={"event_type": event.type})
