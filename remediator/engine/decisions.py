"""Deciding what to do about one alert: classify, pick a playbook, resolve its target.

Pure: no I/O, no clock. The worker, ``remediator simulate`` and the API's dry-run all call
:func:`decide` with the same :class:`Catalog`, so what a simulation prints is what the worker
would do (before the stateful guards: breaker, cooldown, windows, blast radius, pause).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from remediator.audit import events as ev
from remediator.config.approvals import ApprovalSpec
from remediator.config.document import redact_document
from remediator.config.model import Config
from remediator.config.patterns import (
    Classification,
    Classifier,
    Matcher,
    all_match,
    effective_patterns,
)
from remediator.config.playbooks import PRIORITY_RANK, PlaybookSpec, RetrySpec, WindowLimit
from remediator.config.selectors import TargetSelector
from remediator.config.steps import (
    STATE_CHANGING,
    PluginStep,
    Step,
    Template,
    compile_template,
    fits,
)
from remediator.config.targets import Target

log = logging.getLogger("remediator.decisions")

# Reasons nothing runs. Each is recorded as a recovery:skipped event.
RESOLVED = "resolved"
NO_PLAYBOOK = "no_playbook"
UNKNOWN_PATTERN = "unknown_pattern"
TARGET_NOT_REGISTERED = "target_not_registered"
TARGET_WRONG_TYPE = "target_wrong_type"
TARGET_NOT_ALLOWED = "target_not_allowed"  # registered, but not on the plan's allow-list

_CATEGORY_EVENTS = {
    "memory": ev.HEALTH_HIGH_MEMORY,
    "cpu": ev.HEALTH_HIGH_CPU,
    "disk": ev.HEALTH_HIGH_DISK,
    "latency": ev.HEALTH_SLOW_RESPONSE,
    "api": ev.HEALTH_HIGH_ERRORS,
}


@dataclass(frozen=True, slots=True)
class Plan:
    """A playbook ready to run: from configuration, or from a pattern's recovery steps."""

    name: str
    matchers: tuple[Matcher, ...]
    pattern: str | None
    target: Template
    priority: str
    steps: tuple[Step, ...]
    retry: RetrySpec
    cooldown: float
    max_per_window: WindowLimit | None
    dry_run: bool
    allowed: TargetSelector | None = None  # the targets it may act on (None: any registered)
    approval: ApprovalSpec | None = None  # who must approve before it runs (None: nobody)

    @classmethod
    def from_spec(cls, spec: PlaybookSpec) -> Plan:
        return cls(
            name=spec.name,
            matchers=tuple(spec.matchers()),
            pattern=spec.pattern,
            target=spec.target_template(),
            priority=spec.priority,
            steps=tuple(spec.steps),
            retry=spec.retry,
            cooldown=spec.cooldown,
            max_per_window=spec.max_per_window,
            dry_run=spec.dry_run,
            allowed=spec.targets,
            approval=spec.approval,
        )


@dataclass(frozen=True, slots=True)
class Decision:
    fingerprint: str
    alertname: str
    status: str
    classification: Classification
    plan: Plan | None = None
    target: Target | None = None
    reason: str | None = None  # set when nothing will run
    rendered_target: str = ""

    @property
    def runs(self) -> bool:
        return self.reason is None and self.plan is not None and self.target is not None

    @property
    def health_event(self) -> str | None:
        """The seed's ``health:*`` event for this alert's category, if any."""
        return _CATEGORY_EVENTS.get(self.classification.category)

    def as_json(self) -> dict[str, Any]:
        plan = self.plan
        return {
            "fingerprint": self.fingerprint,
            "alertname": self.alertname,
            "status": self.status,
            "pattern": self.classification.pattern_id or None,
            "category": self.classification.category,
            "severity": self.classification.severity,
            "playbook": plan.name if plan else None,
            "priority": plan.priority if plan else None,
            "target": self.target.name if self.target else None,
            "target_type": self.target.type if self.target else None,
            "steps": [step_json(s, asks=not plan.dry_run) for s in plan.steps]
            if plan and self.runs
            else [],
            "dry_run": plan.dry_run if plan else False,
            "runs": self.runs,
            "reason": self.reason,
            "rendered_target": sanitize(self.rendered_target)
            if self.reason in (TARGET_NOT_REGISTERED, TARGET_WRONG_TYPE, TARGET_NOT_ALLOWED)
            else None,
            # a dry-run playbook never asks (it only says what it would do)
            "approval": approval_json(plan.approval)
            if plan and self.runs and not plan.dry_run
            else None,
        }


def approval_json(spec: ApprovalSpec | None) -> dict[str, Any] | None:
    """What a dry run says of a playbook's approval: it would ask, and whom (None: no approval)."""
    if spec is None:
        return None
    return {
        "message": f"would ask for approval by {', '.join(spec.asked())}",
        "approvers": list(spec.approvers),
        "slack_users": list(spec.slack_users),
        "slack_usergroups": list(spec.slack_usergroups),
        "emails": list(spec.emails),
        "ttl": spec.ttl,
        "on_expiry": spec.on_expiry,
    }


class StrategyLike(Protocol):
    """What decisions need of a plugin strategy (see remediator.plugins.Strategy)."""

    @property
    def name(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def condition(self) -> Callable[[Decision, dict[str, str]], bool]: ...


def strategy_plan(strategy: StrategyLike) -> Plan:
    return Plan(
        name=f"strategy:{strategy.name}",
        matchers=(),
        pattern=None,
        target=compile_template(strategy.target),
        priority="medium",
        # Built, not validated: configuration cannot name a strategy step (no ':' allowed there).
        steps=(
            PluginStep.model_construct(
                action="plugin", plugin=f"strategy:{strategy.name}", params={}, timeout=60.0
            ),
        ),
        retry=RetrySpec(),
        cooldown=300.0,
        max_per_window=WindowLimit(count=3),
        dry_run=False,
    )


@dataclass
class Catalog:
    """Everything :func:`decide` needs, compiled once per configuration version."""

    classifier: Classifier
    plans: list[Plan]
    targets: dict[str, Target]
    pattern_plans: dict[str, Plan] = field(default_factory=dict)
    strategies: list[StrategyLike] = field(default_factory=list)

    @classmethod
    def from_config(
        cls, config: Config, strategies: Sequence[StrategyLike] | None = None
    ) -> Catalog:
        patterns = effective_patterns(config.patterns, builtin=config.builtin_patterns)
        ordered = sorted(
            enumerate(config.playbooks), key=lambda pair: (PRIORITY_RANK[pair[1].priority], pair[0])
        )
        pattern_plans = {
            p.id: Plan(
                name=f"pattern:{p.id}",
                matchers=(),
                pattern=p.id,
                target=compile_template(p.target),
                priority=_severity_priority(p.severity),
                steps=tuple(p.recovery),
                retry=RetrySpec(),
                cooldown=p.cooldown,
                max_per_window=WindowLimit(count=3),
                dry_run=False,
                allowed=p.targets,
            )
            for p in patterns
            if p.recovery and p.target
        }
        return cls(
            classifier=Classifier(patterns),
            plans=[Plan.from_spec(spec) for _, spec in ordered],
            targets={t.name: t for t in config.targets},
            pattern_plans=pattern_plans,
            strategies=list(strategies or []),
        )


def step_json(step: Step, *, asks: bool = True) -> dict[str, Any]:
    """A step as shown by dry runs and ``simulate``: secrets redacted as in GET /configuration
    (every header value of ``http.call``); a step that asks for approval says it would ask
    (unless its playbook never ``asks``: a dry-run playbook)."""
    dumped = step.model_dump(mode="json", exclude_defaults=True, exclude={"approval"})
    data: dict[str, Any] = redact_document(dumped)
    data["action"] = step.action
    if step.approval is not None and asks:
        data["approval"] = approval_json(step.approval)
    return data


def _severity_priority(severity: str) -> str:
    return severity if severity in PRIORITY_RANK else "medium"


def sanitize(value: str, limit: int = 120) -> str:
    """A value from an alert made safe to record: printable, escaped, bounded."""
    text = value.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[:limit] + "..."


def _select(catalog: Catalog, labels: dict[str, str], c: Classification) -> Plan | None:
    for plan in catalog.plans:
        if plan.pattern is not None and plan.pattern not in (c.pattern_id, c.category):
            continue
        if all_match(list(plan.matchers), labels):
            return plan
    return catalog.pattern_plans.get(c.pattern_id) if c.known else None


def decide(
    catalog: Catalog,
    *,
    fingerprint: str,
    status: str,
    labels: dict[str, str],
    annotations: dict[str, str],
) -> Decision:
    classification = catalog.classifier.classify(labels, annotations)

    def made(
        reason: str | None,
        plan: Plan | None = None,
        target: Target | None = None,
        rendered: str = "",
    ) -> Decision:
        return Decision(
            fingerprint=fingerprint,
            alertname=labels.get("alertname", ""),
            status=status,
            classification=classification,
            plan=plan,
            target=target,
            reason=reason,
            rendered_target=rendered,
        )

    plan = _select(catalog, labels, classification)
    if plan is None and catalog.strategies and status == "firing":
        probe = made(NO_PLAYBOOK)
        for strategy in catalog.strategies:
            try:
                matched = strategy.condition(probe, labels)
            except Exception:  # a plugin's bug: log it and treat the condition as false
                log.exception("strategy condition raised", extra={"strategy": strategy.name})
                matched = False
            if matched:
                plan = strategy_plan(strategy)
                break
    if status != "firing":
        return made(RESOLVED, plan)
    if plan is None:
        return made(UNKNOWN_PATTERN if not classification.known else NO_PLAYBOOK)
    rendered = plan.target.render(labels=labels, annotations=annotations)
    target = catalog.targets.get(rendered)
    if target is None:
        return made(TARGET_NOT_REGISTERED, plan, None, rendered)
    if plan.allowed is not None and not plan.allowed.allows(target.name, target.labels):
        return made(TARGET_NOT_ALLOWED, plan, target, rendered)
    for step in plan.steps:
        if step.action in STATE_CHANGING and not fits(step.action, target.type):
            return made(TARGET_WRONG_TYPE, plan, target, rendered)
    return made(None, plan, target, rendered)
