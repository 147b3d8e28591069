"""Records of the engine's state, shared by every store backend.

Backend-neutral rows: records to table rows and back, and the recording policy's steps.

Every backend appends events the same way (see remediator/audit/recording.py):

1. :func:`link` — redact each event, then chain it (ids ``last_id + 1 ...``, SHA-256 hashes);
2. :func:`event_row` — the stored row, with free text sealed (message, details, and with a
   key the alertname and actor too: attacker-supplied text, never filtered on);
3. :func:`outbox_rows` — the notifications the events cause, for the outbox in the same commit.

The backend only supplies the head of the chain (under its own lock) and runs the inserts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol, TypeVar

from remediator.alerts import Episode
from remediator.audit.events import Event, chain
from remediator.audit.recording import Recording

R = TypeVar("R")


class ResetTimeout(Protocol):
    """What :meth:`BreakerState.next_half_open` needs of the breaker settings."""

    @property
    def reset_timeout(self) -> float: ...


State = Literal["closed", "half-open", "open"]


@dataclass(frozen=True, slots=True)
class BreakerState:
    """One target's circuit breaker row (its state machine is remediator/engine/guards.py)."""

    target: str
    state: State = "closed"
    failures: int = 0
    opened_at: float | None = None
    trials: int = 0  # trials admitted and not yet reported, while half-open

    def next_half_open(self, settings: ResetTimeout) -> float | None:
        if self.state != "open" or self.opened_at is None:
            return None
        return self.opened_at + settings.reset_timeout


# A change of one breaker's row, computed by the domain: from the state read, the state to
# save, a result, and the events to append with it (in the same transaction).
Change = Callable[[BreakerState], tuple[BreakerState, R, list[Event]]]

# Remediation states. RUNNING becomes one of the others; INTERRUPTED marks a run cut by a crash.
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
INTERRUPTED = "interrupted"
BLOCKED = "blocked"
DRY_RUN = "dry_run"
COUNTED = (RUNNING, SUCCEEDED, FAILED, INTERRUPTED)  # the states that count toward windows


@dataclass(frozen=True, slots=True)
class Remediation:
    id: int
    playbook: str
    fingerprint: str
    episode_id: int
    target: str
    state: str
    reason: str
    started_at: float
    finished_at: float | None
    attempts: int


@dataclass(frozen=True, slots=True)
class TargetState:
    target: str
    registered_at: float | None = None
    quarantined_at: float | None = None
    quarantine_reason: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def quarantined(self) -> bool:
        return self.quarantined_at is not None


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One stored notification, claimed for delivery."""

    id: int
    event_id: int
    channel: str
    destination: str
    incident: str
    phase: str
    payload: dict[str, Any]
    attempts: int
    batch_key: str | None = None  # delivered in a batch with the pending rows of the same key


@dataclass(frozen=True, slots=True)
class GuardSnapshot:
    """Everything the guards (remediator/engine/guards.py) decide on, read at once by
    ``Store.guard_snapshot``: one read, one consistent view of the store."""

    episode: Episode | None  # None: no episode asked for, or it does not exist
    flag: str | None  # the value of the flag asked for (the kill switch), None if unset
    target: TargetState
    alerting: int | None  # how many of the peers have an open episode; None: not asked
    last_started: float | None  # the playbook's last counted start on the target
    count_started: int | None  # counted starts on the target since ``since``; None: not asked
    breaker: BreakerState


def guard_snapshot_from_row(row: Sequence[Any], *, target: str) -> GuardSnapshot:
    """The snapshot of one row laid out as both backends select it: the episode (4 columns),
    the flag, the target state (4), the breaker (4), last started, count started, alerting."""
    episode = Episode(*row[0:4]) if row[0] is not None else None
    state = TargetState(
        target, row[5], row[6], row[7], json.loads(row[8]) if row[8] is not None else {}
    )
    breaker = (
        BreakerState(target, row[9], row[10], row[11], row[12])
        if row[9] is not None
        else BreakerState(target=target)
    )
    return GuardSnapshot(
        episode=episode,
        flag=None if row[4] is None else str(row[4]),
        target=state,
        alerting=None if row[15] is None else int(row[15]),
        last_started=None if row[13] is None else float(row[13]),
        count_started=None if row[14] is None else int(row[14]),
        breaker=breaker,
    )


@dataclass(frozen=True, slots=True)
class StepIntent:
    """A state-changing step a remediation's owner was about to take: recorded before the call,
    so that a replica taking the remediation over can tell whether it already took effect."""

    remediation_id: int
    step: int  # the step's index in the playbook
    action: str
    target: str
    owner: str
    began_at: float
    probe: dict[str, Any] = field(default_factory=dict)  # the target as seen before the call


EVENT_COLUMNS = (
    "id, time, type, severity, category, target, playbook, action, outcome, duration, "
    "fingerprint, alertname, status, message, actor, config_version, details, prev_hash, hash"
)
INBOX_COLUMNS = (
    "id, fingerprint, episode_id, status, alertname, labels, annotations, starts_at, ends_at, "
    "generator_url, received_at, priority, attempts, trace_context"
)
REMEDIATION_COLUMNS = (
    "id, playbook, fingerprint, episode_id, target, state, reason, started_at, finished_at, "
    "attempts"
)
OUTBOX_COLUMNS = (
    "event_id, channel, destination, incident, phase, payload, dedupe_key, next_attempt_at, "
    "created_at, batch_key"
)


def events_sql(query: EventQuery, mark: str) -> tuple[str, list[Any]]:
    """The SELECT of :data:`EVENT_COLUMNS` for ``query`` (newest first) and its parameters,
    with the backend's placeholder ``mark`` (``?`` or ``%s``)."""
    clauses: list[str] = []
    params: list[Any] = []
    filters: tuple[tuple[str, object], ...] = (
        ("type =", query.type),
        ("target =", query.target),
        ("severity =", query.severity),
        ("fingerprint =", query.fingerprint),
        ("time >=", query.since),
        ("time <=", query.until),
        ("id <", query.before_id),
        ("playbook =", query.playbook),
        ("outcome =", query.outcome),
    )
    for condition, value in filters:
        if value is not None:
            clauses.append(f"{condition} {mark}")
            params.append(value)
    where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
    sql = f"SELECT {EVENT_COLUMNS} FROM events {where}ORDER BY id DESC LIMIT {mark}"  # noqa: S608
    return sql, [*params, query.limit]


def unrecovered_sql(mark: str) -> str:
    """The SELECT of :data:`REMEDIATION_COLUMNS` of finished (succeeded or failed) remediations
    whose episode is still open, by id, with the backend's placeholder ``mark``; parameters:
    finished at or before, id after, limit. Only index look-ups: the open episodes
    (``episodes_open`` / ``episodes_open_target``), then each one's target's remediations (``remediations_target``;
    a remediation marks its episode as about its target when it starts). Planners without
    statistics would rather read ``remediations_state`` (every finished remediation ever):
    ``CROSS JOIN`` fixes SQLite's order, and ``state || ''`` and ``episode_id + 0`` take that
    index and ``remediations_episode`` (retention's) out of the choices."""
    columns = ", ".join(f"r.{name.strip()}" for name in REMEDIATION_COLUMNS.split(","))
    return (
        f"SELECT {columns} FROM episodes AS e CROSS JOIN remediations AS r "  # noqa: S608
        "WHERE e.resolved_at IS NULL AND r.target = e.target AND r.episode_id + 0 = e.id "
        f"AND r.state || '' IN ('{SUCCEEDED}', '{FAILED}') "
        f"AND r.finished_at <= {mark} AND r.id > {mark} ORDER BY r.id LIMIT {mark}"
    )


def link(events: list[Event], recording: Recording, last_id: int, prev_hash: str) -> list[Event]:
    """The events redacted and chained after the head (``last_id``, ``prev_hash``)."""
    return link_rows(events, recording, last_id, prev_hash)[0]


def link_rows(
    events: list[Event], recording: Recording, last_id: int, prev_hash: str
) -> tuple[list[Event], list[tuple[Any, ...]]]:
    """The events redacted and chained after the head, and their stored rows
    (:data:`EVENT_COLUMNS`, free text sealed): the details are encoded once for both."""
    out: list[Event] = []
    rows: list[tuple[Any, ...]] = []
    prev = prev_hash
    for event in events:
        last_id += 1
        linked, details = chain(recording.redact(event), event_id=last_id, prev_hash=prev)
        out.append(linked)
        rows.append(event_row(linked, recording, details))
        prev = linked.hash
    return out, rows


def outbox_rows(events: list[Event], recording: Recording) -> list[tuple[Any, ...]]:
    """The outbox rows (:data:`OUTBOX_COLUMNS`) that the recording's router gives the events."""
    if recording.route is None:
        return []
    rows: list[tuple[Any, ...]] = []
    for event in events:
        for note in recording.route(event):
            payload = recording.seal_json(json.dumps(note.payload, sort_keys=True))
            rows.append(
                (
                    event.id,
                    note.channel,
                    note.destination,
                    note.incident,
                    note.phase,
                    payload,
                    note.dedupe_key,
                    event.time if note.not_before is None else note.not_before,
                    event.time,
                    note.batch_key,
                )
            )
    return rows


def event_row(e: Event, recording: Recording, details: str | None = None) -> tuple[Any, ...]:
    """The stored row of a linked event (:data:`EVENT_COLUMNS`), free text sealed; ``details``:
    its details already encoded as JSON (any JSON form reads back the same)."""
    alertname, actor, message = e.alertname, e.actor, e.message
    stored = recording.seal_details(e.details) if details is None else details
    if recording.cipher is not None:  # sealed only when the policy encrypts
        seal = recording.seal_text
        alertname, actor, message = seal(alertname), seal(actor), seal(message)
        if details is not None:
            stored = seal(details)
    return (
        e.id,
        e.time,
        e.type,
        e.severity,
        e.category,
        e.target,
        e.playbook,
        e.action,
        e.outcome,
        e.duration,
        e.fingerprint,
        alertname,
        e.status,
        message,
        actor,
        e.config_version,
        stored,
        e.prev_hash,
        e.hash,
    )


def event_from_row(row: tuple[Any, ...], recording: Recording | None = None) -> Event:
    """An event as stored; with a recording that holds the key, sealed text is opened."""
    opener = recording or Recording()
    (
        id_,
        time,
        type_,
        sev,
        cat,
        target,
        book,
        action,
        outcome,
        duration,
        fp,
        name,
        status,
        msg,
        actor,
        version,
        details,
        prev_hash,
        hash_,
    ) = row
    return Event(
        id=id_,
        time=time,
        type=type_,
        severity=sev,
        category=cat,
        target=target,
        playbook=book,
        action=action,
        outcome=outcome,
        duration=duration,
        fingerprint=fp,
        alertname=opener.open_text(name),
        status=status,
        message=opener.open_text(msg),
        actor=opener.open_text(actor),
        config_version=version,
        details=opener.open_details(details),
        prev_hash=prev_hash,
        hash=hash_,
    )


def item_from_row(row: tuple[Any, ...], recording: Recording | None = None) -> InboxItem:
    """An inbox row (:data:`INBOX_COLUMNS`) as claimed: ``attempts`` counts this claim. Sealed
    columns are opened with ``recording``'s key; labels or annotations it cannot open raise
    :class:`~remediator.errors.SealedUnreadable` (the item is never handled half-read)."""
    opener = recording or Recording()
    return InboxItem(
        id=row[0],
        fingerprint=row[1],
        episode_id=row[2],
        status=row[3],
        alertname=opener.open_text(row[4]),
        labels=opener.open_json(row[5], f"inbox row {row[0]}"),
        annotations=opener.open_json(row[6], f"inbox row {row[0]}"),
        starts_at=row[7],
        ends_at=row[8],
        generator_url=opener.open_text(row[9]),
        received_at=row[10],
        priority=row[11],
        attempts=row[12] + 1,
        trace_context=row[13] if len(row) > 13 else None,
    )


def outbox_item(row: tuple[Any, ...], recording: Recording) -> OutboxItem:
    """A claimed outbox row (id, event_id, channel, destination, incident, phase, payload,
    attempts, batch_key), its payload opened with ``recording``'s key (or
    :class:`~remediator.errors.SealedUnreadable`)."""
    payload: dict[str, Any] = recording.open_json(row[6], f"outbox row {row[0]}")
    batch = row[8] if len(row) > 8 else None
    return OutboxItem(row[0], row[1], row[2], row[3], row[4], row[5], payload, row[7], batch)


@dataclass(frozen=True, slots=True)
class IngestResult:
    received: int
    new: int
    duplicates: int
    events: list[Event] = field(default_factory=list)

    def plus(self, other: IngestResult) -> IngestResult:
        """The result of two parts of one notification, stored one after the other."""
        return IngestResult(
            received=self.received + other.received,
            new=self.new + other.new,
            duplicates=self.duplicates + other.duplicates,
            events=[*self.events, *other.events],
        )


@dataclass(frozen=True, slots=True)
class InboxItem:
    """One stored alert state, waiting for (or done by) the worker."""

    id: int
    fingerprint: str
    episode_id: int
    status: str
    alertname: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    ends_at: float | None
    generator_url: str
    received_at: float
    priority: int
    attempts: int = 0
    # The W3C trace context its decision continues (remediator/tracing.py), None: untraced.
    trace_context: str | None = None


@dataclass(frozen=True, slots=True)
class PoisonedItem:
    """A stored alert the worker quarantined after ``worker.max_attempts`` claims."""

    id: int
    fingerprint: str
    episode_id: int
    status: str
    alertname: str
    received_at: float
    attempts: int
    poisoned_at: float | None


class AuditAnchor(NamedTuple):
    """Where the audit chain is anchored: its head (None before the first append recorded
    one) and the retention checkpoint (``0`` and the genesis hash before any pruning)."""

    head_id: int | None
    head_hash: str | None
    checkpoint_id: int
    checkpoint_hash: str


@dataclass(frozen=True, slots=True)
class EventQuery:
    type: str | None = None
    target: str | None = None
    severity: str | None = None
    fingerprint: str | None = None
    since: float | None = None
    until: float | None = None
    before_id: int | None = None
    limit: int = 100
    playbook: str | None = None
    outcome: str | None = None
