"""Recorded events: what happened, in one append-only, hash-chained table.

Every event is hashed with SHA-256 over its canonical JSON record and the previous event's hash,
so the table is a chain: modifying, deleting or reordering a record breaks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, fields
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
RECOVERY_SUCCEEDED = "recovery:succeeded"
RECOVERY_QUARANTINE_LIFTED = "recovery:quarantine_lifted"
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
        return chain(self, event_id=event_id, prev_hash=prev_hash)[0]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_FIELDS = tuple(f.name for f in fields(Event) if f.name != "hash")
_ALL_FIELDS = (*_FIELDS, "hash")
_SET = object.__setattr__
# The record's keys before and after "details", in the sorted order of the canonical form.
_BEFORE = tuple(sorted(name for name in _FIELDS if name < "details"))
_AFTER = tuple(sorted(name for name in _FIELDS if name > "details"))


def chain(event: Event, *, event_id: int, prev_hash: str) -> tuple[Event, str]:
    """``event`` appended after ``prev_hash`` with ``event_id`` (its hash filled in), and its
    details in canonical JSON: encoded once, for the hash and for the stored row.

    The canonical record (:func:`canonical`) is assembled from the keys before ``details``, the
    details, and the keys after it, each encoded with the canonical encoder: byte for byte the
    encoding of the whole record, whose keys are sorted."""
    details = _CANONICAL.encode(event.details)
    before = _CANONICAL.encode({name: getattr(event, name) for name in _BEFORE})
    after = {name: getattr(event, name) for name in _AFTER}
    after["id"], after["prev_hash"] = event_id, prev_hash
    text = f'{before[:-1]},"details":{details},{_CANONICAL.encode(after)[1:]}'
    linked = object.__new__(Event)  # every field is set below: no __init__ needed
    for name in _ALL_FIELDS:
        _SET(linked, name, getattr(event, name))
    _SET(linked, "id", event_id)
    _SET(linked, "prev_hash", prev_hash)
    _SET(linked, "hash", hashlib.sha256(text.encode()).hexdigest())
    return linked, details


def evolve(event: Event, **changes: Any) -> Event:
    """``dataclasses.replace`` for events, without its per-call introspection: the engine
    derives several events per alert from one base event."""
    new = object.__new__(Event)
    for name in _ALL_FIELDS:
        _SET(new, name, changes.pop(name) if name in changes else getattr(event, name))
    if changes:
        raise TypeError(f"Event has no field {sorted(changes)[0]!r}")
    return new


def canonical(event: Event) -> bytes:
    """The canonical bytes of a record: sorted keys, no whitespace, without its own hash."""
    return _encode({name: getattr(event, name) for name in _FIELDS})  # shallow: no deep copy


# One encoder, built once: json.dumps with these options would build a new one per call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _encode(record: dict[str, Any]) -> bytes:
    return _CANONICAL.encode(record).encode()


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
        self._queue: asyncio.Queue[list[Event]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Deliver fed events in order, on this event loop, until :meth:`stop`."""
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._deliver(), name="remediator-events")

    def feed_threadsafe(self, events: list[Event]) -> None:
        """Hand over committed events from any thread (the store's writer)."""
        if self._loop is not None and self._queue is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._queue.put_nowait, list(events))

    async def drain(self) -> None:
        """Wait until every event fed so far has been delivered."""
        if self._queue is not None:
            await self._queue.join()

    async def stop(self) -> None:
        if self._task is None or self._queue is None:
            return
        await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _deliver(self) -> None:
        assert self._queue is not None
        while True:
            events = await self._queue.get()
            try:
                await self.publish(events)
            finally:
                self._queue.task_done()

    def on(self, event_type: str, handler: Handler) -> None:
        """Call ``handler`` for every event of ``event_type`` (``"*"`` for all)."""
        self._handlers.setdefault(event_type, []).append(handler)

    def handlers_for(self, event_type: str) -> list[Handler]:
        return [*self._handlers.get(event_type, []), *self._handlers.get("*", [])]

    async def publish(self, events: list[Event]) -> None:
        log = logging.getLogger("remediator.events")
        for event in events:
            for handler in self.handlers_for(event.type):
                try:
                    result = handler(event)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("event handler failed", extra={"event_type": event.type})
