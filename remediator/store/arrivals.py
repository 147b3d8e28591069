"""Arrivals: the ``alert:received`` / ``alert:resolved`` records of queued alerts, chained after
the intake's commit, written once for both backends.

Intake (remediator/store/inbox.py: ``ingest``) commits only what the webhook's 2xx needs: the
episode and the inbox row, marked ``chain_pending``. The row is the durable record of the
arrival; its audit record is appended later, by :func:`chain_arrivals`, which the worker's claim
runs first in its own transaction (remediator/store/inbox.py: ``claim``): an item is claimable
only once its arrival is chained, so the chain always shows an alert's arrival before anything
the worker did with it. So on PostgreSQL no webhook waits for the chain head's row lock (the
replicas' intakes no longer serialise there), and a claim chains a batch of arrivals under one
lock: twice its own limit, at least :data:`CHAIN_BATCH`, so the chained rows stay ahead of the
claims while one claim's job stays short (on SQLite its statements run on the event loop).

Exactly once, in queue order (priority, then oldest first: the order the worker takes the items,
so an alert queued during a storm is chained, and claimed, ahead of the storm's backlog), on
every backend and replica:

* the rows are taken by one ``UPDATE ... SET chain_pending = 0 ... RETURNING``, in the
  transaction that appends their records: both commit, or neither (a crash, a lost lease or a
  rolled-back claim leaves the rows pending for the next claim);
* on PostgreSQL the chainer locks the chain's head row *before* taking rows, so chainers run one
  at a time and each takes the first rows left in queue order; rows another transaction
  holds (an intake counting a repeat) are skipped (``SKIP LOCKED``), never waited for;
* an intake recording a repeat (``alert:duplicate``) of a state whose arrival is still pending
  chains that arrival first, in its own transaction (:func:`chain_state`), so an alert's
  duplicate never precedes its arrival in the chain.

The audit chain is never half-written: a record is either absent (its row still pending) or
chained with everything before it.
"""

from __future__ import annotations

import json
from typing import Any

from remediator.audit.events import ALERT_RECEIVED, ALERT_RESOLVED, Event
from remediator.audit.recording import Recording
from remediator.store.chain import head
from remediator.store.ops import Append, Dialect, Op, all_, one

CHAIN_BATCH = 200  # arrivals a claim chains at most: this, or twice its limit if more
ARRIVAL_COLUMNS = (
    "id, fingerprint, episode_id, status, alertname, labels, starts_at, ends_at, receiver, "
    "received_at, priority"
)
ANY_PENDING = "SELECT id FROM inbox WHERE chain_pending = 1 LIMIT 1"


def take_sql(skip_locked: str) -> str:
    """Mark the first pending arrivals in queue order chained (at most ``?``); their rows."""
    return (
        "UPDATE inbox SET chain_pending = 0 WHERE id IN (SELECT id FROM inbox "  # noqa: S608
        f"WHERE chain_pending = 1 ORDER BY priority, id LIMIT ?{skip_locked}) "
        f"RETURNING {ARRIVAL_COLUMNS}"
    )


TAKE_STATE = (
    "UPDATE inbox SET chain_pending = 0 WHERE fingerprint = ? AND episode_id = ? "  # noqa: S608
    f"AND status = ? AND chain_pending = 1 RETURNING {ARRIVAL_COLUMNS}"
)


def arrival_event(
    *,
    kind: str,
    fingerprint: str,
    alertname: str,
    status: str,
    severity: str,
    starts_at: float,
    ends_at: float | None,
    episode_id: int,
    now: float,
    receiver: str,
    repeats: int | None = None,
) -> Event:
    """The record of an alert's arrival (received, resolved or duplicate), as intake made it."""
    details: dict[str, Any] = {"episode": episode_id, "starts_at": starts_at, "ends_at": ends_at}
    if repeats is not None:
        details["repeats"] = repeats
    return Event(
        type=kind,
        time=now,
        severity=severity,
        fingerprint=fingerprint,
        alertname=alertname,
        status=status,
        message=f"{alertname} {status}",
        actor=f"alertmanager:{receiver}",
        details=details,
    )


def row_event(row: tuple[Any, ...], recording: Recording) -> Event:
    """The arrival record of an inbox row (:data:`ARRIVAL_COLUMNS`), its text opened with
    ``recording``'s key (labels it cannot open: severity ``info``, as for an alert without
    one)."""
    _, fingerprint, episode_id, status, alertname, labels, starts, ends, receiver, at, _ = row
    try:
        severity = str(json.loads(recording.open_text(labels)).get("severity", "info"))
    except ValueError:
        severity = "info"
    return arrival_event(
        kind=ALERT_RECEIVED if status == "firing" else ALERT_RESOLVED,
        fingerprint=fingerprint,
        alertname=recording.open_text(alertname),
        status=status,
        severity=severity,
        starts_at=starts,
        ends_at=ends,
        episode_id=int(episode_id),
        now=float(at),
        receiver=recording.open_text(receiver),
    )


def _linked(rows: list[tuple[Any, ...]], recording: Recording) -> Op[list[Event]]:
    if not rows:
        return []
    queued = sorted(rows, key=lambda r: (int(r[10]), int(r[0])))  # priority, id
    events = [row_event(row, recording) for row in queued]
    linked: list[Event] = yield Append(events)
    return linked


def chain_arrivals(
    d: Dialect, *, recording: Recording, limit: int = CHAIN_BATCH
) -> Op[list[Event]]:
    """Chain the first pending arrivals in queue order (at most ``limit``); the linked records.
    Nothing pending: no lock taken, nothing written."""
    if (yield one(ANY_PENDING)) is None:
        return []
    if d.for_update:
        yield from head(d)  # one chainer at a time: the rows taken below are the first left
    rows = yield all_(take_sql(d.skip_locked), limit)
    linked: list[Event] = yield from _linked(rows, recording)
    return linked


def chain_state(
    d: Dialect, *, fingerprint: str, episode_id: int, status: str, recording: Recording
) -> Op[list[Event]]:
    """Chain the arrival of one alert state if it is still pending (intake does, before it
    records a repeat of it); the linked record, if any."""
    rows = yield all_(TAKE_STATE, fingerprint, episode_id, status)
    linked: list[Event] = yield from _linked(rows, recording)
    return linked
