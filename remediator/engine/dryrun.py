"""Dry runs, for ``POST /test``: decide, ask the guards, report. Only reads.

For an Alertmanager payload, each alert gets the decision the worker would make
(:func:`remediator.engine.decisions.decide`, as ``remediator simulate`` prints it) and, when a playbook
would run, the guards' verdict now and the target's breaker. For a target and a playbook or
action, the same verdict for what ``POST /trigger`` would run. It reads through the
engine's :class:`~remediator.engine.run.Runs` (its guards, store, clock and configuration).
"""

from __future__ import annotations

from typing import Any

from remediator.alerts import Alert
from remediator.config.targets import Target
from remediator.engine.decisions import (
    Catalog,
    Decision,
    Plan,
    approval_json,
    decide,
    step_json,
)
from remediator.engine.guards import breaker_json
from remediator.engine.run import Runs


async def _guards(runs: Runs, plan: Plan, target: Target) -> dict[str, Any]:
    verdict = await runs.guards.check(plan=plan, target=target, now=runs.clock.now())
    breaker = await runs.store.breaker(target.name)
    out: dict[str, Any] = {
        "guards": {"allowed": verdict.allowed, "reason": verdict.reason, "detail": verdict.detail},
        "breaker": breaker_json(breaker, runs.config.circuit_breaker),
        "would_run": verdict.allowed,
    }
    if runs.config.safety.dry_run:  # everything only says what it would do: nobody is asked
        out["approval"] = None
    return out


async def trace_decision(runs: Runs, decision: Decision) -> dict[str, Any]:
    """What the worker would do with one alert now: the decision and the guards' verdict."""
    out = decision.as_json()
    out.update({"guards": None, "breaker": None, "would_run": False})
    if decision.runs and decision.plan is not None and decision.target is not None:
        out.update(await _guards(runs, decision.plan, decision.target))
    return out


async def trace_alerts(runs: Runs, catalog: Catalog, alerts: list[Alert]) -> list[dict[str, Any]]:
    traces = []
    for alert in alerts:
        decision = decide(
            catalog,
            fingerprint=alert.fingerprint,
            status=alert.status,
            labels=alert.labels,
            annotations=alert.annotations,
        )
        traces.append(await trace_decision(runs, decision))
    return traces


async def trace_target(runs: Runs, plan: Plan, target: Target) -> dict[str, Any]:
    """What ``POST /trigger`` would do with this plan and target now."""
    out: dict[str, Any] = {
        "fingerprint": "",
        "alertname": "",
        "status": "manual",
        "pattern": plan.pattern,
        "category": "manual",
        "severity": "info",
        "playbook": plan.name,
        "priority": plan.priority,
        "target": target.name,
        "target_type": target.type,
        "steps": [step_json(s, asks=not plan.dry_run) for s in plan.steps],
        "dry_run": plan.dry_run,
        "runs": True,
        "reason": None,
        "rendered_target": None,
        "approval": None if plan.dry_run else approval_json(plan.approval),
    }
    out.update(await _guards(runs, plan, target))
    return out
