"""The inbox, written once for both backends: intake, claims, completion and the reads.

Intake (:func:`ingest`) runs the rules of remediator/store/inbox.py for each alert of a
notification, in its one transaction; with several writers (PostgreSQL) it first takes each
fingerprint's ``lock`` (an advisory lock), in one order, so two replicas receiving the same
notification queue each alert state once. SQLite's single writer needs none.

A claim takes the due, unleased items (PostgreSQL: ``SKIP LOCKED``, no replica takes an item
another one holds) by priority and id, and leases them to the worker in one statement.

Backend-neutral intake: what storing one alert of a notification means.

Intake (remediator/store/inbox.py: ``ingest``, the one loop of both backends) runs, per alert,
inside the one transaction of the notification (and, with several writers, while holding the
alert's fingerprint exclusively)::

    intake = decide(*latest_episodes(fingerprint), alert, now)
    episode = insert_episode(alert, resolved_at=intake.new_resolved_at) if intake.new_episode
              else intake.episode_id (closing it at intake.close_at, or moving its start to
              intake.move_start)
    inserted = not intake.late_repeat and insert-or-ignore inbox_values(...)  # chain_pending
    if not inserted and the repeat is recorded:
        chain_state(...)  # the state's own arrival first, if still pending
        events.append(intake_event(alert, inserted=False, ...))

A queued alert's ``alert:received`` / ``alert:resolved`` is not appended here: the row is the
durable record, and the worker's claim chains it (remediator/store/arrivals.py), so an intake
that stores only new alerts never touches the audit chain (on PostgreSQL: never waits for its
head's row lock).

The inbox is unique on (fingerprint, episode_id, status), so a notification re-sent by
Alertmanager, or by its HA peer, queues each alert state once; a late repeat of a closed episode
is recorded as a duplicate without being queued.

Repeats are counted on the state's inbox row (``repeats``) and recorded as ``alert:duplicate``
at most once per ``audit.duplicate_interval``: Alertmanager re-sends every group on each
group_interval and every HA peer sends it too, so recording each copy would fill the audit
chain with records that say nothing new. Every repeat still counts in the webhook's answer and
in ``remediator_alerts_duplicate_total``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from remediator.alerts import Alert, Episode, Placement, place, resolved_time
from remediator.audit.events import ALERT_DUPLICATE, ALERT_RECEIVED, ALERT_RESOLVED, Event
from remediator.audit.recording import Recording
from remediator.store.arrivals import CHAIN_BATCH, arrival_event, chain_arrivals, chain_state
from remediator.store.ops import Append, Dialect, Driven, Op, all_, insert, many, one, run
from remediator.store.records import (
    INBOX_COLUMNS,
    InboxItem,
    IngestResult,
    PoisonedItem,
    item_from_row,
)

_SORTED = json.JSONEncoder(sort_keys=True)  # json.dumps(..., sort_keys=True), built once
INGEST_CHUNK = 50  # alerts stored per transaction (see InboxOps.ingest)
STORM_ALERTS = 100  # a notification with more alerts is a storm's (see storm_penalty)
STORM_PENALTY = 10
SEVERITY_PRIORITY = {"critical": 0, "page": 0, "high": 1, "error": 1, "warning": 2, "info": 3}
INBOX_INSERT_COLUMNS = (
    "fingerprint, episode_id, status, alertname, labels, annotations, starts_at, ends_at, "
    "generator_url, receiver, group_key, received_at, priority, trace_context"
)


@dataclass(frozen=True, slots=True)
class Intake:
    """Where one alert goes, and what changes in the episodes table for it."""

    placement: Placement
    episode_id: int | None  # the existing episode it belongs to (None: a new one)
    new_resolved_at: float | None = None  # resolved_at of the new episode (NEW_CLOSED)
    close_at: float | None = None  # the open episode ends then (CLOSE)
    move_start: float | None = None  # the open episode started earlier than stored
    late_repeat: bool = False  # a firing repeat of a closed episode: recorded, not queued

    @property
    def new_episode(self) -> bool:
        return self.placement in (Placement.NEW_OPEN, Placement.NEW_CLOSED)


def decide(
    latest: Episode | None, alert: Alert, now: float, previous: Episode | None = None
) -> Intake:
    """The intake of ``alert`` received at ``now``, given its fingerprint's latest episode and
    the one before it."""
    starts, ends = alert.starts_ts, alert.ends_ts
    placement = place(
        latest, status=alert.status, starts_at=starts, ends_at=ends, previous=previous
    )
    if placement is Placement.STALE:
        assert latest is not None
        return Intake(placement, latest.id, late_repeat=True)
    if placement is Placement.NEW_OPEN:
        return Intake(placement, None)
    if placement is Placement.NEW_CLOSED:
        return Intake(placement, None, new_resolved_at=resolved_time(ends_at=ends, received_at=now))
    assert latest is not None
    if placement is Placement.CLOSE:
        return Intake(placement, latest.id, close_at=resolved_time(ends_at=ends, received_at=now))
    move = starts if latest.open and starts < latest.starts_at else None
    late = not latest.open and alert.status == "firing"
    return Intake(placement, latest.id, move_start=move, late_repeat=late)


def priority(alert: Alert) -> int:
    """Queue priority from the severity label: lower is claimed first."""
    return SEVERITY_PRIORITY.get(alert.labels.get("severity", ""), 2)


def storm_penalty(alerts: int) -> int:
    """What a notification of ``alerts`` alerts adds to their priority: a storm's notification
    (more than :data:`STORM_ALERTS`) queues behind every smaller one, so that its alerts —
    whose severity label whoever makes them fire chooses — never delay a single real one."""
    return STORM_PENALTY if alerts > STORM_ALERTS else 0


def inbox_values(
    alert: Alert,
    *,
    episode_id: int,
    now: float,
    receiver: str,
    group_key: str,
    recording: Recording | None = None,
    penalty: int = 0,
    trace_context: str | None = None,
) -> tuple[Any, ...]:
    """The inbox row (:data:`INBOX_INSERT_COLUMNS`) of an alert; with ``recording``'s key, its
    text (alertname, labels, annotations, generator URL, receiver, group key) sealed.
    ``trace_context``: the notification's trace (remediator/tracing.py), never alert text."""
    text: tuple[str, ...] = (
        alert.alertname,
        _SORTED.encode(alert.labels),
        _SORTED.encode(alert.annotations),
        alert.generator_url,
        receiver,
        group_key,
    )
    if recording is not None and recording.cipher is not None:
        text = tuple(recording.seal_text(value) for value in text)
    name, labels, annotations, url, receiver, group_key = text
    return (
        alert.fingerprint,
        episode_id,
        alert.status,
        name,
        labels,
        annotations,
        alert.starts_ts,
        alert.ends_ts,
        url,
        receiver,
        group_key,
        now,
        priority(alert) + penalty,
        trace_context,
    )


def episode_alertname(alert: Alert, recording: Recording | None) -> str:
    """The alertname an episode row keeps (sealed with ``recording``'s key; never read back)."""
    if recording is not None and recording.cipher is not None:
        return recording.seal_text(alert.alertname)
    return alert.alertname


def intake_event(
    alert: Alert,
    *,
    inserted: bool,
    episode_id: int,
    now: float,
    receiver: str,
    repeats: int | None = None,
) -> Event:
    """The event recording an alert's arrival: received/resolved if queued, else duplicate
    (with the number of ``repeats`` of its state so far, when counted). A queued alert's is
    chained after the intake (remediator/store/arrivals.py), from its inbox row."""
    if inserted:
        kind = ALERT_RECEIVED if alert.status == "firing" else ALERT_RESOLVED
    else:
        kind = ALERT_DUPLICATE
    return arrival_event(
        kind=kind,
        fingerprint=alert.fingerprint,
        alertname=alert.alertname,
        status=alert.status,
        severity=alert.labels.get("severity", "info"),
        starts_at=alert.starts_ts,
        ends_at=alert.ends_ts,
        episode_id=episode_id,
        now=now,
        receiver=receiver,
        repeats=repeats,
    )


def repeat_sql(mark: str) -> str:
    """Count a repeat of an alert state on its inbox row, and take the turn to record it if the
    last record is ``interval`` old (or none was made, or ``interval`` <= 0). Parameters:
    :func:`repeat_params`; the row returned: (repeats, repeats_recorded), equal when this repeat
    is to be recorded. No row: the state has no inbox row (recorded every time)."""
    due = f"({mark} <= 0 OR repeat_recorded_at IS NULL OR {mark} - repeat_recorded_at >= {mark})"
    return (
        f"UPDATE inbox SET repeats = repeats + 1, "  # noqa: S608
        f"repeat_recorded_at = CASE WHEN {due} THEN {mark} ELSE repeat_recorded_at END, "
        f"repeats_recorded = CASE WHEN {due} THEN repeats + 1 ELSE repeats_recorded END "
        f"WHERE fingerprint = {mark} AND episode_id = {mark} AND status = {mark} "
        "RETURNING repeats, repeats_recorded"
    )


def repeat_params(alert: Alert, *, episode_id: int, now: float, interval: float) -> tuple[Any, ...]:
    due = (interval, now, interval)
    return (*due, now, *due, alert.fingerprint, episode_id, alert.status)


def recorded_repeat(row: tuple[Any, ...] | None) -> tuple[bool, int | None]:
    """Whether a repeat is recorded as alert:duplicate, and the state's repeats so far."""
    if row is None:
        return True, None
    return int(row[0]) == int(row[1]), int(row[0])


LATEST_EPISODES = (
    "SELECT e.id, e.fingerprint, e.starts_at, e.resolved_at, EXISTS (SELECT 1 FROM inbox i "
    "WHERE i.fingerprint = e.fingerprint AND i.episode_id = e.id AND i.status = ?) "
    "FROM episodes e WHERE e.fingerprint = ? ORDER BY e.id DESC LIMIT 2"
)
INSERT_EPISODE = (
    "INSERT INTO episodes (fingerprint, alertname, starts_at, opened_at, resolved_at) "
    "VALUES (?, ?, ?, ?, ?)"
)
INSERT_INBOX = (
    f"INSERT INTO inbox ({INBOX_INSERT_COLUMNS}, chain_pending) "  # noqa: S608
    f"VALUES ({', '.join(['?'] * 14)}, 1) "
    "ON CONFLICT (fingerprint, episode_id, status) DO NOTHING"
)
CLOSE_EPISODE = "UPDATE episodes SET resolved_at = ? WHERE id = ?"
MOVE_EPISODE = "UPDATE episodes SET starts_at = ? WHERE id = ?"
REPEAT = repeat_sql("?")


def ingest(
    d: Dialect,
    alerts: list[Alert],
    *,
    now: float,
    receiver: str,
    group_key: str,
    duplicate_interval: float,
    recording: Recording,
    lock: str | None,
    penalty: int = 0,
    trace_context: str | None = None,
) -> Op[IngestResult]:
    """Store one notification's alerts (see the module's docstring); ``penalty`` is added to
    their queue priority (:func:`storm_penalty`); ``trace_context`` is kept on each new row."""
    if lock is not None:
        for fingerprint in sorted({alert.fingerprint for alert in alerts}):
            yield run(lock, fingerprint)
    new = duplicates = 0
    events: list[Event] = []
    arrived: list[Event] = []  # arrivals of repeated states chained here (arrivals.py)
    for alert in alerts:
        rows = yield all_(LATEST_EPISODES, alert.status, alert.fingerprint)
        found = [Episode(*row[:4]) for row in rows]
        intake = decide(
            found[0] if found else None, alert, now, found[1] if len(found) > 1 else None
        )
        if intake.episode_id is None:
            episode_id = yield insert(
                INSERT_EPISODE,
                alert.fingerprint,
                episode_alertname(alert, recording),
                alert.starts_ts,
                now,
                intake.new_resolved_at,
            )
        else:
            episode_id = intake.episode_id
            if intake.close_at is not None:
                yield run(CLOSE_EPISODE, intake.close_at, episode_id)
            elif intake.move_start is not None:
                yield run(MOVE_EPISODE, intake.move_start, episode_id)
        inserted = 0
        if not intake.late_repeat and not any(row[0] == episode_id and row[4] for row in rows):
            values = inbox_values(
                alert,
                episode_id=episode_id,
                now=now,
                receiver=receiver,
                group_key=group_key,
                recording=recording,
                penalty=penalty,
                trace_context=trace_context,
            )
            inserted = yield run(INSERT_INBOX, *values)
        if inserted:
            new += 1  # its alert:received is chained after the commit (arrivals.py)
            continue
        duplicates += 1
        params = repeat_params(alert, episode_id=episode_id, now=now, interval=duplicate_interval)
        recorded, repeats = recorded_repeat((yield one(REPEAT, *params)))
        if not recorded:
            continue
        if repeats is not None:  # the state is queued: its arrival is chained before this
            arrived += yield from chain_state(
                d,
                fingerprint=alert.fingerprint,
                episode_id=episode_id,
                status=alert.status,
                recording=recording,
            )
        events.append(
            intake_event(
                alert,
                inserted=False,
                episode_id=episode_id,
                now=now,
                receiver=receiver,
                repeats=repeats,
            )
        )
    appended: list[Event] = yield Append(events)
    return IngestResult(
        received=len(alerts), new=new, duplicates=duplicates, events=[*arrived, *appended]
    )


def claim(
    d: Dialect, *, worker: str, now: float, lease: float, limit: int, recording: Recording
) -> Op[list[InboxItem]]:
    """Chain the pending arrivals (remediator/store/arrivals.py), then lease the due, unleased
    items whose arrival is chained, by priority and id."""
    yield from chain_arrivals(d, recording=recording, limit=max(CHAIN_BATCH, 2 * limit))
    rows = yield all_(
        (
            "WITH picked AS (SELECT id FROM inbox WHERE state = 'pending' "  # noqa: S608
            "AND chain_pending = 0 AND (lease_until IS NULL OR lease_until < ?) "
            "ORDER BY priority, id "
            f"LIMIT ?{d.skip_locked}) UPDATE inbox SET claimed_by = ?, lease_until = ?, "
            "attempts = attempts + 1 WHERE id IN (SELECT id FROM picked) "
            f"RETURNING {INBOX_COLUMNS}"
        ),
        now,
        limit,
        worker,
        now + lease,
    )
    # RETURNING gives the counted attempts; item_from_row counts the claim itself.
    rows = sorted(rows, key=lambda r: (r[11], r[0]))
    return [item_from_row((*r[:12], r[12] - 1, *r[13:]), recording) for r in rows]


def complete(d: Dialect, item_id: int, *, events: list[Event], outcome: str) -> Op[list[Event]]:
    yield run(
        (
            "UPDATE inbox SET state = 'done', outcome = ?, done_at = ?, lease_until = NULL "
            "WHERE id = ?"
        ),
        outcome,
        events[-1].time if events else None,
        item_id,
    )
    appended: list[Event] = yield Append(events)
    return appended


def poison(d: Dialect, item_id: int, *, now: float, events: list[Event]) -> Op[bool]:
    """Quarantine a claimed item (state ``poisoned``: never claimed again) and append
    ``events`` in the same commit; False if it is no longer pending."""
    changed = yield run(
        (
            "UPDATE inbox SET state = 'poisoned', outcome = 'poisoned', done_at = ?, "
            "lease_until = NULL WHERE id = ? AND state = 'pending'"
        ),
        now,
        item_id,
    )
    if changed:
        yield Append(events)
    return bool(changed)


def poisoned(d: Dialect, limit: int) -> Op[list[tuple[Any, ...]]]:
    """The quarantined items, newest first: id, fingerprint, episode, status, alertname
    (as stored), received_at, attempts, done_at."""
    rows: list[tuple[Any, ...]] = yield all_(
        "SELECT id, fingerprint, episode_id, status, alertname, received_at, attempts, done_at "
        "FROM inbox WHERE state = 'poisoned' ORDER BY id DESC LIMIT ?",
        limit,
    )
    return rows


def extend_leases(d: Dialect, item_ids: list[int], *, worker: str, until: float) -> Op[None]:
    yield many(
        "UPDATE inbox SET lease_until = ? WHERE id = ? AND claimed_by = ? AND state = 'pending'",
        [(until, i, worker) for i in item_ids],
    )


def pending_count(d: Dialect) -> Op[int]:
    row = yield one("SELECT count(*) FROM inbox WHERE state = 'pending'")
    return int(row[0]) if row else 0


class InboxOps(Driven):
    """The :class:`~remediator.store.base.Inbox` role. ``intake_lock``: the statement taking a
    fingerprint's lock for the transaction (parameter: the fingerprint), if writers need it."""

    recording: Recording
    intake_lock: str | None = None

    async def ingest(
        self,
        alerts: list[Alert],
        *,
        received_at: float,
        receiver: str,
        group_key: str,
        duplicate_interval: float = 0.0,
        trace_context: str | None = None,
    ) -> IngestResult:
        """Store a notification's alerts, :data:`INGEST_CHUNK` per transaction: a storm's
        notification of thousands of alerts never holds the writer (and, on SQLite, the event
        loop that runs its statements) for longer than one chunk, so a small notification
        arriving meanwhile commits between two chunks. The caller answers only after the last
        chunk committed; a chunk stored twice (a retried notification) is recorded as repeats.
        A storm's notification queues behind smaller ones (:func:`storm_penalty`)."""
        total: IngestResult | None = None
        for start in range(0, max(len(alerts), 1), INGEST_CHUNK):
            result = await self._write_op(
                ingest,
                alerts[start : start + INGEST_CHUNK],
                now=received_at,
                receiver=receiver,
                group_key=group_key,
                duplicate_interval=duplicate_interval,
                recording=self.recording,
                lock=self.intake_lock,
                penalty=storm_penalty(len(alerts)),
                trace_context=trace_context,
            )
            total = result if total is None else total.plus(result)
        assert total is not None
        return total

    async def claim(self, *, worker: str, now: float, lease: float, limit: int) -> list[InboxItem]:
        return await self._write_op(
            claim, worker=worker, now=now, lease=lease, limit=limit, recording=self.recording
        )

    async def complete(self, item_id: int, *, events: list[Event], outcome: str) -> list[Event]:
        return await self._write_op(complete, item_id, events=events, outcome=outcome)

    async def poison(self, item_id: int, *, now: float, events: list[Event]) -> bool:
        return await self._write_op(poison, item_id, now=now, events=events)

    async def poisoned(self, limit: int = 100) -> list[PoisonedItem]:
        rows = await self._read_op(poisoned, limit)
        return [
            PoisonedItem(
                id=int(r[0]), fingerprint=str(r[1]), episode_id=int(r[2]), status=str(r[3]),
                alertname=self.recording.open_text(str(r[4])), received_at=float(r[5]),
                attempts=int(r[6]), poisoned_at=float(r[7]) if r[7] is not None else None,
            )
            for r in rows
        ]  # fmt: skip

    async def extend_leases(self, item_ids: list[int], *, worker: str, until: float) -> None:
        if item_ids:
            await self._write_op(extend_leases, item_ids, worker=worker, until=until)

    async def pending_count(self) -> int:
        return await self._read_op(pending_count)
