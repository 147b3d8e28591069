"""Records of the engine's state, shared by every store backend."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

from remediator.audit.events import Event
from remediator.episodes import Episode

R = TypeVar("R")


class ResetTimeout(Protocol):
    """What :meth:`BreakerState.next_half_open` needs of the breaker settings."""

    @property
    def reset_timeout(self) -> float: ...


State = Literal["closed", "half-open", "open"]


@dataclass(frozen=True, slots=True)
class BreakerState:
    """One target's circuit breaker row (its state machine is remediator/engine/breaker.py)."""

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
