"""The engine: what the worker does with each stored alert.

For a firing alert: decide (pattern, playbook, target), check the guards, claim the one
remediation of (playbook, fingerprint, episode), run the steps with retries and backoff behind
the target's circuit breaker, and record every step. For a resolved alert: record the recovery
and its time to recovery. Pending retries stop as soon as the episode resolves.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import Sequence

from remediator import backoff, recovery
from remediator import events as ev
from remediator.breaker import STATE_VALUE, Transition
from remediator.clock import Clock
from remediator.config import Config
from remediator.decisions import (
    TARGET_NOT_REGISTERED,
    UNKNOWN_PATTERN,
    Catalog,
    Decision,
    StrategyLike,
    decide,
)
from remediator.events import Event, evolve
from remediator.guards import ESCALATING, Guards
from remediator.metrics import Metrics
from remediator.runner import StepContext, StepRunner
from remediator.store import InboxItem, Store
from remediator.store.base import TransitionEvents
from remediator.store.records import BLOCKED, DRY_RUN, FAILED, RUNNING, SUCCEEDED, Remediation
from remediator.targets import Target
from remediator.worker import COMPLETED, worker_name

log = logging.getLogger("remediator.engine")
Outcome = tuple[list[Event], str]
ESCALATE_ON_SKIP = frozenset({UNKNOWN_PATTERN, TARGET_NOT_REGISTERED})
DECIDED = "decided"


class Engine:
    def __init__(
        self,
        *,
        config: Config,
        store: Store,
        metrics: Metrics,
        clock: Clock,
        runner: StepRunner,
        config_version: int = 1,
        rng: random.Random | None = None,
        strategies: Sequence[StrategyLike] | None = None,
        owner: str = "",
        lease: float = 60.0,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.runner = runner
        self.rng = rng or random.Random()
        self._locks: dict[str, asyncio.Lock] = {}
        self.strategies = list(strategies or [])
        self.owner = owner or worker_name()
        self.lease = lease
        self.apply(config, config_version)

    def apply(self, config: Config, version: int) -> None:
        """Use a new configuration for every decision from now on."""
        self.config = config
        self.config_version = version
        self.catalog = Catalog.from_config(config, self.strategies)
        self.metrics.prepare(
            targets=[t.name for t in config.targets],
            plans={p.name: [s.action for s in p.steps] for p in self.catalog.plans},
            categories=sorted({p.category for p in self.catalog.classifier.specs} | {"unknown"}),
        )
        self.guards = Guards(config=config, store=self.store)

    def target_lock(self, name: str) -> asyncio.Lock:
        """The lock that serialises all work on one target (automatic and manual runs)."""
        return self._locks.setdefault(name, asyncio.Lock())

    # -- start-up ------------------------------------------------------------------------------

    async def startup(self) -> None:
        """Record interrupted runs, register new targets, publish breaker states."""
        now = self.clock.now()

        def interrupted(r: Remediation) -> list[Event]:
            return [
                Event(
                    type=ev.RECOVERY_FAILED,
                    time=now,
                    target=r.target,
                    playbook=r.playbook,
                    fingerprint=r.fingerprint,
                    outcome="interrupted",
                    message="remediation interrupted by a restart; not repeated",
                    config_version=self.config_version,
                )
            ]

        found = await self.store.interrupt_running(
            now=now, events_for=interrupted, expired_only=self.store.shared
        )
        for r in found:
            log.warning(
                "remediation interrupted", extra={"playbook": r.playbook, "target": r.target}
            )
        await self.store.register_targets(
            [t.name for t in self.config.targets],
            now=now,
            events_for=lambda name: [
                Event(
                    type=ev.SERVICE_REGISTERED,
                    time=now,
                    target=name,
                    message=f"target {name} registered",
                    config_version=self.config_version,
                )
            ],
        )
        known = {state.target: state for state in await self.store.breakers()}
        for target in self.config.targets:
            state = known.get(target.name)
            value = STATE_VALUE[state.state] if state is not None else 0
            self.metrics.circuit_state.labels(target.name).set(value)

    # -- per batch and per item ----------------------------------------------------------------

    async def prepare(self, items: list[InboxItem]) -> None:
        """Mark the target of every firing alert of a claimed batch before acting on any, so
        the blast-radius guard sees a storm as a whole."""
        pairs = []
        for item in items:
            if item.status != "firing":
                continue
            decision = decide(
                self.catalog,
                fingerprint=item.fingerprint,
                status=item.status,
                labels=item.labels,
                annotations=item.annotations,
            )
            if decision.runs and decision.target is not None:
                pairs.append((item.episode_id, decision.target.name))
        if pairs:
            await self.store.mark_targets(pairs)

    async def process(self, item: InboxItem, *, dry_run: bool = False) -> Outcome:
        if item.status != "firing":
            return await self._resolved(item)
        decision = decide(
            self.catalog,
            fingerprint=item.fingerprint,
            status=item.status,
            labels=item.labels,
            annotations=item.annotations,
        )
        base = self.base_event(item, decision)
        detected: list[Event] = []  # the detection comes first in the audit trail
        if decision.health_event:
            detected.append(evolve(base, type=decision.health_event, message=item.alertname))
        if not decision.runs:
            reason = decision.reason or "no_playbook"
            events = [*detected, self._skip(base, reason, decision)]
            if reason in ESCALATE_ON_SKIP:
                events.append(self._escalation(base, reason, _skip_detail(decision)))
            if reason == TARGET_NOT_REGISTERED:
                self.metrics.guard_blocks.labels(reason).inc()
            return events, "skipped"
        assert decision.target is not None
        lock = self.target_lock(decision.target.name)
        if detected and lock.locked():  # the target is busy: record the detection now
            await self.store.append(detected)
            detected = []
        async with lock:
            return await self._remediate(item, decision, base, detected, dry_run=dry_run)

    async def _remediate(
        self,
        item: InboxItem,
        decision: Decision,
        base: Event,
        detected: list[Event],
        *,
        dry_run: bool,
    ) -> Outcome:
        """Guard, claim and run. ``detected`` (the health event, unless already recorded) is
        recorded exactly once: by the claim (``start_remediation``, which also marks the
        episode's target), or with the item's completion when no claim is tried. The last write
        of a run completes the item (the outcome is then :data:`~remediator.worker.COMPLETED`)."""
        plan, target = decision.plan, decision.target
        assert plan is not None and target is not None
        base = evolve(base, target=target.name, playbook=plan.name)
        dry = dry_run or plan.dry_run or self.config.safety.dry_run
        now = self.clock.now()
        snapshot = await self.guards.snapshot(
            plan=plan, target=target, now=now, episode_id=item.episode_id
        )
        if snapshot.episode is not None and not snapshot.episode.open:
            return [*detected, self._skip(base, "resolved", decision)], DECIDED
        verdict = self.guards.verdict(snapshot, plan=plan, target=target, now=now)
        claim = functools.partial(
            self.store.start_remediation,
            playbook=plan.name,
            fingerprint=item.fingerprint,
            episode_id=item.episode_id,
            target=target.name,
            now=now,
            config_version=self.config_version,
            before_events=detected,
            mark=True,
        )
        if not verdict.allowed:
            reason = verdict.reason or ""
            events = self._blocked(base, reason, decision, verdict.detail)
            claimed = await claim(state=BLOCKED, reason=reason, events=events)
            if claimed is not None:
                return [], DECIDED
            return [self._skip(base, "already_remediated", decision)], DECIDED
        started = evolve(
            base, type="recovery:started", time=now, message=f"running {plan.name} on {target.name}"
        )
        rid = await claim(events=[started], owner=self.owner, lease=self.lease)
        if rid is None:
            rid = await self._take_over(item, plan.name, target.name, started)
        if rid is None:
            return [self._skip(base, "already_remediated", decision)], DECIDED
        done = (item.id, DECIDED)
        if not dry and not await self._admit(target, base):
            events = self._blocked(base, "circuit_open", decision, "circuit breaker open")
            await self.store.finish_remediation(
                rid,
                state=BLOCKED,
                now=self.clock.now(),
                attempts=0,
                reason="circuit_open",
                events=events,
                complete_item=done,
            )
            return [], COMPLETED
        keeper = asyncio.create_task(self._keep_lease(rid), name=f"lease-{rid}")
        try:
            await self._attempts(item, decision, base, rid, dry=dry, done=done)
            return [], COMPLETED
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _take_over(
        self, item: InboxItem, playbook: str, target: str, started: Event
    ) -> int | None:
        """The remediation of this item exists. While it is running (its replica may have
        died with its inbox lease expiring before the remediation's), keep trying to take it
        over: its id once its lease expired, None once it finished."""
        while await self._running(item, playbook, target):
            await self.clock.sleep(self.lease / 3)
            now = self.clock.now()
            rid = await self.store.start_remediation(
                playbook=playbook,
                fingerprint=item.fingerprint,
                episode_id=item.episode_id,
                target=target,
                now=now,
                config_version=self.config_version,
                events=[evolve(started, time=now)],
                owner=self.owner,
                lease=self.lease,
            )
            if rid is not None:
                return rid
        return None

    async def _running(self, item: InboxItem, playbook: str, target: str) -> bool:
        running = await self.store.remediations(target=target, state=RUNNING)
        return any(
            r.playbook == playbook
            and r.fingerprint == item.fingerprint
            and r.episode_id == item.episode_id
            for r in running
        )

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

    def _blocked(self, base: Event, reason: str, decision: Decision, detail: str) -> list[Event]:
        self.metrics.guard_blocks.labels(reason).inc()
        events = [self._skip(base, reason, decision, detail)]
        if reason in ESCALATING:
            events.append(self._escalation(base, reason, detail))
        return events

    async def _admit(self, target: Target, base: Event) -> bool:
        allowed, transition = await self.store.admit(
            target.name,
            self.config.circuit_breaker,
            now=self.clock.now(),
            events=self._transition_events(base),
        )
        self._publish_breaker(transition)
        return allowed

    async def _attempts(
        self,
        item: InboxItem,
        decision: Decision,
        base: Event,
        rid: int,
        *,
        dry: bool,
        done: tuple[int, str],
    ) -> None:
        """Run the steps with retries; the final write records the result, completes ``done``."""
        plan, target = decision.plan, decision.target
        assert plan is not None and target is not None
        ctx = StepContext(
            target=target,
            playbook=plan.name,
            dry_run=dry,
            base=base,
            escalate=lambda r, d: self._escalation(base, r, d),
        )
        events: list[Event] = []
        started_at = self.clock.now()
        attempt = 0
        ok = False
        detail = ""
        while True:
            attempt += 1
            result = await self.runner.run(plan.steps, ctx)
            events += result.events
            ok, detail = result.ok, result.detail
            if not dry:
                await self._report(target, ok=ok, base=base)
            if ok or attempt >= plan.retry.max_attempts:
                break
            await self.clock.sleep(backoff.delay(plan.retry, attempt - 1, self.rng))
            episode = await self.store.episode(item.episode_id)
            if episode is not None and not episode.open:
                events.append(self._skip(base, "resolved", decision, "stopped retrying: resolved"))
                break
            if not dry and not await self._admit(target, base):
                events += self._blocked(base, "circuit_open", decision, "stopped retrying")
                break
        now = self.clock.now()
        state = DRY_RUN if dry else (SUCCEEDED if ok else FAILED)
        if not ok:
            events.append(
                evolve(
                    base,
                    type=ev.RECOVERY_FAILED,
                    time=now,
                    outcome="failure",
                    message=f"{plan.name} failed after {attempt} attempt(s): {detail}",
                )
            )
            failures = 1 + len(
                await self.store.remediations(target=target.name, state=FAILED, limit=1000)
            )
            escalation = self._escalation(base, "remediation_failed", detail)
            events.append(evolve(escalation, details={**escalation.details, "failures": failures}))
        elif dry:
            events.append(
                evolve(
                    base,
                    type="recovery:dry_run",
                    time=now,
                    outcome="dry_run",
                    message=f"{plan.name} on {target.name}: dry run, nothing was changed",
                )
            )
        else:
            events.append(
                evolve(
                    base,
                    type=ev.RECOVERY_SUCCEEDED,
                    time=now,
                    outcome="success",
                    duration=now - started_at,
                    message=f"{plan.name} succeeded on {target.name} (attempt {attempt})",
                )
            )
        await self.store.finish_remediation(
            rid, state=state, now=now, attempts=attempt, events=events, complete_item=done
        )

    async def _report(self, target: Target, *, ok: bool, base: Event) -> None:
        transition = await self.store.report(
            target.name,
            self.config.circuit_breaker,
            ok=ok,
            now=self.clock.now(),
            events=self._transition_events(base),
        )
        self._publish_breaker(transition)

    def _publish_breaker(self, transition: Transition | None) -> None:
        if transition is None:
            return
        state = transition.state
        self.metrics.circuit_state.labels(state.target).set(STATE_VALUE[state.state])
        if transition.changed_to == "open":
            self.metrics.circuit_trips.labels(state.target).inc()

    def _transition_events(self, base: Event) -> TransitionEvents:
        def make(t: Transition) -> list[Event]:
            kind = {
                "open": ev.CIRCUIT_OPEN,
                "half-open": ev.CIRCUIT_HALF_OPEN,
                "closed": ev.CIRCUIT_CLOSED,
            }[t.changed_to or "closed"]
            message = f"circuit {t.changed_to} ({t.state.failures} consecutive failure(s))"
            return [
                evolve(
                    base,
                    type=kind,
                    time=self.clock.now(),
                    target=t.state.target,
                    outcome=t.changed_to or "",
                    message=message,
                )
            ]

        return make

    async def _resolved(self, item: InboxItem) -> Outcome:
        return await recovery.record(self, item)

    # -- events --------------------------------------------------------------------------------

    def base_event(self, item: InboxItem, decision: Decision) -> Event:
        c = decision.classification
        return Event(
            type="",
            time=self.clock.now(),
            severity=c.severity,
            category=c.category,
            fingerprint=item.fingerprint,
            alertname=item.alertname,
            status=item.status,
            config_version=self.config_version,
            details={
                "episode": item.episode_id,
                "pattern": c.pattern_id,
                "generator_url": item.generator_url,
                "runbook_url": item.annotations.get("runbook_url", ""),
            },
        )

    def _skip(self, base: Event, reason: str, decision: Decision, detail: str = "") -> Event:
        message = detail or _skip_detail(decision) or reason
        return evolve(
            base,
            type=ev.RECOVERY_SKIPPED,
            time=self.clock.now(),
            outcome=reason,
            message=message,
            details={**base.details, "reason": reason},
        )

    def _escalation(self, base: Event, reason: str, detail: str) -> Event:
        self.metrics.escalations.labels(reason).inc()
        return evolve(
            base,
            type=ev.RECOVERY_ESCALATED,
            time=self.clock.now(),
            outcome=reason,
            severity=base.severity,
            message=detail or reason,
            details={**base.details, "reason": reason},
        )


def _skip_detail(decision: Decision) -> str:
    if decision.reason == TARGET_NOT_REGISTERED:
        from remediator.decisions import sanitize

        return f"target {sanitize(decision.rendered_target)!r} is not registered; refused"
    if decision.reason == UNKNOWN_PATTERN:
        return "no failure pattern matched and no playbook applies; escalating instead of guessing"
    return decision.reason or ""
