"""The store interface: everything remediator keeps durably, behind one protocol.

Backends: ``sqlite`` (embedded default, one process) and ``postgresql`` (several replicas
share it). Every write is one transaction; an acknowledged write survives a crash. A backend
that cannot commit raises :class:`~remediator.errors.StoreUnavailable` and has changed nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from remediator.alerts import Alert, Episode
from remediator.audit.events import AUDIT_CHECKPOINT, Event
from remediator.audit.recording import Recording
from remediator.store.api_patterns import StoredPattern
from remediator.store.approvals import Approvals
from remediator.store.records import (
    AuditAnchor,
    BreakerState,
    Change,
    EventQuery,
    GuardSnapshot,
    InboxItem,
    IngestResult,
    OutboxItem,
    PoisonedItem,
    Remediation,
    StepIntent,
    TargetState,
)
from remediator.store.silences import Silences

CHECKPOINT = AUDIT_CHECKPOINT
R = TypeVar("R")


def checkpoint_event(*, deleted: int, through: int, hash_: str, now: float) -> Event:
    """The ``audit:checkpoint`` event retention appends after deleting events through id
    ``through`` (whose hash was ``hash_``): the chain verifies from there on."""
    return Event(
        type=CHECKPOINT,
        time=now,
        actor="retention",
        message=f"pruned {deleted} events through id {through}",
        details={"through_id": through, "hash": hash_},
    )


class Lifecycle(Protocol):
    """Opening, closing and the backend's own facts."""

    async def open(self) -> None:
        """Connect and migrate the schema to the current version."""
        ...

    async def close(self) -> None: ...

    def configure(self, recording: Recording) -> None:
        """Apply this policy (redaction, sealing, notification routing) to appended events."""
        ...

    def subscribe(self, callback: Callable[[list[Event]], None]) -> None:
        """Call ``callback`` with the events of every commit, in commit order, after it
        committed. It may be called from another thread: it must only hand the events over."""
        ...

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless the store answers and can be written."""
        ...

    @property
    def shared(self) -> bool:
        """True when several remediator processes may use this store at once."""
        ...

    async def schema_version(self) -> int: ...

    async def raw(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Read-only query for diagnostics and tests, in the backend's own paramstyle
        (``?`` for SQLite, ``%s`` for PostgreSQL). Engine code never uses it."""
        ...


class Inbox(Protocol):
    """The alert states received, queued for the worker (remediator/store/inbox.py)."""

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
        """Record every alert of a notification, deduplicated by episode, in one commit. A
        repeat of an alert state is counted, and recorded as ``alert:duplicate`` if the last
        record of that state is ``duplicate_interval`` old (always, with 0). A queued state's
        ``alert:received`` / ``alert:resolved`` is chained later, by :meth:`claim`
        (remediator/store/arrivals.py). ``trace_context`` (a canonical W3C ``traceparent``,
        optionally a space and its ``tracestate``) is kept on each new inbox row and returned
        by the claim (``InboxItem.trace_context``)."""
        ...

    async def claim(self, *, worker: str, now: float, lease: float, limit: int) -> list[InboxItem]:
        """Chain the arrivals not chained yet, then lease up to ``limit`` pending items whose
        arrival is chained, highest priority first, oldest first."""
        ...

    async def complete(self, item_id: int, *, events: list[Event], outcome: str) -> list[Event]:
        """Mark an item done and append its events, in one commit; the recorded events."""
        ...

    async def extend_leases(self, item_ids: list[int], *, worker: str, until: float) -> None:
        """Keep items this worker still works on from being claimed by another."""
        ...

    async def pending_count(self) -> int: ...

    async def poison(self, item_id: int, *, now: float, events: list[Event]) -> bool:
        """Quarantine a claimed item (never claimed again), appending ``events``; False if it
        is no longer pending."""
        ...

    async def poisoned(self, limit: int = 100) -> list[PoisonedItem]:
        """The quarantined items, newest first."""
        ...

    async def latest_alert(self, fingerprint: str) -> InboxItem | None:
        """The newest inbox row of a fingerprint (any state), or None if it was never stored."""
        ...


class AuditChain(Protocol):
    """The hash-chained event log (remediator/engine/verifier.py): append, read, retention."""

    async def append(self, events: list[Event]) -> list[Event]:
        """Append events to the chain; returns them with id and hashes set."""
        ...

    async def events(self, query: EventQuery) -> list[Event]:
        """Recorded events, newest first."""
        ...

    async def events_after(self, after_id: int, limit: int) -> list[Event]:
        """Up to ``limit`` recorded events with ``id > after_id``, oldest first."""
        ...

    async def audit_anchor(self) -> AuditAnchor:
        """The chain's head and retention checkpoint, read together."""
        ...

    async def audit_plaintext(self, after_id: int) -> int | None:
        """The first record after ``after_id`` stored in the clear after a sealed one (an
        encrypting store seals every record from its first sealed one on); None if none."""
        ...

    async def prune(self, *, before: float, now: float, recording: Recording) -> int:
        """Retention, in one transaction: delete every event through the last one older than
        ``before`` (never the chain's head), move the checkpoint to it, and append an
        ``audit:checkpoint`` event (with ``recording``'s policy). The number deleted."""
        ...


class Growth(Protocol):
    """Retention of finished rows and the tables' sizes (remediator/store/growth.py)."""

    async def prune_rows(self, table: str, *, before: float, limit: int) -> int:
        """Delete at most ``limit`` finished rows of ``table`` older than ``before`` that no
        open incident needs, in one short transaction; the number deleted."""
        ...

    async def table_rows(self) -> dict[str, int]:
        """The number of rows of each table retention watches."""
        ...

    async def size_bytes(self) -> int:
        """The bytes the store takes on disk."""
        ...


class Episodes(Protocol):
    """The firing periods of alerts."""

    async def episode(self, episode_id: int) -> Episode | None: ...

    async def open_episodes(self) -> list[Episode]:
        """Every episode still firing."""
        ...


class Remediations(Protocol):
    """Runs of playbooks, claimed once per (playbook, fingerprint, episode)."""

    async def start_remediation(
        self,
        *,
        playbook: str,
        fingerprint: str,
        episode_id: int,
        target: str,
        now: float,
        state: str = ...,
        reason: str = ...,
        config_version: int = ...,
        events: list[Event] | None = None,
        owner: str = ...,
        lease: float = ...,
        before_events: list[Event] | None = None,
        mark: bool = False,
    ) -> int | None:
        """Claim the one remediation of (playbook, fingerprint, episode); None if it exists.
        A running one whose owner's lease expired is taken over (its id is returned).

        In the same transaction, with ``mark``, record that the episode is about ``target``
        (as :meth:`mark_targets`), and append ``before_events`` whether or not the claim
        succeeds, before ``events`` (which are appended only if it does)."""
        ...

    async def renew_remediation(self, remediation_id: int, *, owner: str, until: float) -> None:
        """Extend the lease of a remediation this owner is running."""
        ...

    async def finish_remediation(
        self,
        remediation_id: int,
        *,
        state: str,
        now: float,
        attempts: int,
        reason: str = ...,
        events: list[Event] | None = None,
        complete_item: tuple[int, str] | None = None,
    ) -> None:
        """Record the end of a remediation with its events; with ``complete_item`` (inbox id,
        outcome), also mark that inbox item done (as :meth:`complete`), in the same
        transaction."""
        ...

    async def remediations(
        self, *, target: str | None = None, state: str | None = None, limit: int = 1000
    ) -> list[Remediation]: ...

    async def unrecovered(
        self, *, finished_before: float, after_id: int = 0, limit: int = 500
    ) -> list[Remediation]:
        """Finished (succeeded or failed) remediations whose episode is still open (the alert
        keeps firing), finished at or before ``finished_before``, with ``id > after_id``, by id."""
        ...

    async def interrupt_running(
        self,
        *,
        now: float,
        events_for: Callable[[Remediation], list[Event]],
        expired_only: bool = False,
    ) -> list[Remediation]: ...


class Guards(Protocol):
    """What the guards read before an action (remediator/store/records.py GuardSnapshot)."""

    async def mark_targets(self, pairs: list[tuple[int, str]]) -> None:
        """Record which target each episode (id, target) is about."""
        ...

    async def alerting_targets(self, names: list[str]) -> int:
        """How many of these targets have an open episode now."""
        ...

    async def last_started(self, *, target: str, playbook: str) -> float | None: ...

    async def count_started(self, *, target: str, since: float) -> int: ...

    async def guard_snapshot(
        self,
        *,
        target: str,
        playbook: str,
        flag: str,
        peers: list[str] | None,
        since: float | None,
        episode_id: int | None = None,
    ) -> GuardSnapshot:
        """In one read (one consistent view): the episode (if ``episode_id``), the value of
        ``flag``, the target's state, :meth:`alerting_targets` of ``peers`` (None if
        ``peers`` is None), :meth:`last_started` of the playbook on the target,
        :meth:`count_started` since ``since`` (None if ``since`` is None) and the breaker."""
        ...


class Intents(Protocol):
    """Step intents recorded before state-changing steps."""

    async def record_intent(self, intent: StepIntent) -> None:
        """Record (durably, before the call) that a state-changing step is about to be taken;
        replaces the intent of the same remediation and step."""
        ...

    async def step_intents(self, remediation_id: int) -> list[StepIntent]:
        """The recorded intents of a remediation, by step."""
        ...


class Flags(Protocol):
    """Flags and singleton leases."""

    async def flag(self, name: str) -> str | None: ...

    async def set_flag(
        self, name: str, value: str, *, actor: str, now: float, events: list[Event]
    ) -> None: ...

    async def lead(self, name: str, *, owner: str, now: float, ttl: float) -> bool:
        """Hold or renew the singleton lease ``name`` (e.g. "reconcile"); False if another
        owner holds an unexpired one."""
        ...


class Breakers(Protocol):
    """The circuit breakers' rows."""

    async def breakers(self) -> list[BreakerState]: ...

    async def breaker(self, target: str) -> BreakerState: ...

    async def update_breaker(self, target: str, change: Change[R], *, now: float) -> R:
        """Atomically: read the target's breaker row (locked), ``change`` it (a pure function
        of the state read: the state to save, the result, the events to append), save it and
        append; the result. The steps of remediator/engine/guards.py run on it."""
        ...


class TargetStates(Protocol):
    """Target registration, quarantine and failover data."""

    async def target_state(self, target: str) -> TargetState: ...

    async def register_targets(
        self, names: list[str], *, now: float, events_for: Callable[[str], list[Event]]
    ) -> list[str]: ...

    async def set_quarantine(
        self, target: str, *, reason: str | None, now: float, events: list[Event]
    ) -> None: ...

    async def update_target_data(
        self, target: str, data: dict[str, Any], events: list[Event]
    ) -> None: ...

    async def quarantined_targets(self) -> list[TargetState]:
        """Every quarantined target's state (configured now or not), by name."""
        ...

    async def lift_quarantine(
        self,
        target: str,
        *,
        drop: tuple[str, ...] = (),
        events_for: Callable[[TargetState], list[Event]],
    ) -> TargetState | None:
        """In one transaction: if ``target`` is quarantined, release it, remove the keys
        ``drop`` from its data and append ``events_for(state before)``; that state, or None
        (nothing appended) if it was not quarantined. Of concurrent lifts, one finds it."""
        ...


class Outbox(Protocol):
    """Notifications waiting for delivery."""

    async def claim_outbox(
        self, *, worker: str, now: float, lease: float, limit: int
    ) -> list[OutboxItem]:
        """Due notifications, at most one per (channel, destination, incident), oldest first."""
        ...

    async def claim_outbox_batch(
        self, head: OutboxItem, *, worker: str, now: float, lease: float, limit: int
    ) -> list[OutboxItem]:
        """Up to ``limit`` more due rows of ``head``'s batch key (same channel and destination),
        oldest first, leased with it: delivered as one message. None without a batch key."""
        ...

    # ``batch``: the other rows delivered in the same message, marked with the row.
    async def outbox_sent(
        self, item_id: int, *, now: float, events: list[Event], batch: tuple[int, ...] = ()
    ) -> None: ...

    async def outbox_retry(
        self, item_id: int, *, next_at: float, error: str, batch: tuple[int, ...] = ()
    ) -> None: ...

    async def outbox_dead(
        self,
        item_id: int,
        *,
        now: float,
        error: str,
        events: list[Event],
        batch: tuple[int, ...] = (),
    ) -> None: ...

    async def outbox_pending(self) -> int: ...

    async def outbox_states(self) -> dict[str, int]: ...


class SlackThreads(Protocol):
    """The Slack thread of each incident and destination."""

    async def slack_thread(self, incident: str, destination: str) -> tuple[str, str] | None: ...

    async def save_slack_thread(
        self, incident: str, destination: str, *, channel: str, ts: str
    ) -> None: ...


class Patterns(Protocol):
    """Failure patterns added through the API (remediator/store/api_patterns.py)."""

    async def api_patterns(self) -> list[StoredPattern]:
        """Every stored API pattern, in the order they were added."""
        ...

    async def add_api_pattern(
        self, pattern: StoredPattern, *, events: list[Event]
    ) -> StoredPattern | None:
        """Store ``pattern`` (last, unless it has a position) with ``events``, in one commit;
        None, and nothing recorded, if a pattern with its id is stored."""
        ...

    async def delete_api_patterns(self, ids: list[str], *, events: list[Event]) -> list[str]:
        """Delete these API patterns and, if any was stored, append ``events``, in one commit;
        the ids deleted."""
        ...


class Store(
    Lifecycle,
    Inbox,
    AuditChain,
    Episodes,
    Remediations,
    Guards,
    Intents,
    Flags,
    Breakers,
    TargetStates,
    Outbox,
    SlackThreads,
    Patterns,
    Growth,
    Approvals,
    Silences,
    Protocol,
):
    """Everything remediator keeps durably: every role, one backend."""
