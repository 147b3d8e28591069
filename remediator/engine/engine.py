"""The engine: what the worker does with each stored alert.

For a firing alert: decide (pattern, playbook, target), then make its run
(:mod:`remediator.engine.run`): check the guards, claim the one remediation of (playbook,
fingerprint, episode), run the steps with retries and backoff behind the target's circuit
breaker, and record every step. For a resolved alert: record the recovery and its time to
recovery (:mod:`remediator.engine.recovery`). Pending retries stop as soon as the episode resolves.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

from remediator.audit import events as ev
from remediator.audit.events import Event
from remediator.clock import Clock
from remediator.config.model import Config
from remediator.engine import recovery, spans
from remediator.engine.approvals import Approvals
from remediator.engine.decisions import (
    TARGET_NOT_ALLOWED,
    TARGET_NOT_REGISTERED,
    UNKNOWN_PATTERN,
    Catalog,
    Decision,
    StrategyLike,
    decide,
)
from remediator.engine.guards import STATE_VALUE, Guards, blast_peers
from remediator.engine.run import RESOLVED, EventBuilder, Order, Runs, base_event, skip_detail
from remediator.engine.runner import StepRunner
from remediator.engine.worker import COMPLETED, worker_name
from remediator.metrics import Metrics
from remediator.store import InboxItem, Store
from remediator.store.records import INTERRUPTED, Remediation
from remediator.tracing import Tracing

log = logging.getLogger("remediator.engine")
Outcome = tuple[list[Event], str]
ESCALATE_ON_SKIP = frozenset({UNKNOWN_PATTERN, TARGET_NOT_REGISTERED, TARGET_NOT_ALLOWED})
DECIDED = "decided"
ALREADY = "already_remediated"
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
        # Decisions made for a claimed batch by prepare(), by inbox id, until process() takes
        # them (an item that is not processed here is claimed again and prepared again).
        self._prepared: dict[int, Prepared] = {}
        self.strategies = list(strategies or [])
        self.owner = owner or worker_name()
        self.lease = lease
        self.runs = Runs(
            store=store,
            metrics=metrics,
            clock=clock,
            runner=runner,
            rng=self.rng,
            owner=self.owner,
            lease=lease,
        )
        self.approvals = Approvals(runs=self.runs)
        # Spans (remediator/tracing.py): the no-op tracer unless the app sets the configured one.
        self.tracing = Tracing()
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
        self.runs.apply(config, self.guards, version)
        self.approvals.catalog = self.catalog

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
        now = self.clock.now()
        b = self.runs.builder(
            base_event(item, decision, now=now, config_version=self.config_version)
        )
        detected: list[Event] = []  # the detection comes first in the audit trail
        if decision.health_event:
            detected.append(b.event(decision.health_event, time=now, message=item.alertname))
        if not decision.runs:
            reason = decision.reason or "no_playbook"
            events = [*detected, b.skip(reason, skip_detail(decision) or reason)]
            if reason in ESCALATE_ON_SKIP:
                events.append(b.escalation(reason, skip_detail(decision)))
            if reason in (TARGET_NOT_REGISTERED, TARGET_NOT_ALLOWED):
                self.metrics.guard_blocks.labels(reason).inc()
            return events, "skipped"
        assert decision.target is not None
        lock = self.runs.lock(decision.target.name)
        if detected and lock.locked():  # the target is busy: record the detection now
            await self.store.append(detected)
            detected = []
        async with lock:
            return await self._remediate(
                item, decision, b, detected, dry_run=dry_run, prepared=prepared
            )

    async def _remediate(
        self,
        item: InboxItem,
        decision: Decision,
        b: EventBuilder,
        detected: list[Event],
        *,
        dry_run: bool,
        prepared: Prepared | None = None,
    ) -> Outcome:
        """Guard, claim and run (remediator/engine/run.py). ``detected`` (the health event, unless
        already recorded) is recorded exactly once: by the claim (``start_remediation``, which
        also marks the episode's target), or with the item's completion when no claim is
        tried. The last write of a run completes the item (the outcome is then
        :data:`~remediator.engine.worker.COMPLETED`)."""
        plan, target = decision.plan, decision.target
        assert plan is not None and target is not None
        order = Order(
            plan=plan,
            target=target,
            events=b.evolve(target=target.name, playbook=plan.name),
            episode_id=item.episode_id,
            dry=dry_run or plan.dry_run or self.config.safety.dry_run,
            labels=item.labels,
            done=(item.id, DECIDED),
        )
        b = order.events
        now = self.clock.now()
        alerting = prepared.alerting_at(self.clock.monotonic()) if prepared else None
        verdict, _ = await self.runs.check(order, now=now, alerting=alerting)
        if verdict.reason == RESOLVED:
            return [*detected, b.skip(RESOLVED, RESOLVED)], DECIDED
        spans.guards(self.tracing, verdict)
        if not verdict.allowed:
            reason = verdict.reason or ""
            events = b.blocked(reason, verdict.detail or reason)
            claimed = await self.runs.claim(
                order, now=now, events=events, detected=detected, refused=reason
            )
            if claimed is not None:
                return [], DECIDED
            return [b.skip(ALREADY, ALREADY)], DECIDED
        if plan.approval is not None and not order.dry:
            if await self.approvals.request(order, now=now, detected=detected):
                return [], DECIDED
            return [b.skip(ALREADY, ALREADY)], DECIDED
        message = f"running {plan.name} on {target.name}"
        started = b.event(ev.RECOVERY_STARTED, time=now, message=message)
        rid = await self.runs.claim(order, now=now, events=[started], detected=detected)
        if rid is None:
            rid = await self.runs.take_over(order, started)
        if rid is None:
            return [b.skip(ALREADY, ALREADY)], DECIDED
        await self.runs.execute(order, rid)
        return [], COMPLETED

    async def _resolved(self, item: InboxItem) -> Outcome:
        try:  # its open approval, if any, is cancelled now (not at the next sweep)
            await self.approvals.cancel_resolved(item.episode_id)
        except Exception:
            log.exception("cancelling the approval of a resolved alert failed")
        return recovery.record(
            item,
            episode=await self.store.episode(item.episode_id),
            catalog=self.catalog,
            now=self.clock.now(),
            config_version=self.config_version,
            metrics=self.metrics,
        )
