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
from dataclasses import dataclass

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
from remediator.engine_events import EngineEvents, skip_detail
from remediator.events import Event, evolve
from remediator.guards import ESCALATING, Guards, blast_peers
from remediator.metrics import Metrics
from remediator.runner import StepContext, StepRunner
from remediator.store import InboxItem, Store
from remediator.store.records import (
    BLOCKED,
    DRY_RUN,
    FAILED,
    INTERRUPTED,
    RUNNING,
    SUCCEEDED,
    Remediation,
)
from remediator.targets import Target
from remediator.worker import COMPLETED, worker_name

log = logging.getLogger("remediator.engine")
Outcome = tuple[list[Event], str]
ESCALATE_ON_SKIP = frozenset({UNKNOWN_PATTERN, TARGET_NOT_REGISTERED})
DECIDED = "decided"
PREPARED_FOR = 1.0  # seconds a batch's blast-radius count stands for its alerts


@dataclass(frozen=True, slots=True)
class Prepared:
    """What :meth:`Engine.prepare` worked out for one alert of a claimed batch."""

    catalog: Catalog
    decision: Decision
    alerting: int | None  # the blast-radius count of its target's type (None: not counted)
    at: float  # monotonic time of the count

    def alerting_at(self, monotonic: float) -> int | None:
        """The blast-radius count while it stands (PREPARED_FOR), else None: read it anew."""
        return self.alerting if monotonic - self.at < PREPARED_FOR else None


class Engine(EngineEvents):
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
        # Decisions made for a claimed batch by prepare(), by inbox id, until process() takes
        # them (an item that is not processed here is claimed again and prepared again).
        self._prepared: dict[int, Prepared] = {}
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
            self.metrics.remediation_finished(r.playbook, INTERRUPTED)
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
        decided: dict[int, Decision] = {}
        pairs = []
        for item in items:
            if item.status != "firing":
                continue
            decision = decided[item.id] = self._decide(item)[0]
            if decision.runs and decision.target is not None:
                pairs.append((item.episode_id, decision.target.name))
        if pairs:
            await self.store.mark_targets(pairs)
        # The blast-radius count of each target type, once for the batch, now that its
        # targets are marked: what every alert of the batch would read.
        counts: dict[str, int] = {}
        for decision in decided.values():
            if decision.runs and decision.target is not None:
                peers = blast_peers(self.config, decision.target)
                if peers is not None and decision.target.type not in counts:
                    counts[decision.target.type] = await self.store.alerting_targets(peers)
        at = self.clock.monotonic()
        for item_id, decision in decided.items():  # process() takes each once
            kind = decision.target.type if decision.target is not None else ""
            self._prepared[item_id] = Prepared(self.catalog, decision, counts.get(kind), at)

    def _decide(self, item: InboxItem) -> tuple[Decision, Prepared | None]:
        """The decision for a firing alert: the one its batch was prepared with (with its
        blast-radius count) if made with this configuration, else a new one."""
        ready = self._prepared.pop(item.id, None)
        if ready is not None and ready.catalog is self.catalog:
            return ready.decision, ready
        return decide(
            self.catalog,
            fingerprint=item.fingerprint,
            status=item.status,
            labels=item.labels,
            annotations=item.annotations,
        ), None

    async def process(self, item: InboxItem, *, dry_run: bool = False) -> Outcome:
        if item.status != "firing":
            return await self._resolved(item)
        decision, prepared = self._decide(item)
        base = self.base_event(item, decision)
        detected: list[Event] = []  # the detection comes first in the audit trail
        if decision.health_event:
            detected.append(evolve(base, type=decision.health_event, message=item.alertname))
        if not decision.runs:
            reason = decision.reason or "no_playbook"
            events = [*detected, self._skip(base, reason, decision)]
            if reason in ESCALATE_ON_SKIP:
                events.append(self._escalation(base, reason, skip_detail(decision)))
            if reason == TARGET_NOT_REGISTERED:
                self.metrics.guard_blocks.labels(reason).inc()
            return events, "skipped"
        assert decision.target is not None
        lock = self.target_lock(decision.target.name)
        if detected and lock.locked():  # the target is busy: record the detection now
            await self.store.append(detected)
            detected = []
        async with lock:
            return await self._remediate(
                item, decision, base, detected, dry_run=dry_run, prepared=prepared
            )

    async def _remediate(
        self,
        item: InboxItem,
        decision: Decision,
        base: Event,
        detected: list[Event],
        *,
        dry_run: bool,
        prepared: Prepared | None = None,
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
            plan=plan,
            target=target,
            now=now,
            episode_id=item.episode_id,
            alerting=prepared.alerting_at(self.clock.monotonic()) if prepared else None,
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
            base,
            type=ev.RECOVERY_STARTED,
            time=now,
            message=f"running {plan.name} on {target.name}",
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
        # On a shared store, each state-changing step records its intent first, and a run
        # that took the remediation over does not repeat what its dead owner already did.
        intents = self.store.shared and not dry
        ctx = StepContext(
            target=target,
            playbook=plan.name,
            dry_run=dry,
            base=base,
            escalate=lambda r, d: self._escalation(base, r, d),
            remediation=rid if intents else 0,
            owner=self.owner,
            inherited=await self.runner.intents.inherited(rid) if intents else {},
            labels=item.labels,
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
                    type=ev.RECOVERY_DRY_RUN,
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
        self.metrics.remediation_finished(plan.name, state)

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

    async def _resolved(self, item: InboxItem) -> Outcome:
        return await recovery.record(self, item)
