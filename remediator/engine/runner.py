"""Running a plan's steps on one target, in order, each bounded by its timeout.

A step is an action from the registry, a verification (``verify.health``,
``verify.prometheus``), ``quarantine``, ``escalate`` or a plugin. The first failed step fails
the attempt; a failed verification counts as a failed remediation. Every step becomes one
``recovery:action`` event; what a real step reports while it runs is recorded before it, as
``recovery:progress`` events (remediator/engine/progress.py).

Following an HTTP target's failover: which of its endpoints is active.

``http.failover`` makes the target's ``backup_url`` active and ``http.failback`` its
``base_url`` again; the runner keeps the URL the switch reported as ``active_url`` in the
target's stored data (``target_state``), which every replica and a restarted remediator read.
From then on the target's health check and every other step on it use the active endpoint: they
get the target with ``base_url`` replaced by it (:func:`following`). A stored URL that is not
the configured ``backup_url`` (the configuration changed since) is ignored: the primary is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from remediator.actions.base import Action, ActionContext, ActionResult
from remediator.actions.docker import DockerPause
from remediator.actions.http import ACTIVE_URL
from remediator.audit import events as ev
from remediator.audit.events import Event, evolve
from remediator.clients import Clients
from remediator.clock import Clock
from remediator.config import steps as st
from remediator.config.promql import compile_query
from remediator.config.targets import HttpTarget, Target
from remediator.engine import spans
from remediator.engine.intents import ALREADY_DONE, Intents
from remediator.engine.progress import ProgressLog
from remediator.errors import StoreUnavailable
from remediator.metrics import Metrics
from remediator.redaction import redact, redact_text
from remediator.store import Store
from remediator.store.base import TargetStates
from remediator.store.records import StepIntent
from remediator.tracing import Tracing

log = logging.getLogger("remediator.runner")
HealthProbe = Callable[[Target], Awaitable[bool]]
PromQuery = Callable[[str], Awaitable[tuple[float, ...]]]  # one value per series returned
Escalate = Callable[[str, str], Event]  # (reason, detail) -> the escalation event
QUARANTINE_PAUSED = "quarantine_paused"  # target data: the quarantine step paused the container


@dataclass
class StepContext:
    """What the runner needs to record each step's event."""

    target: Target
    playbook: str
    dry_run: bool
    base: Event  # fingerprint, alertname, category, severity, config_version filled in
    escalate: Escalate
    # The remediation whose state-changing steps record their intent first (0: none), its
    # owner, and a previous owner's intents by step index (remediator/engine/intents.py).
    remediation: int = 0
    owner: str = ""
    inherited: dict[int, StepIntent] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)  # the alert's, for query templates
    attempt: int = 1  # the attempt these steps are part of (its span's attribute)


@dataclass
class AttemptResult:
    ok: bool
    events: list[Event] = field(default_factory=list)
    failed_step: str = ""
    detail: str = ""


class StepRunner:
    def __init__(
        self,
        *,
        actions: dict[str, Action],
        clients: Clients,
        store: Store,
        metrics: Metrics,
        clock: Clock,
        slots: asyncio.Semaphore,
        probe: HealthProbe,
        query: PromQuery | None = None,
    ) -> None:
        self.actions = actions
        self.clients = clients
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.slots = slots
        self.probe = probe
        self.query = query
        self.intents = Intents(store=store, clock=clock)
        # Spans (remediator/tracing.py): the no-op tracer unless the app sets the configured one.
        self.tracing = Tracing()

    async def run(
        self, steps: tuple[st.Step, ...], ctx: StepContext, *, offset: int = 0
    ) -> AttemptResult:
        """One attempt of ``steps``, the playbook's from index ``offset`` on (a run an approval
        resumed), in an ``attempt`` span (remediator/engine/spans.py)."""
        attributes = (
            spans.attempt(
                playbook=ctx.playbook,
                target=ctx.target.name,
                number=ctx.attempt,
                details=ctx.base.details,
            )
            if self.tracing.enabled
            else None
        )
        with self.tracing.span("attempt", attributes=attributes) as span:
            result = await self._steps(steps, ctx, offset=offset)
            span.set_attribute("outcome", "success" if result.ok else "failure")
            return result

    async def _steps(
        self, steps: tuple[st.Step, ...], ctx: StepContext, *, offset: int
    ) -> AttemptResult:
        result = AttemptResult(ok=True)
        for index, step in enumerate(steps, offset):
            started = time.monotonic()
            done = await self._already_done(step, index, ctx)
            try:
                if done is not None:
                    outcome = done
                elif ctx.dry_run and not isinstance(step, st.PluginStep):
                    # Built-in steps only describe themselves in a dry run: nothing to bound.
                    outcome = await self._one(step, ctx, result)
                else:
                    async with asyncio.timeout(step.timeout):  # no extra task, unlike wait_for
                        outcome = await self._one(step, ctx, result, index=index)
            except TimeoutError:
                outcome = ActionResult(False, f"timed out after {step.timeout:.0f}s")
            duration = time.monotonic() - started
            label = (
                "dry_run"
                if ctx.dry_run and outcome.ok
                else ("success" if outcome.ok else "failure")
            )
            if done is not None:
                label = ALREADY_DONE
            self.metrics.action_attempts.labels(ctx.playbook, step.action, label).inc()
            self.metrics.action_duration.labels(step.action).observe(
                duration, exemplar=Tracing.exemplar()
            )
            result.events.append(
                _event(
                    ctx.base,
                    ev.RECOVERY_ACTION,
                    time=self.clock.now(),
                    target=ctx.target.name,
                    playbook=ctx.playbook,
                    action=step.action,
                    outcome=label,
                    duration=duration,
                    message=redact_text(outcome.detail),
                    details={**ctx.base.details, "data": redact(outcome.data)}
                    if outcome.data
                    else ctx.base.details,
                )
            )
            if not outcome.ok:
                result.ok = False
                result.failed_step = step.action
                result.detail = outcome.detail
                break
            if step.action in st.VERIFY_ACTIONS and not ctx.dry_run:
                result.events.append(
                    _event(
                        ctx.base,
                        ev.RECOVERY_VERIFIED,
                        time=self.clock.now(),
                        target=ctx.target.name,
                        playbook=ctx.playbook,
                        action=step.action,
                        outcome="verified",
                        message=outcome.detail,
                    )
                )
        return result

    async def _already_done(
        self, step: st.Step, index: int, ctx: StepContext
    ) -> ActionResult | None:
        """For a taken-over run, at a step its previous owner began: the result if that call
        already took effect (the step is not taken again); else None."""
        intent = ctx.inherited.pop(index, None)  # the first attempt only
        action = self.actions.get(step.action) if intent is not None else None
        if intent is None or action is None or ctx.dry_run:
            return None
        return await self.intents.settle(
            action,
            ctx=ActionContext(
                target=ctx.target, step=step, clients=self.clients, labels=ctx.labels
            ),
            intent=intent,
            timeout=step.timeout,
        )

    async def _one(
        self, step: st.Step, ctx: StepContext, result: AttemptResult, *, index: int = 0
    ) -> ActionResult:
        """One step, in a ``step`` span (a verification also in a ``verify`` span inside it)."""
        with spans.step(
            self.tracing, step, target=ctx.target.name, attempt=ctx.attempt, dry_run=ctx.dry_run
        ) as outcome:
            outcome.result = await self._step(step, ctx, result, index=index)
            return outcome.result

    async def _step(
        self, step: st.Step, ctx: StepContext, result: AttemptResult, *, index: int = 0
    ) -> ActionResult:
        if isinstance(step, st.VerifyHealth):
            return await self._verify_health(step, ctx)
        if isinstance(step, st.VerifyPrometheus):
            return await self._verify_prometheus(step, ctx)
        if isinstance(step, st.Escalate):
            result.events.append(ctx.escalate(step.reason, "escalation step of the playbook"))
            return ActionResult(True, f"escalated: {step.reason}")
        if isinstance(step, st.Quarantine):
            return await self._quarantine(step, ctx, result)
        name = f"plugin:{step.plugin}" if isinstance(step, st.PluginStep) else step.action
        action = self.actions.get(name)
        if action is None:
            return ActionResult(False, f"no such action: {name}")
        if ctx.target.type not in action.target_types:
            return ActionResult(False, "wrong target type")
        # Every step but a switch acts on the endpoint a failover made active (remediator/engine/py).
        target = ctx.target
        if not getattr(action, "switches_endpoint", False):
            try:
                target = await resolve_failover(self.store, target)
            except StoreUnavailable:  # never act on an endpoint that may not be the active one
                return ActionResult(False, "store unavailable: the active endpoint is unknown")
        # A real step's progress becomes recovery:progress events as it comes (engine/progress.py).
        progress = None if ctx.dry_run else self._progress(step, ctx)
        try:
            return await self._call(
                action, step=step, ctx=ctx, target=target, name=name, index=index, progress=progress
            )
        finally:
            if progress is not None:
                await progress.close()

    def _progress(self, step: st.Step, ctx: StepContext) -> ProgressLog:
        base = evolve(ctx.base, target=ctx.target.name, playbook=ctx.playbook, action=step.action)
        return ProgressLog(store=self.store, clock=self.clock, base=base)

    async def _call(
        self,
        action: Action,
        *,
        step: st.Step,
        ctx: StepContext,
        target: Target,
        name: str,
        index: int,
        progress: ProgressLog | None,
    ) -> ActionResult:
        # A dry run touches nothing: it takes none of the max_concurrent_actions slots.
        async with self.slots if not ctx.dry_run else contextlib.nullcontext():
            call = ActionContext(
                target=target,
                step=step,
                clients=self.clients,
                dry_run=ctx.dry_run,
                labels=ctx.labels,
                now=self.clock.now(),
                progress=None if progress is None else progress.report,
            )
            if ctx.remediation and not ctx.dry_run and step.action in st.STATE_CHANGING:
                refused = await self.intents.record(
                    action, ctx=call, remediation_id=ctx.remediation, index=index, owner=ctx.owner
                )
                if refused is not None:
                    return refused
            try:
                outcome = await action.run(call)
            except Exception as exc:  # a plugin's bug must fail the step, not wedge the run
                log.exception("action raised", extra={"action": name})
                return ActionResult(False, f"action raised {type(exc).__name__}")
        if outcome.ok and not ctx.dry_run:
            await self._persist(ctx, outcome)
        return outcome

    async def _persist(self, ctx: StepContext, outcome: ActionResult) -> None:
        """Keep what the action said to keep (e.g. the URL a failover made active), so later
        steps, health checks and the API see it (remediator/engine/py)."""
        if outcome.persist:
            await self.store.update_target_data(ctx.target.name, dict(outcome.persist), [])

    async def _verify_health(self, step: st.VerifyHealth, ctx: StepContext) -> ActionResult:
        if ctx.dry_run:
            return ActionResult(True, f"dry-run: would verify health within {step.within:.0f}s")
        deadline = self.clock.monotonic() + step.within
        tries = 0
        while True:
            tries += 1
            if await self.probe(ctx.target):
                return ActionResult(True, f"healthy after {tries} check(s)")
            if self.clock.monotonic() + step.interval > deadline:
                return ActionResult(False, f"still unhealthy after {step.within:.0f}s")
            await self.clock.sleep(step.interval)

    async def _verify_prometheus(self, step: st.VerifyPrometheus, ctx: StepContext) -> ActionResult:
        if ctx.dry_run:
            return ActionResult(True, "dry-run: would verify a PromQL condition")
        if self.query is None:
            return ActionResult(
                False, "verify.prometheus needs prometheus.url in the configuration"
            )
        promql = compile_query(step.query).render(ctx.labels)
        deadline = self.clock.monotonic() + step.within
        tries = 0
        while True:
            tries += 1
            try:
                values = await self.query(promql)
            except TimeoutError as exc:  # the query's own bound (the step's surfaces outside)
                return ActionResult(False, f"query timed out: {exc}")
            except Exception as exc:
                return ActionResult(False, f"query failed: {type(exc).__name__}: {exc}"[:300])
            if step.holds(values):
                return ActionResult(
                    True, f"{step.condition()} after {tries} query(ies) ({len(values)} series)"
                )
            if self.clock.monotonic() + step.interval > deadline:
                return ActionResult(
                    False, f"{step.condition()} did not hold within {step.within:g}s"
                )
            await self.clock.sleep(step.interval)

    async def _quarantine(
        self, step: st.Quarantine, ctx: StepContext, result: AttemptResult
    ) -> ActionResult:
        if ctx.dry_run:
            return ActionResult(True, "dry-run: would quarantine the target")
        now = self.clock.now()
        event = _event(
            ctx.base,
            ev.RECOVERY_QUARANTINED,
            time=now,
            target=ctx.target.name,
            playbook=ctx.playbook,
            action="quarantine",
            outcome="success",
            message="target quarantined: no further automatic actions",
        )
        await self.store.set_quarantine(
            ctx.target.name, reason=f"playbook {ctx.playbook}", now=now, events=[event]
        )
        self.metrics.quarantined.labels(ctx.target.name).set(1)
        result.events.append(ctx.escalate("quarantined", f"{ctx.target.name} quarantined"))
        if step.pause and ctx.target.type == "docker_container":
            pause = self.actions.get("docker.pause")
            if pause is None:
                return ActionResult(False, "docker.pause is not available")
            async with self.slots:
                paused = await pause.run(
                    ActionContext(
                        target=ctx.target,
                        step=DockerPause(action="docker.pause"),
                        clients=self.clients,
                    )
                )
            if paused.ok:  # lifting the quarantine unpauses it (remediator/engine/quarantine.py)
                await self.store.update_target_data(ctx.target.name, {QUARANTINE_PAUSED: True}, [])
            return ActionResult(paused.ok, f"quarantined; {paused.detail}", paused.duration)
        return ActionResult(True, "quarantined")


def _event(base: Event, type_: str, **fields: Any) -> Event:
    return evolve(base, type=type_, **fields)


def on_backup(target: HttpTarget, data: Mapping[str, Any]) -> bool:
    """Whether the stored state says the target runs on its (still configured) backup."""
    url = data.get(ACTIVE_URL)
    return target.backup_url is not None and url == target.backup_url != target.base_url


def following_failover(target: Target, data: Mapping[str, Any]) -> Target:
    """``target`` as its checks and steps use it: on its backup, with ``base_url`` the backup."""
    if not isinstance(target, HttpTarget) or not on_backup(target, data):
        return target
    return target.model_copy(update={"base_url": target.backup_url})


async def resolve_failover(store: TargetStates, target: Target) -> Target:
    """:func:`following` with the target's stored state (read only for an HTTP target with a
    backup: no other target can be on a backup)."""
    if not isinstance(target, HttpTarget) or target.backup_url is None:
        return target
    return following_failover(target, (await store.target_state(target.name)).data)
