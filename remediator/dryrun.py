"""Dry runs, for ``POST /test``: decide, ask the guards, report. Only reads.

For an Alertmanager payload, each alert gets the decision the worker would make
(:func:`remediator.decisions.decide`, as ``remediator simulate`` prints it) and, when a playbook
would run, the guards' verdict now and the target's breaker. For a target and a playbook or
action, the same verdict for what ``POST /trigger`` would run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from remediator.alerts import Alert
from remediator.breaker import BreakerState
from remediator.clock import Clock
from remediator.decisions import Catalog, Decision, Plan, decide, step_json
from remediator.guards import Guards
from remediator.store import Store
from remediator.targets import Target


@dataclass(frozen=True, slots=True)
class DryRun:
    """What a dry run reads: the decisions' catalog, the guards, the store (for the breakers)
    and the clock; ``breaker`` shows a target's breaker state as the API does."""

    catalog: Catalog
    guards: Guards
    store: Store
    clock: Clock
    breaker: Callable[[BreakerState], dict[str, Any]]

    async def _guards(self, plan: Plan, target: Target) -> dict[str, Any]:
        verdict = await self.guards.check(plan=plan, target=target, now=self.clock.now())
        breaker = await self.store.breaker(target.name)
        return {
            "guards": {
                "allowed": verdict.allowed,
                "reason": verdict.reason,
                "detail": verdict.detail,
            },
            "breaker": self.breaker(breaker),
            "would_run": verdict.allowed,
        }

    async def trace_decision(self, decision: Decision) -> dict[str, Any]:
        """What the worker would do with one alert now: the decision and the guards' verdict."""
        out = decision.as_json()
        out.update({"guards": None, "breaker": None, "would_run": False})
        if decision.runs and decision.plan is not None and decision.target is not None:
            out.update(await self._guards(decision.plan, decision.target))
        return out

    async def trace_alerts(self, alerts: list[Alert]) -> list[dict[str, Any]]:
        traces = []
        for alert in alerts:
            decision = decide(
                self.catalog,
                fingerprint=alert.fingerprint,
                status=alert.status,
                labels=alert.labels,
                annotations=alert.annotations,
            )
            traces.append(await self.trace_decision(decision))
        return traces

    async def trace_target(self, plan: Plan, target: Target) -> dict[str, Any]:
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
            "steps": [step_json(s) for s in plan.steps],
            "dry_run": plan.dry_run,
            "runs": True,
            "reason": None,
            "rendered_target": None,
        }
        out.update(await self._guards(plan, target))
        return out
