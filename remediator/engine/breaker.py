"""Circuit breakers, one per target: a pure state machine over persisted state.

::

    closed --(failure_threshold consecutive failures)--> open
    open --(reset_timeout elapsed)--> half-open
    half-open --(a trial succeeds)--> closed
    half-open --(a trial fails)--> open

Open rejects actions. Half-open admits at most ``half_open_requests`` trials at a time. The
functions take the current :class:`BreakerState` and the time, and return the next state plus
the transition (if any); the caller persists the state and records the event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from remediator.audit.events import Event
from remediator.clock import iso
from remediator.config.model import CircuitBreakerConfig
from remediator.store.records import BreakerState, Change, State

R = TypeVar("R")
STATE_VALUE: dict[str, int] = {"closed": 0, "half-open": 1, "open": 2}


@dataclass(frozen=True, slots=True)
class Transition:
    state: BreakerState
    changed_to: State | None = None  # set when the state changed


def admit(
    current: BreakerState, settings: CircuitBreakerConfig, now: float
) -> tuple[bool, Transition]:
    """May an action run on this target now? Admitting a half-open trial counts it."""
    if not settings.enabled:
        return True, Transition(current)
    state = current
    changed: State | None = None
    if state.state == "open":
        due = state.next_half_open(settings)
        if due is None or now < due:
            return False, Transition(state)
        state = replace(state, state="half-open", trials=0)
        changed = "half-open"
    if state.state == "half-open":
        if state.trials >= settings.half_open_requests:
            return False, Transition(state, changed)
        return True, Transition(replace(state, trials=state.trials + 1), changed)
    return True, Transition(state, changed)


def record(
    current: BreakerState, settings: CircuitBreakerConfig, *, ok: bool, now: float
) -> Transition:
    """Report an action's outcome."""
    if not settings.enabled:
        return Transition(current)
    if ok:
        if current.state == "closed":
            return Transition(replace(current, failures=0))
        return Transition(BreakerState(target=current.target), "closed")
    if current.state == "half-open":
        return Transition(
            replace(current, state="open", opened_at=now, trials=0, failures=current.failures + 1),
            "open",
        )
    if current.state == "open":
        return Transition(replace(current, failures=current.failures + 1))
    failures = current.failures + 1
    if failures >= settings.failure_threshold:
        return Transition(replace(current, state="open", failures=failures, opened_at=now), "open")
    return Transition(replace(current, failures=failures))


def tick(current: BreakerState, settings: CircuitBreakerConfig, now: float) -> Transition:
    """Move an open breaker to half-open once its reset timeout has passed (for probes)."""
    if settings.enabled and current.state == "open":
        due = current.next_half_open(settings)
        if due is not None and now >= due:
            return Transition(replace(current, state="half-open", trials=0), "half-open")
    return Transition(current)


def reset(current: BreakerState) -> Transition:
    """Manual reset: closed, counters cleared."""
    changed: State | None = None if current.state == "closed" else "closed"
    return Transition(BreakerState(target=current.target), changed)


def breaker_json(state: BreakerState, settings: CircuitBreakerConfig) -> dict[str, Any]:
    """A breaker's state as the API shows it."""
    due = state.next_half_open(settings)
    return {
        "target": state.target,
        "state": state.state,
        "failures": state.failures,
        "opened_at": iso(state.opened_at) if state.opened_at is not None else None,
        "next_half_open": iso(due) if due is not None else None,
        "half_open_trials": state.trials,
    }


TransitionEvents = Callable[[Transition], list[Event]]


class BreakerRows(Protocol):
    """What the steps need of a store (its ``Breakers`` role, remediator/store/base.py)."""

    async def update_breaker(self, target: str, change: Change[R], *, now: float) -> R: ...


class CircuitBreakers:
    """The steps above, each run atomically on a target's persisted row: the store reads the
    row (locked), the step computes the next state here, the store saves it and appends the
    transition's events, in one transaction (remediator/store/breakers.py)."""

    def __init__(self, store: BreakerRows) -> None:
        self.store = store

    async def _step(
        self,
        target: str,
        now: float,
        step: Callable[[BreakerState], tuple[Any, Transition]],
        events: TransitionEvents,
    ) -> tuple[Any, Transition]:
        def change(
            current: BreakerState,
        ) -> tuple[BreakerState, tuple[Any, Transition], list[Event]]:
            answer, transition = step(current)
            appended = events(transition) if transition.changed_to is not None else []
            return transition.state, (answer, transition), appended

        return await self.store.update_breaker(target, change, now=now)

    async def admit(
        self, target: str, settings: CircuitBreakerConfig, *, now: float, events: TransitionEvents
    ) -> tuple[bool, Transition]:
        """Atomically ask the target's breaker to admit one action (across replicas)."""
        allowed, transition = await self._step(
            target, now, lambda s: admit(s, settings, now), events
        )
        return bool(allowed), transition

    async def report(
        self,
        target: str,
        settings: CircuitBreakerConfig,
        *,
        ok: bool,
        now: float,
        events: TransitionEvents,
    ) -> Transition:
        _, transition = await self._step(
            target, now, lambda s: (None, record(s, settings, ok=ok, now=now)), events
        )
        return transition

    async def tick(
        self, target: str, settings: CircuitBreakerConfig, *, now: float, events: TransitionEvents
    ) -> Transition:
        _, transition = await self._step(
            target, now, lambda s: (None, tick(s, settings, now)), events
        )
        return transition

    async def reset(self, target: str, *, now: float, events: TransitionEvents) -> Transition:
        _, transition = await self._step(target, now, lambda s: (None, reset(s)), events)
        return transition
