"""One remediation run, for an alert (the engine) and ``POST /trigger`` (:mod:`remediator.engine.manual`).

Ask the guards (:meth:`Runs.check`), claim the remediation (:meth:`Runs.claim`), then
:meth:`Runs.execute`: breaker admission, the steps (retried with backoff for an alert, once by
hand) with the lease renewed, each attempt reported to the breaker, the result and its metrics.

The events of a remediation run, built from one base event (the alert's, or a manual run's).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from remediator.audit import events as ev
from remediator.audit.events import Event, evolve
from remediator.clock import Clock, iso
from remediator.config.model import Config
from remediator.config.targets import Target
from remediator.engine import backoff
from remediator.engine.decisions import (
    TARGET_NOT_ALLOWED,
    TARGET_NOT_REGISTERED,
    UNKNOWN_PATTERN,
    Decision,
    Plan,
    sanitize,
)
from remediator.engine.guards import (
    COOLDOWN,
    ESCALATING,
    STATE_VALUE,
    CircuitBreakers,
    Guards,
    Transition,
    TransitionEvents,
    Verdict,
)
from remediator.engine.runner import AttemptResult, Escalate, StepContext, StepRunner
from remediator.engine.step_approvals import segment, where
from remediator.metrics import Metrics
from remediator.store import InboxItem, Store
from remediator.store.approvals import AWAITING_APPROVAL
from remediator.store.records import BLOCKED, DRY_RUN, FAILED, RUNNING, SUCCEEDED

_CIRCUIT = {"open": ev.CIRCUIT_OPEN, "half-open": ev.CIRCUIT_HALF_OPEN}


def base_event(item: InboxItem, decision: Decision, *, now: float, config_version: int) -> Event:
    """The base event of an alert: what every event of its run carries."""
    c = decision.classification
    return Event(
        type="",
        time=now,
        severity=c.severity,
        category=c.category,
        fingerprint=item.fingerprint,
        alertname=item.alertname,
        status=item.status,
        config_version=config_version,
        details={
            "episode": item.episode_id,
            "pattern": c.pattern_id,
            "generator_url": item.generator_url,
            "runbook_url": item.annotations.get("runbook_url", ""),
        },
    )


@dataclass(frozen=True, slots=True)
class EventBuilder:
    """Builds the events of one run from its base event, each stamped with the clock's time;
    escalations and guard refusals are also counted in the metrics."""

    base: Event
    clock: Clock
    metrics: Metrics

    def evolve(self, **fields: Any) -> EventBuilder:
        """A builder whose base event has these fields changed."""
        return replace(self, base=evolve(self.base, **fields))

    def event(self, type_: str, *, time: float | None = None, **fields: Any) -> Event:
        """An event of this type, at ``time`` (default: now)."""
        when = self.clock.now() if time is None else time
        return evolve(self.base, type=type_, time=when, **fields)

    def skip(self, reason: str, message: str) -> Event:
        details = {**self.base.details, "reason": reason}
        return self.event(ev.RECOVERY_SKIPPED, outcome=reason, message=message, details=details)

    def escalation(self, reason: str, detail: str) -> Event:
        self.metrics.escalations.labels(reason).inc()
        return self.event(
            ev.RECOVERY_ESCALATED,
            outcome=reason,
            severity=self.base.severity,
            message=detail or reason,
            details={**self.base.details, "reason": reason},
        )

    def blocked(self, reason: str, message: str) -> list[Event]:
        """A guard's refusal: the skip, and an escalation for the reasons that escalate."""
        self.metrics.guard_blocks.labels(reason).inc()
        events = [self.skip(reason, message)]
        if reason in ESCALATING:
            events.append(self.escalation(reason, message))
        return events

    def transitions(self) -> TransitionEvents:
        """The events of the target's breaker transitions (circuit:open, half-open, closed)."""

        def make(t: Transition) -> list[Event]:
            message = f"circuit {t.changed_to} ({t.state.failures} consecutive failure(s))"
            return [
                self.event(
                    _CIRCUIT.get(t.changed_to or "", ev.CIRCUIT_CLOSED),
                    target=t.state.target,
                    outcome=t.changed_to or "",
                    message=message,
                )
            ]

        return make


def skip_detail(decision: Decision) -> str:
    if decision.reason == TARGET_NOT_REGISTERED:
        return f"target {sanitize(decision.rendered_target)!r} is not registered; refused"
    if decision.reason == TARGET_NOT_ALLOWED and decision.plan and decision.plan.allowed:
        return (
            f"target {sanitize(decision.rendered_target)!r} is not on the allow-list of "
            f"{decision.plan.name!r} ({decision.plan.allowed.describe()}); refused"
        )
    if decision.reason == UNKNOWN_PATTERN:
        return "no failure pattern matched and no playbook applies; escalating instead of guessing"
    return decision.reason or ""


log = logging.getLogger("remediator.run")
RESOLVED = "resolved"  # the check's reason when the alert's episode has resolved
CIRCUIT_OPEN = "circuit_open"


@dataclass(frozen=True, slots=True)
class Order:
    """One run to make: a plan on its target, for an alert's episode or by hand."""

    plan: Plan
    target: Target
    events: EventBuilder  # its base event carries the fingerprint, target and playbook
    episode_id: int
    dry: bool
    manual: bool = False  # one attempt, no step intents, worded as a manual run
    labels: Mapping[str, str] = field(default_factory=dict)  # the alert's, for query templates
    done: tuple[int, str] | None = None  # the inbox item (and outcome) its last write completes
    resume: int | None = None  # the step an approval resumed it at (engine/step_approvals.py)

    @property
    def attempts(self) -> int:
        return 1 if self.manual else self.plan.retry.max_attempts

    @property
    def title(self) -> str:
        return f"manual run of {self.plan.name}" if self.manual else self.plan.name


@dataclass(kw_only=True)
class Runs:
    """Makes runs; one per engine, given each new configuration by :meth:`apply`."""

    store: Store
    metrics: Metrics
    clock: Clock
    runner: StepRunner
    rng: random.Random
    owner: str
    lease: float
    config: Config = field(init=False)
    guards: Guards = field(init=False)
    config_version: int = field(init=False)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def apply(self, config: Config, guards: Guards, version: int) -> None:
        """Use this configuration (and its guards) for every run from now on."""
        self.config = config
        self.guards = guards
        self.config_version = version

    def lock(self, target: str) -> asyncio.Lock:
        """The lock that serialises all work on one target (automatic and manual runs)."""
        return self._locks.setdefault(target, asyncio.Lock())

    def builder(self, base: Event) -> EventBuilder:
        return EventBuilder(base, clock=self.clock, metrics=self.metrics)

    # -- admission and claim -------------------------------------------------------------------

    async def check(
        self, order: Order, *, now: float, alerting: int | None = None, force: bool = False
    ) -> tuple[Verdict, list[str]]:
        """The guards' verdict (reason :data:`RESOLVED` once the alert's episode resolved) and
        the guards bypassed: ``force`` bypasses the cooldown and nothing else. ``alerting``: the
        blast-radius count of the alert's batch, if it still stands."""
        plan, target = order.plan, order.target
        snapshot = await self.guards.snapshot(
            plan=plan,
            target=target,
            now=now,
            episode_id=None if order.manual else order.episode_id,
            alerting=alerting,
        )
        if snapshot.episode is not None and not snapshot.episode.open:
            return Verdict(RESOLVED), []
        verdict = self.guards.verdict(snapshot, plan=plan, target=target, now=now)
        if force and verdict.reason == COOLDOWN:
            uncooled = replace(plan, cooldown=0.0)
            return self.guards.verdict(snapshot, plan=uncooled, target=target, now=now), [COOLDOWN]
        return verdict, []

    async def claim(
        self,
        order: Order,
        *,
        now: float,
        events: list[Event],
        detected: list[Event] | None = None,
        refused: str | None = None,
    ) -> int | None:
        """Record the run's remediation (BLOCKED with reason ``refused``, else running with
        this replica's lease) and its events; None if it already exists. With ``detected``
        (an alert's first claim), record those first and mark the episode's target."""
        fields: dict[str, Any] = {"owner": self.owner, "lease": self.lease}
        if refused is not None:
            fields = {"state": BLOCKED, "reason": refused}
        if detected is not None:
            fields.update(before_events=detected, mark=True)
        return await self.store.start_remediation(
            playbook=order.plan.name,
            fingerprint=order.events.base.fingerprint,
            episode_id=order.episode_id,
            target=order.target.name,
            now=now,
            config_version=self.config_version,
            events=events,
            **fields,
        )

    async def take_over(self, order: Order, started: Event) -> int | None:
        """The remediation of this alert exists. While it is running (its replica may have
        died with its inbox lease expiring before the remediation's), keep trying to take it
        over: its id once its lease expired, None once it finished."""
        while await self._running(order):
            await self.clock.sleep(self.lease / 3)
            now = self.clock.now()
            rid = await self.claim(order, now=now, events=[evolve(started, time=now)])
            if rid is not None:
                return rid
        return None

    async def _running(self, order: Order) -> bool:
        running = await self.store.remediations(target=order.target.name, state=RUNNING)
        fingerprint = order.events.base.fingerprint
        return any(
            r.playbook == order.plan.name
            and r.fingerprint == fingerprint
            and r.episode_id == order.episode_id
            for r in running
        )

    # -- the run -------------------------------------------------------------------------------

    async def execute(self, order: Order, rid: int) -> tuple[str, AttemptResult]:
        """Run the claimed remediation ``rid`` to its end: its state (BLOCKED when the breaker
        refused it) and last attempt. Its final write records it (and completes ``order.done``)."""
        if not order.dry and not await self.admit(order):
            b = order.events
            if order.manual:
                message = "manual run refused: circuit breaker open"
                events = [b.event(ev.RECOVERY_SKIPPED, outcome=CIRCUIT_OPEN, message=message)]
            else:
                events = b.blocked(CIRCUIT_OPEN, "circuit breaker open")
            await self.store.finish_remediation(
                rid,
                state=BLOCKED,
                now=self.clock.now(),
                attempts=0,
                reason=CIRCUIT_OPEN,
                events=events,
                complete_item=order.done,
            )
            return BLOCKED, AttemptResult(False, detail="circuit breaker open")
        keeper = asyncio.create_task(self._keep_lease(rid), name=f"lease-{rid}")
        try:
            return await self._attempts(order, rid)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _keep_lease(self, rid: int) -> None:
        """Renew this remediation's lease while it runs, so no other replica takes it over."""
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self.store.renew_remediation(
                    rid, owner=self.owner, until=self.clock.now() + self.lease
                )
            except Exception:
                log.warning("remediation lease not renewed", extra={"remediation": rid})

    async def _attempts(self, order: Order, rid: int) -> tuple[str, AttemptResult]:
        plan, target, b = order.plan, order.target, order.events
        # On a shared store, each state-changing step of an alert's run records its intent
        # first: a run that took the remediation over does not repeat what its owner did.
        intents = self.store.shared and not order.dry and not order.manual
        ctx = StepContext(
            target=target,
            playbook=plan.name,
            dry_run=order.dry,
            base=b.base,
            escalate=self._escalate(order),
            remediation=rid if intents else 0,
            owner=self.owner,
            inherited=await self.runner.intents.inherited(rid) if intents else {},
            labels=order.labels,
        )
        events: list[Event] = []
        started_at = self.clock.now()
        attempt = 0
        # An alert's run stops before a step that asks for approval (and pauses there)
        first, stop = segment(
            plan.steps, resume=order.resume, pauses=not (order.dry or order.manual)
        )
        if first == stop:  # its first step asks: nothing runs before the approval
            return await self._pause(order, rid, step=stop, attempts=0, events=[])
        while True:
            attempt += 1
            ctx.attempt = attempt
            result = await self.runner.run(plan.steps[first:stop], ctx, offset=first)
            events += result.events
            if not order.dry:
                await self.report(order, ok=result.ok)
            if result.ok or attempt >= order.attempts:
                break
            await self.clock.sleep(backoff.delay(plan.retry, attempt - 1, self.rng))
            episode = await self.store.episode(order.episode_id)
            if episode is not None and not episode.open:
                events.append(b.skip(RESOLVED, "stopped retrying: resolved"))
                break
            if not order.dry and not await self.admit(order):
                events += b.blocked(CIRCUIT_OPEN, "stopped retrying")
                break
        now = self.clock.now()
        if result.ok and stop < len(plan.steps):
            return await self._pause(order, rid, step=stop, attempts=attempt, events=events)
        ok, detail = result.ok, result.detail
        state = DRY_RUN if order.dry else (SUCCEEDED if ok else FAILED)
        if not ok:
            tried = "" if order.manual else f" after {attempt} attempt(s)"
            message = f"{order.title} failed{tried}: {detail}"
            events.append(b.event(ev.RECOVERY_FAILED, time=now, outcome="failure", message=message))
            if not order.manual:
                failed = await self.store.remediations(target=target.name, state=FAILED, limit=1000)
                escalation = b.escalation("remediation_failed", detail)
                failures = {**escalation.details, "failures": 1 + len(failed)}
                events.append(evolve(escalation, details=failures))
        elif order.dry:
            message = f"{order.title} on {target.name}: dry run, nothing was changed"
            events.append(
                b.event(ev.RECOVERY_DRY_RUN, time=now, outcome="dry_run", message=message)
            )
        else:
            which = "" if order.manual else f" (attempt {attempt})"
            events.append(
                b.event(
                    ev.RECOVERY_SUCCEEDED,
                    time=now,
                    outcome="success",
                    duration=now - started_at,
                    message=f"{order.title} succeeded on {target.name}{which}",
                )
            )
        await self.store.finish_remediation(
            rid, state=state, now=now, attempts=attempt, events=events, complete_item=order.done
        )
        self.metrics.remediation_finished(plan.name, state)
        return state, result

    async def _pause(
        self, order: Order, rid: int, *, step: int, attempts: int, events: list[Event]
    ) -> tuple[str, AttemptResult]:
        """The steps before ``step`` are done: wait for its approval (state
        ``awaiting_approval``, remediator/engine/step_approvals.py)."""
        plan, b, now = order.plan, order.events, self.clock.now()
        spec = plan.steps[step].approval
        assert spec is not None
        expires, named = now + spec.ttl, where(plan.steps, step)
        requested = b.event(
            ev.APPROVAL_REQUESTED,
            time=now,
            outcome=AWAITING_APPROVAL,
            action=plan.steps[step].action,
            message=f"{plan.name} on {order.target.name} awaits approval of {named} by "
            f"{', '.join(spec.asked())} until {iso(expires)}",
            details={**b.base.details, "expires_at": expires, "on_expiry": spec.on_expiry,
                     "step": step},
        )  # fmt: skip
        asked = await self.store.pause_for_approval(
            rid,
            step=step,
            now=now,
            ttl=spec.ttl,
            attempts=attempts,
            events=[*events, requested],
            complete_item=order.done,
            details={"alertname": b.base.alertname, "severity": b.base.severity,
                     "action": plan.steps[step].action},
        )  # fmt: skip
        if asked is None:  # no longer running here (taken over): its new owner asks
            log.warning("remediation not paused", extra={"remediation": rid, "step": step})
        return AWAITING_APPROVAL, AttemptResult(True, detail=f"awaiting approval of {named}")

    def _escalate(self, order: Order) -> Escalate:
        """The escalation of an ``escalate`` or ``quarantine`` step."""
        b = order.events
        if order.manual:
            return lambda r, d: b.event(ev.RECOVERY_ESCALATED, outcome=r, message=d or r)
        return b.escalation

    # -- the target's circuit breaker ----------------------------------------------------------

    async def admit(self, order: Order) -> bool:
        allowed, transition = await CircuitBreakers(self.store).admit(
            order.target.name,
            self.config.circuit_breaker,
            now=self.clock.now(),
            events=order.events.transitions(),
        )
        self._publish(transition)
        return allowed

    async def report(self, order: Order, *, ok: bool) -> None:
        transition = await CircuitBreakers(self.store).report(
            order.target.name,
            self.config.circuit_breaker,
            ok=ok,
            now=self.clock.now(),
            events=order.events.transitions(),
        )
        self._publish(transition)

    def _publish(self, transition: Transition | None) -> None:
        if transition is None:
            return
        state = transition.state
        self.metrics.circuit_state.labels(state.target).set(STATE_VALUE[state.state])
        if transition.changed_to == "open":
            self.metrics.circuit_trips.labels(state.target).inc()
