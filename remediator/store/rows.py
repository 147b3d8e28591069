"""Backend-neutral rows: records to table rows and back, and the recording policy's steps.

Every backend appends events the same way (see remediator/audit/recording.py):

1. :func:`link` — redact each event, then chain it (ids ``last_id + 1 ...``, SHA-256 hashes);
2. :func:`event_row` — the stored row, with free text sealed (message, details, and with a
   key the alertname and actor too: attacker-supplied text, never filtered on);
3. :func:`outbox_rows` — the notifications the events cause, for the outbox in the same commit.

The backend only supplies the head of the chain (under its own lock) and runs the inserts.
"""

from __future__ import annotations

import json
from typing import Any

from remediator.audit.events import Event, chain
from remediator.audit.recording import Recording
from remediator.store.base import EventQuery, InboxItem
from remediator.store.records import FAILED, SUCCEEDED, OutboxItem

EVENT_COLUMNS = (
    "id, time, type, severity, category, target, playbook, action, outcome, duration, "
    "fingerprint, alertname, status, message, actor, config_version, details, prev_hash, hash"
)
INBOX_COLUMNS = (
    "id, fingerprint, episode_id, status, alertname, labels, annotations, starts_at, ends_at, "
    "generator_url, received_at, priority, attempts"
)
REMEDIATION_COLUMNS = (
    "id, playbook, fingerprint, episode_id, target, state, reason, started_at, finished_at, "
    "attempts"
)
OUTBOX_COLUMNS = (
    "event_id, channel, destination, incident, phase, payload, dedupe_key, next_attempt_at, "
    "created_at"
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
    ``CROSS JOIN`` fixes SQLite's order and ``state || ''`` takes that index out of the choices."""
    columns = ", ".join(f"r.{name.strip()}" for name in REMEDIATION_COLUMNS.split(","))
    return (
        f"SELECT {columns} FROM episodes AS e CROSS JOIN remediations AS r "  # noqa: S608
        "WHERE e.resolved_at IS NULL AND r.target = e.target AND r.episode_id = e.id "
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
                    event.time,
                    event.time,
                )
            )
    return rows


def event_row(e: Event, recording: Recording, details: str | None = None) -> tuple[Any, ...]:
    """The stored row of a linked event (:data:`EVENT_COLUMNS`), free text sealed; ``details``:
    its details already encoded as JSON (any JSON form reads back the same)."""
    alertname, actor = e.alertname, e.actor
    if recording.cipher is not None:
        alertname, actor = recording.seal_text(alertname), recording.seal_text(actor)
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
        recording.seal_text(e.message),
        actor,
        e.config_version,
        recording.seal_details(e.details) if details is None else recording.seal_json(details),
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
    )


def outbox_item(row: tuple[Any, ...], recording: Recording) -> OutboxItem:
    """A claimed outbox row (id, event_id, channel, destination, incident, phase, payload,
    attempts), its payload opened with ``recording``'s key (or
    :class:`~remediator.errors.SealedUnreadable`)."""
    payload: dict[str, Any] = recording.open_json(row[6], f"outbox row {row[0]}")
    return OutboxItem(row[0], row[1], row[2], row[3], row[4], row[5], payload, row[7])
