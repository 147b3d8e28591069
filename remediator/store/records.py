"""Records of the engine's state, shared by every store backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
