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
ALERT_POISONED = "alert:poisoned"
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
PATTERN_DROPPED = "pattern:dropped"

GENESIS_HASH = "0" * 64

# The other event types (named as constants together with the table below).
HEALTH_HIGH_MEMORY = "health:high_memory"
HEALTH_HIGH_CPU = "health:high_cpu"
HEALTH_HIGH_DISK = "health:high_disk"
HEALTH_SLOW_RESPONSE = "health:slow_response"
HEALTH_HIGH_ERRORS = "health:high_errors"
RECOVERY_STARTED = "recovery:started"
RECOVERY_TRIGGERED = "recovery:triggered"
RECOVERY_DRY_RUN = "recovery:dry_run"
APPROVAL_REQUESTED = "recovery:approval_requested"
APPROVAL_APPROVED = "recovery:approved"
APPROVAL_DENIED = "recovery:denied"
APPROVAL_EXPIRED = "recovery:approval_expired"
APPROVAL_CANCELLED = "recovery:approval_cancelled"
RECOVERY_QUARANTINED = "recovery:quarantined"
RECOVERY_PROGRESS = "recovery:progress"
RECOVERY_PAUSED = "recovery:paused"
RECOVERY_RESUMED = "recovery:resumed"
NOTIFICATION_SENT = "notification:sent"
NOTIFICATION_DEAD = "notification:dead"
AUDIT_CHECKPOINT = "audit:checkpoint"
SILENCE_CREATED = "recovery:silence_created"
SILENCE_EXPIRED = "recovery:silence_expired"
AUDIT_SIGNED_CHECKPOINT = "audit:signed_checkpoint"

# Every event type, in the order of docs/playbooks.md#events (rendered from here by
# ``python -m remediator.audit.eventdoc``): type -> (when it is recorded, its outcome and notable fields).
# A new type gets a row here; tests/test_event_types.py fails on a type the code emits without one.
# fmt: off
EVENT_TYPES: dict[str, tuple[str, str]] = {
    ALERT_RECEIVED: ("intake stored a new firing alert; chained by the worker's claim, before the alert is handed out (`time`: when it was stored)", "`actor: alertmanager:<receiver>`, `details.episode`"),
    ALERT_RESOLVED: ("intake stored a new resolved alert; chained like `alert:received`", "`actor: alertmanager:<receiver>`, `details.episode`"),
    ALERT_POISONED: ("the worker quarantined a stored alert claimed `worker.max_attempts` times without being done (its processing failed, overran its lease or was killed each time); never claimed again, listed by `GET /api/v1/recovery/alerts/poisoned`", "`details.inbox`, `details.attempts`, `details.episode`"),
    ALERT_DUPLICATE: ("intake got an alert it already had in that state (re-send, HA peer); at most once per `audit.duplicate_interval`", "`details.repeats`"),
    SERVICE_REGISTERED: ("start-up found a target it had not seen before", "`target`"),
    PATTERN_DROPPED: ("start-up or SIGHUP loaded a file that defines the id of a pattern added through the API: the file's wins, the API one is deleted", "`dropped`, `actor: startup` or `sighup`, `details.pattern`: the dropped pattern"),
    HEALTH_HIGH_MEMORY: ("a firing alert of category `memory` is processed", "`message`: the alert name"),
    HEALTH_HIGH_CPU: ("a firing alert of category `cpu` is processed", "`message`: the alert name"),
    HEALTH_HIGH_DISK: ("a firing alert of category `disk` is processed", "`message`: the alert name"),
    HEALTH_SLOW_RESPONSE: ("a firing alert of category `latency` is processed", "`message`: the alert name"),
    HEALTH_HIGH_ERRORS: ("a firing alert of category `api` is processed", "`message`: the alert name"),
    RECOVERY_STARTED: ("a remediation was claimed and is about to run", "`playbook`, `target`"),
    APPROVAL_REQUESTED: ("the guards passed for a playbook with `approval:`, or an alert's run reached a step with `approval:` (the steps before it done): its remediation waits (`awaiting_approval`)", "`awaiting_approval`; `details.approval` (its id), `details.expires_at`, `details.on_expiry`; for a step, `action` and `details.step` (its index)"),
    APPROVAL_APPROVED: ("an approver approved (Slack, API, CLI) and the guards, checked again, passed: the run starts (a step's approval: at that step)", "`approved`; `actor`: the approver, `details.channel`, `details.waited`, `details.reason`; for a step, `details.step` and `details.action`"),
    APPROVAL_DENIED: ("an approver denied, or a guard blocked the run at decision time (then with its `recovery:skipped`)", "`denied` or `skipped`; `actor`, `details.channel`, `details.waited`, `details.reason`; for a step, `details.step` and `details.action`"),
    APPROVAL_EXPIRED: ("an approval's `ttl` passed undecided: nothing runs (`on_expiry: escalate` adds a `recovery:escalated`)", "`expired`; `details.waited`, `details.on_expiry`; for a step, `details.step` and `details.action`"),
    APPROVAL_CANCELLED: ("the alert resolved while its approval was open: nothing (more) runs", "`cancelled`; `details.waited`; for a step, `details.step` and `details.action`"),
    RECOVERY_TRIGGERED: ("a manual run (`POST /trigger`) was admitted", "`started` or `dry_run`; `actor`: the caller, `details.bypassed`"),
    RECOVERY_PROGRESS: ("a running step reported progress (not in a dry run): each task result of an `ansible.playbook`, recorded as it happens, before the step's `recovery:action`; at most 200 per step", "the task's status (`ok`, `changed`, `failed`, `unreachable`, `skipped`); `action`, `message`, `details.task`, `details.host`, `details.status`, `details.changed`"),
    RECOVERY_ACTION: ("one step ran (once per step per attempt)", "`success`, `failure`, `dry_run`, or `already_done` (a taken-over remediation found the step already taken); `action`, `duration`, `message` (the detail), `details.data`"),
    RECOVERY_VERIFIED: ("a `verify.health` or `verify.prometheus` step passed (not in a dry run), after its `recovery:action`", "`verified`; `action`, `message`: what held"),
    RECOVERY_QUARANTINED: ("a `quarantine` step quarantined the target", "`success`"),
    SILENCE_CREATED: ("an Alertmanager silence was made for an alert remediator handles (a playbook with `silence:`): its remediation runs or awaits approval, or its target is quarantined", "`created`; `playbook`, `target`, `details.silence` (Alertmanager's id), `details.reason` (`remediation` or `quarantine`), `details.matchers` (the label names), `details.ends_at`"),
    SILENCE_EXPIRED: ("remediator expired a silence it made: the remediation ended, the episode resolved, the quarantine was lifted, or (`details.reason: stale`) no stored reason names it any more", "`expired`; `details.silence`, `details.reason` (`ended` or `stale`)"),
    RECOVERY_QUARANTINE_LIFTED: ("an operator lifted a quarantine (API or CLI)", "`lifted`; `actor`, `details.reason`, `details.quarantine_reason`"),
    RECOVERY_SUCCEEDED: ("an attempt ran every step successfully", "`success`; `duration`, `message`: the attempt"),
    RECOVERY_DRY_RUN: ("a dry run finished: its steps only said what they would do", "`dry_run`"),
    RECOVERY_FAILED: ("every attempt failed, or a restart interrupted a run", "`failure` or `interrupted`"),
    RECOVERY_SKIPPED: ("nothing ran, or a retry stopped", "the reason (see [Safety guards](#safety-guards))"),
    RECOVERY_ESCALATED: ("a human must look", "the reason: `unknown_pattern`, `target_not_registered`, `target_not_allowed`, `quarantined`, `blast_radius`, `max_per_window`, `circuit_open`, `remediation_failed`, `no_recovery`, `notification_dead`, or an `escalate` step's `reason`; `severity`: the alert's (`high` for `no_recovery` and `notification_dead`)"),
    RECOVERY_PAUSED: ("the kill switch was set (`POST /pause`)", "`paused`; `actor`: the caller, `details.reason`, `details.changed`"),
    RECOVERY_RESUMED: ("the kill switch was cleared (`POST /resume`)", "`resumed`; `actor`: the caller, `details.reason`, `details.changed`"),
    CIRCUIT_OPEN: ("a breaker opened", "`open`. `actor: health` for probes"),
    CIRCUIT_HALF_OPEN: ("a breaker let trials through after `reset_timeout`", "`half-open`. `actor: health` for probes"),
    CIRCUIT_CLOSED: ("a breaker closed (a success, a healthy probe, or `POST /circuit-breakers/{service}/reset`)", "`closed`. `actor: health` for probes"),
    SERVICE_DEGRADED: ("a target's first health check failed, or one failed after passing (`actor: health`)", "`down`, `message`: the check's detail"),
    SERVICE_RECOVERED: ("a health check passed after failing (`actor: health`), or an alert resolved", "`up`, `message`: the check's detail; or `recovered`, `duration`: the time to recovery (also in `remediator_time_to_recovery_seconds`)"),
    NOTIFICATION_SENT: ("the outbox delivered a notification", "`sent` or `partial`; `action`: the channel, `details.phase`"),
    NOTIFICATION_DEAD: ("the outbox gave up on a notification (with a `recovery:escalated`)", "`dead`; `action`: the channel"),
    CONFIG_CHANGED: ("a new configuration version was applied (API, SIGHUP, or a changed file at start-up)", "`applied`; `actor`, `config_version`, `details.diff`"),
    AUDIT_CHECKPOINT: ("retention pruned old events; the chain verifies from here on", "`actor: retention`, `details.through_id`, `details.hash`"),
    AUDIT_SIGNED_CHECKPOINT: ("with `audit.signing_key_file` set: every `audit.checkpoint_every` events, or after `audit.checkpoint_interval` if a record other than a checkpoint or a notification's delivery was appended, at start-up and at shutdown, the chain's head was signed (also exported: a log line, metrics, webhooks)", "`actor: checkpoint`; `details.seq` (the head's id), `details.hash`, `details.digest`, `details.signed_at`, `details.signature` (Ed25519, base64), `details.key_id`, `details.reason`"),
}
# fmt: on


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
    details = _canonical_text(event.details)
    before = _canonical_text({name: getattr(event, name) for name in _BEFORE})
    after = {name: getattr(event, name) for name in _AFTER}
    after["id"], after["prev_hash"] = event_id, prev_hash
    text = f'{before[:-1]},"details":{details},{_canonical_text(after)[1:]}'
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


def _one_shot(encoder: json.JSONEncoder) -> Callable[[Any], str]:
    """``encoder.encode``, byte for byte, without the C encoder it builds on every call (about
    half the cost of encoding a record's small dicts, three of which each event hashes). The C
    encoder is built once, without the circular-reference check's shared state (a record is
    plain data, never circular: a cycle would raise RecursionError instead of ValueError);
    without the C accelerator, ``encoder.encode`` itself."""
    make = getattr(json.encoder, "c_make_encoder", None)  # not in the typeshed stubs
    if make is None or encoder.indent is not None:  # pragma: no cover - CPython has it
        return encoder.encode
    text = json.encoder.encode_basestring_ascii if encoder.ensure_ascii else json.encoder.encode_basestring  # fmt: skip
    iterencode = make(
        None, encoder.default, text, None, encoder.key_separator, encoder.item_separator,
        encoder.sort_keys, encoder.skipkeys, encoder.allow_nan,
    )  # fmt: skip

    def encode(value: Any) -> str:
        if isinstance(value, str):
            return text(value)
        return "".join(iterencode(value, 0))

    return encode


_canonical_text = _one_shot(_CANONICAL)


def _encode(record: dict[str, Any]) -> bytes:
    return _canonical_text(record).encode()


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
