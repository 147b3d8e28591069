"""Manual runs, for ``POST /trigger``.

A manual run is the same run as an automatic one (:mod:`remediator.engine.run`): the same guards (kill switch,
quarantine, blast radius, cooldown, window, circuit breaker), the same per-target lock, the same
remediation record (exactly once, with the config version), the same breaker accounting and
step runner. Differences: it is one attempt (no retries), ``force`` bypasses the cooldown and
nothing else, and every event of the run carries the caller's token name as its actor.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from typing import Any

from pydantic import TypeAdapter, ValidationError

from remediator.audit import events as ev
from remediator.audit.events import Event
from remediator.config.playbooks import RetrySpec
from remediator.config.problems import format_errors
from remediator.config.steps import STATE_CHANGING, Step, compile_template, fits
from remediator.config.targets import Target
from remediator.engine.decisions import Catalog, Plan
from remediator.engine.guards import Verdict
from remediator.engine.run import Order, Runs
from remediator.errors import CircuitOpen, Conflict, Missing, ServiceNotFound, ValidationFailed
from remediator.store.records import BLOCKED

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
    catalog: Catalog,
    target: str,
    *,
    playbook: str | None,
    action: str | None,
    params: dict[str, Any],
) -> tuple[Plan, Target]:
    """The plan to run and its target; 404 for unknown names, 422 for a bad request."""
    if (playbook is None) == (action is None):
        raise ValidationFailed(["<root>: give exactly one of 'playbook' or 'action'"])
    if playbook is not None and params:
        raise ValidationFailed(["params: only with 'action'"])
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
    if plan.allowed is not None and not plan.allowed.allows(found.name, found.labels):
        raise ValidationFailed(
            [f"target: {found.name!r} is not on the allow-list of {plan.name!r} "
             f"({plan.allowed.describe()})"]
        )  # fmt: skip
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


async def trigger(
    runs: Runs,
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
    base = Event(
        type="",
        time=runs.clock.now(),
        severity="info",
        category="manual",
        target=target.name,
        playbook=plan.name,
        fingerprint=fingerprint,
        status="manual",
        actor=actor,
        config_version=runs.config_version,
        details={"manual": True, "reason": reason, "force": force},
    )
    order = Order(
        plan=plan,
        target=target,
        events=runs.builder(base),
        episode_id=MANUAL_EPISODE,
        dry=dry_run,
        manual=True,
    )
    async with runs.lock(target.name):
        now = runs.clock.now()
        verdict, bypassed = await runs.check(order, now=now, force=force)
        if not verdict.allowed:
            skipped = order.events.event(
                ev.RECOVERY_SKIPPED,
                time=now,
                outcome=verdict.reason or "",
                message=f"manual run refused: {verdict.detail}",
            )
            await runs.store.append([skipped])
            runs.metrics.guard_blocks.labels(verdict.reason or "").inc()
            raise refusal(verdict)
        b = order.events.evolve(details={**base.details, "bypassed": bypassed})
        order = replace(order, events=b)
        started = b.event(
            ev.RECOVERY_TRIGGERED,
            time=now,
            outcome="dry_run" if dry_run else "started",
            message=f"manual run of {plan.name} on {target.name} by {actor}"
            + (f" (forced: {reason})" if force else f": {reason}" if reason else ""),
        )
        rid = await runs.claim(order, now=now, events=[started])
        assert rid is not None  # the fingerprint is new
        state, result = await runs.execute(order, rid)
    if state == BLOCKED:
        raise CircuitOpen("circuit breaker open")
    return RunResult(
        remediation_id=rid,
        fingerprint=fingerprint,
        plan=plan,
        target=target,
        state=state,
        ok=result.ok,
        dry_run=dry_run,
        forced=force,
        bypassed=bypassed,
        steps=[
            {"action": e.action, "outcome": e.outcome, "duration": e.duration, "message": e.message}
            for e in result.events
            if e.type == ev.RECOVERY_ACTION
        ],
        detail=result.detail or ("dry run" if dry_run else "all steps succeeded"),
        config_version=base.config_version,
    )
