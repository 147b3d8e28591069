"""Safety guards: what stops a decided remediation from running, checked in order.

1. ``paused``         the global kill switch is on
2. ``quarantined``    the target was quarantined (no further automatic actions)
3. ``blast_radius``   too many targets of the same type are alerting at once
4. ``cooldown``       this playbook ran on this target too recently
5. ``max_per_window`` the target had its share of remediations in the window
6. ``circuit_open``   the target's circuit breaker rejects actions

All state comes from the store, so every replica sees the same answer: one read
(:meth:`Guards.snapshot`, ``Store.guard_snapshot``) takes everything the guards need, and
:func:`evaluate` decides on it without I/O. A block is recorded by the engine as
``recovery:skipped`` with the reason; some reasons also escalate.

Circuit breakers, one per target: a pure state machine over persisted state.

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

import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from remediator.audit.events import Event
from remediator.clock import iso
from remediator.config.model import CircuitBreakerConfig, Config
from remediator.config.targets import Target
from remediator.engine.decisions import Plan
from remediator.store import Store
from remediator.store.records import BreakerState, Change, GuardSnapshot, State

PAUSED = "paused"
QUARANTINED = "quarantined"
BLAST_RADIUS = "blast_radius"
COOLDOWN = "cooldown"
MAX_PER_WINDOW = "max_per_window"
CIRCUIT_OPEN = "circuit_open"
# The guards in the order :func:`evaluate` asks them (the first that blocks decides).
GUARDS = (PAUSED, QUARANTINED, BLAST_RADIUS, COOLDOWN, MAX_PER_WINDOW, CIRCUIT_OPEN)
# Blocks that tell a human: automation has stopped for this target.
ESCALATING = frozenset({QUARANTINED, BLAST_RADIUS, MAX_PER_WINDOW, CIRCUIT_OPEN})
PAUSE_FLAG = "paused"


@dataclass(frozen=True, slots=True)
class Verdict:
    reason: str | None  # None: allowed
    detail: str = ""

    @property
    def allowed(self) -> bool:
        return self.reason is None


ALLOWED = Verdict(None)


class Guards:
    def __init__(self, *, config: Config, store: Store) -> None:
        self.config = config
        self.store = store

    async def paused(self) -> bool:
        return (await self.store.flag(PAUSE_FLAG)) == "1"

    async def snapshot(
        self,
        *,
        plan: Plan,
        target: Target,
        now: float,
        episode_id: int | None = None,
        alerting: int | None = None,
    ) -> GuardSnapshot:
        """Everything :func:`evaluate` needs for this plan and target at ``now``, in one read
        (with the episode, if ``episode_id``). ``alerting``: the blast-radius count, if the
        caller has just read it (for a claimed batch as a whole), so it is not read again."""
        limit = plan.max_per_window
        peers = blast_peers(self.config, target)
        snapshot = await self.store.guard_snapshot(
            target=target.name,
            playbook=plan.name,
            flag=PAUSE_FLAG,
            peers=None if alerting is not None else peers,
            since=None if limit is None else now - limit.window,
            episode_id=episode_id,
        )
        if alerting is not None and peers is not None:
            return replace(snapshot, alerting=alerting)
        return snapshot

    def verdict(
        self, snapshot: GuardSnapshot, *, plan: Plan, target: Target, now: float
    ) -> Verdict:
        return evaluate(snapshot, config=self.config, plan=plan, target=target, now=now)

    async def check(self, *, plan: Plan, target: Target, now: float) -> Verdict:
        """The read-only guards. The breaker is only looked at here; the engine admits the
        action (and counts a half-open trial) after it has claimed the remediation."""
        snapshot = await self.snapshot(plan=plan, target=target, now=now)
        return self.verdict(snapshot, plan=plan, target=target, now=now)


def blast_peers(config: Config, target: Target) -> list[str] | None:
    """The targets of ``target``'s type, or None when too few for the blast-radius guard."""
    peers = _peers_by_type(config).get(target.type)
    return peers if peers and len(peers) >= config.safety.blast_radius_min_targets else None


# The targets of each type, per configuration object (computed once: a configuration is never
# changed, a new one is built). Keyed by id, checked by a weak reference (configs are unhashable).
_PEERS: dict[int, tuple[weakref.ref[Config], dict[str, list[str]]]] = {}


def _peers_by_type(config: Config) -> dict[str, list[str]]:
    key = id(config)
    hit = _PEERS.get(key)
    if hit is not None and hit[0]() is config:
        return hit[1]
    by_type: dict[str, list[str]] = {}
    for t in config.targets:
        by_type.setdefault(t.type, []).append(t.name)
    _PEERS[key] = (weakref.ref(config, lambda _: _PEERS.pop(key, None)), by_type)
    return by_type


def evaluate(
    snapshot: GuardSnapshot, *, config: Config, plan: Plan, target: Target, now: float
) -> Verdict:
    """The guards' verdict on a snapshot of the store (taken by :meth:`Guards.snapshot` for
    the same config, plan, target and ``now``): the first guard that blocks, in order."""
    if snapshot.flag == "1":
        return Verdict(PAUSED, "the global kill switch is on")
    state = snapshot.target
    if state.quarantined:
        return Verdict(QUARANTINED, f"target quarantined: {state.quarantine_reason}")
    peers = blast_peers(config, target)
    if peers is not None:
        alerting = _asked(snapshot.alerting, "alerting")
        safety = config.safety
        if alerting / len(peers) > safety.blast_radius:
            return Verdict(
                BLAST_RADIUS,
                f"{alerting} of {len(peers)} {target.type} targets alerting "
                f"(limit {safety.blast_radius:.0%})",
            )
    last = snapshot.last_started
    if last is not None and now - last < plan.cooldown:
        return Verdict(COOLDOWN, f"ran {now - last:.0f}s ago; cooldown {plan.cooldown:.0f}s")
    limit = plan.max_per_window
    if limit is not None:
        count = _asked(snapshot.count_started, "count_started")
        if count >= limit.count:
            return Verdict(
                MAX_PER_WINDOW,
                f"{count} remediations in the last {limit.window:.0f}s (limit {limit.count})",
            )
    settings = config.circuit_breaker
    current = snapshot.breaker
    due = current.next_half_open(settings)
    if settings.enabled and current.state == "open" and (due is None or now < due):
        return Verdict(CIRCUIT_OPEN, "circuit breaker open")
    return ALLOWED


def _asked(value: int | None, name: str) -> int:
    if value is None:
        raise ValueError(f"the snapshot was taken without {name}")
    return value


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
    transition's events, in one transaction (remediator/store/guards.py)."""

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
