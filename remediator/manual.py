"""Manual runs, for ``POST /trigger``.

A manual run goes through the same path as an automatic one: the same guards (kill switch,
quarantine, blast radius, cooldown, window, circuit breaker), the same per-target lock, the same
remediation record (exactly once, with the config version), the same breaker accounting and
step runner. Differences: it is one attempt (no retries), ``force`` bypasses the cooldown and
nothing else, and every event of the run carries the caller's token name as its actor.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass, replace
from typing import Any

from pydantic import TypeAdapter, ValidationError

from remediator import events as ev
from remediator.breaker import STATE_VALUE, Transition
from remediator.config import format_errors
from remediator.decisions import Plan
from remediator.errors import CircuitOpen, ServiceNotFound
from remediator.events import Event
from remediator.guards import COOLDOWN, Verdict
from remediator.management import Conflict, Missing, ValidationFailed
from remediator.playbooks import RetrySpec
from remediator.runner import StepContext
from remediator.runtime import Runtime
from remediator.steps import STATE_CHANGING, Step, fits
from remediator.store.base import TransitionEvents
from remediator.store.records import BLOCKED, DRY_RUN, FAILED, SUCCEEDED
from remediator.targets import Target
from remediator.templates import compile_template

MANUAL_COOLDOWN = 60.0  # between two manual runs of one action on one target
MANUAL_EPISODE = 0  # manual runs belong to no alert episode
_STEP = TypeAdapter[Step](Step)


@dataclass(frozen=True, slots=True)
class RunResult:
    remediation_id: int
    fingerprint: str
    plan: Plan
    target: Target
    state: str
    ok: bool
    dry_run: bool
    forced: bool
    bypassed: list[str]
    steps: list[dict[str, Any]]
    detail: str
    config_version: int

    def as_json(self) -> dict[str, Any]:
        return {
            "remediation_id": self.remediation_id,
            "fingerprint": self.fingerprint,
            "target": self.target.name,
            "playbook": self.plan.name,
            "state": self.state,
            "ok": self.ok,
            "dry_run": self.dry_run,
            "forced": self.forced,
            "bypassed": self.bypassed,
            "steps": self.steps,
            "detail": self.detail,
            "config_version": self.config_version,
        }


def resolve(
    rt: Runtime, target: str, *, playbook: str | None, action: str | None, params: dict[str, Any]
) -> tuple[Plan, Target]:
    """The plan to run and its target; 404 for unknown names, 422 for a bad request."""
    if (playbook is None) == (action is None):
        raise ValidationFailed(["<root>: give exactly one of 'playbook' or 'action'"])
    if playbook is not None and params:
        raise ValidationFailed(["params: only with 'action'"])
    catalog = rt.engine.catalog
    found = catalog.targets.get(target)
    if found is None:
        raise ServiceNotFound(f"target {target!r} is not registered")
    if playbook is not None:
        plans = {p.name: p for p in [*catalog.plans, *catalog.pattern_plans.values()]}
        plan = plans.get(playbook)
        if plan is None:
            raise Missing("PLAYBOOK_NOT_FOUND", f"no playbook named {playbook!r}")
    else:
        assert action is not None
        if "action" in params:
            raise ValidationFailed(["params.action: give the action as 'action'"])
        try:
            step = _STEP.validate_python({**params, "action": action}, strict=True)
        except ValidationError as exc:
            tag = f"{action}."
            lines = [
                "params." + line.removeprefix(tag) if line.startswith(tag) else line
                for line in format_errors(exc)
            ]
            raise ValidationFailed(lines) from None
        plan = Plan(
            name=f"manual:{action}",
            matchers=(),
            pattern=None,
            target=compile_template(found.name),
            priority="high",
            steps=(step,),
            retry=RetrySpec(max_attempts=1),
            cooldown=MANUAL_COOLDOWN,
            max_per_window=None,
            dry_run=False,
        )
    for step in plan.steps:
        if step.action in STATE_CHANGING and not fits(step.action, found.type):
            raise ValidationFailed(
                [f"{step.action}: cannot act on a {found.type} target ({found.name})"]
            )
    return plan, found


def refusal(verdict: Verdict) -> Exception:
    """The 409 for a guard's refusal: PAUSED, COOLDOWN, CIRCUIT_OPEN, QUARANTINED, ..."""
    reason = verdict.reason or "blocked"
    if reason == "circuit_open":
        return CircuitOpen(verdict.detail or "circuit breaker open")
    return Conflict(reason.upper(), verdict.detail or reason)


def _lock(rt: Runtime, target: str) -> asyncio.Lock:
    # The engine's per-target lock, so a manual run never overlaps an automatic one.
    return rt.engine.target_lock(target)


def _transition_events(rt: Runtime, base: Event) -> TransitionEvents:
    def make(t: Transition) -> list[Event]:
        kind = {"open": ev.CIRCUIT_OPEN, "half-open": ev.CIRCUIT_HALF_OPEN}.get(
            t.changed_to or "", ev.CIRCUIT_CLOSED
        )
        return [
            replace(
                base,
                type=kind,
                time=rt.clock.now(),
                target=t.state.target,
                outcome=t.changed_to or "",
                message=f"circuit {t.changed_to} ({t.state.failures} consecutive failure(s))",
            )
        ]

    return make


def _publish(rt: Runtime, transition: Transition) -> None:
    state = transition.state
    rt.metrics.circuit_state.labels(state.target).set(STATE_VALUE[state.state])
    if transition.changed_to == "open":
        rt.metrics.circuit_trips.labels(state.target).inc()


async def trigger(
    rt: Runtime,
    plan: Plan,
    target: Target,
    *,
    actor: str,
    force: bool,
    reason: str,
    dry_run: bool,
) -> RunResult:
    """Run ``plan`` once on ``target`` now, through the guards; refusals raise a 409."""
    fingerprint = f"manual-{secrets.token_hex(8)}"
    version = rt.engine.config_version
    base = Event(
        type="",
        time=rt.clock.now(),
        severity="info",
        category="manual",
        target=target.name,
        playbook=plan.name,
        fingerprint=fingerprint,
        status="manual",
        actor=actor,
        config_version=version,
        details={"manual": True, "reason": reason, "force": force},
    )
    async with _lock(rt, target.name):
        now = rt.clock.now()
        verdict = await rt.engine.guards.check(plan=plan, target=target, now=now)
        bypassed: list[str] = []
        if force and verdict.reason == COOLDOWN:
            bypassed.append(COOLDOWN)
            verdict = await rt.engine.guards.check(
                plan=replace(plan, cooldown=0.0), target=target, now=now
            )
        if not verdict.allowed:
            skipped = replace(
                base,
                type=ev.RECOVERY_SKIPPED,
                time=now,
                outcome=verdict.reason or "",
                message=f"manual run refused: {verdict.detail}",
            )
            await rt.store.append([skipped])
            rt.metrics.guard_blocks.labels(verdict.reason or "").inc()
            raise refusal(verdict)
        base = replace(base, details={**base.details, "bypassed": bypassed})
        started = replace(
            base,
            type=ev.RECOVERY_TRIGGERED,
            time=now,
            outcome="dry_run" if dry_run else "started",
            message=f"manual run of {plan.name} on {target.name} by {actor}"
            + (f" (forced: {reason})" if force else f": {reason}" if reason else ""),
        )
        rid = await rt.store.start_remediation(
            playbook=plan.name,
            fingerprint=fingerprint,
            episode_id=MANUAL_EPISODE,
            target=target.name,
            now=now,
            config_version=version,
            events=[started],
            owner=rt.engine.owner,
            lease=rt.engine.lease,
        )
        assert rid is not None  # the fingerprint is new
        if not dry_run:
            allowed, transition = await rt.store.admit(
                target.name,
                rt.config.circuit_breaker,
                now=rt.clock.now(),
                events=_transition_events(rt, base),
            )
            _publish(rt, transition)
            if not allowed:
                blocked = replace(
                    base,
                    type=ev.RECOVERY_SKIPPED,
                    time=rt.clock.now(),
                    outcome="circuit_open",
                    message="manual run refused: circuit breaker open",
                )
                await rt.store.finish_remediation(
                    rid,
                    state=BLOCKED,
                    now=rt.clock.now(),
                    attempts=0,
                    reason="circuit_open",
                    events=[blocked],
                )
                raise CircuitOpen("circuit breaker open")
        keeper = asyncio.create_task(_keep_lease(rt, rid), name=f"lease-{rid}")
        try:
            return await _run(rt, plan, target, base, rid, dry_run=dry_run, bypassed=bypassed)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper


async def _keep_lease(rt: Runtime, rid: int) -> None:
    """Renew the run's lease, so no other replica takes it for an interrupted one."""
    engine = rt.engine
    while True:
        await asyncio.sleep(engine.lease / 3)
        with contextlib.suppress(Exception):
            await rt.store.renew_remediation(
                rid, owner=engine.owner, until=rt.clock.now() + engine.lease
            )


async def _run(
    rt: Runtime,
    plan: Plan,
    target: Target,
    base: Event,
    rid: int,
    *,
    dry_run: bool,
    bypassed: list[str],
) -> RunResult:
    ctx = StepContext(
        target=target,
        playbook=plan.name,
        dry_run=dry_run,
        base=base,
        escalate=lambda r, d: replace(
            base, type=ev.RECOVERY_ESCALATED, time=rt.clock.now(), outcome=r, message=d or r
        ),
    )
    started_at = rt.clock.now()
    result = await rt.engine.runner.run(plan.steps, ctx)
    if not dry_run:
        transition = await rt.store.report(
            target.name,
            rt.config.circuit_breaker,
            ok=result.ok,
            now=rt.clock.now(),
            events=_transition_events(rt, base),
        )
        _publish(rt, transition)
    now = rt.clock.now()
    events = list(result.events)
    state = DRY_RUN if dry_run else (SUCCEEDED if result.ok else FAILED)
    if not result.ok:
        events.append(
            replace(
                base,
                type=ev.RECOVERY_FAILED,
                time=now,
                outcome="failure",
                message=f"manual run of {plan.name} failed: {result.detail}",
            )
        )
    elif dry_run:
        events.append(
            replace(
                base,
                type=ev.RECOVERY_DRY_RUN,
                time=now,
                outcome="dry_run",
                message=f"manual run of {plan.name} on {target.name}: dry run, nothing was changed",
            )
        )
    else:
        events.append(
            replace(
                base,
                type=ev.RECOVERY_SUCCEEDED,
                time=now,
                outcome="success",
                duration=now - started_at,
                message=f"manual run of {plan.name} succeeded on {target.name}",
            )
        )
    await rt.store.finish_remediation(rid, state=state, now=now, attempts=1, events=events)
    rt.metrics.remediation_finished(plan.name, state)
    steps = [
        {"action": e.action, "outcome": e.outcome, "duration": e.duration, "message": e.message}
        for e in result.events
        if e.type == ev.RECOVERY_ACTION
    ]
    return RunResult(
        remediation_id=rid,
        fingerprint=base.fingerprint,
        plan=plan,
        target=target,
        state=state,
        ok=result.ok,
        dry_run=dry_run,
        forced=bool(base.details.get("force")),
        bypassed=bypassed,
        steps=steps,
        detail=result.detail or ("dry run" if dry_run else "all steps succeeded"),
        config_version=base.config_version,
    )
