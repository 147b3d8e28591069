"""The engine's spans inside the worker's ``decision`` span (docs/tracing.md lists them all).

- ``guard``: one per guard the verdict went through, in :data:`~remediator.engine.guards.GUARDS`
  order: ``verdict`` ``pass`` for each one before the guard that blocked (every one when the
  run is allowed), ``block`` for that guard (with its bounded ``detail``).
- ``attempt``: one per attempt of a playbook's steps (``playbook``, ``target``, ``attempt``,
  ``episode``, ``outcome``).
- ``step``: one per step of an attempt (``action``, ``target``, ``attempt``, ``dry_run``,
  ``outcome``, and on a failure the step's bounded ``detail``); a verification step has a
  ``verify`` span inside its ``step`` span, with the same attributes.

Attribute values are configuration names, numbers and outcomes; the only free text (a guard's
or a step's detail, which may quote alert labels) passes :func:`~remediator.tracing.bounded`.
With tracing disabled nothing here builds an attribute.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

from opentelemetry import trace

from remediator.actions.base import ActionResult
from remediator.config import steps as st
from remediator.engine.guards import GUARDS, Verdict
from remediator.tracing import Attribute, Tracing, bounded

INTERRUPTED = "interrupted"  # a step cut short (its timeout, a shutdown): no result


def guards(tracing: Tracing, verdict: Verdict) -> None:
    """The ``guard`` spans of a verdict (see the module's docstring)."""
    if not tracing.enabled:
        return
    for name in GUARDS:
        blocked = verdict.reason == name
        attributes: dict[str, Attribute] = {
            "guard": name,
            "verdict": "block" if blocked else "pass",
        }
        if blocked:
            attributes["detail"] = bounded(verdict.detail)
        with tracing.span("guard", attributes=attributes):
            pass
        if blocked:
            return


def attempt(
    *, playbook: str, target: str, number: int, details: Mapping[str, object]
) -> dict[str, Attribute]:
    """The attributes of an ``attempt`` span (``details``: the run's base event details)."""
    attributes: dict[str, Attribute] = {"playbook": playbook, "target": target, "attempt": number}
    episode = details.get("episode")
    if isinstance(episode, int) and not isinstance(episode, bool):
        attributes["episode"] = episode
    return attributes


@dataclass
class StepOutcome:
    """What a step returned, set by the code inside :func:`step` (None: it did not return)."""

    result: ActionResult | None = None


def outcome_label(result: ActionResult | None, *, dry_run: bool) -> str:
    if result is None:
        return INTERRUPTED
    if not result.ok:
        return "failure"
    return "dry_run" if dry_run else "success"


@contextmanager
def step(
    tracing: Tracing, step: st.Step, *, target: str, attempt: int, dry_run: bool
) -> Iterator[StepOutcome]:
    """The ``step`` span (and ``verify`` span) around one step; the caller sets the result."""
    outcome = StepOutcome()
    if not tracing.enabled:
        yield outcome
        return
    attributes: dict[str, Attribute] = {
        "action": step.action,
        "target": target,
        "attempt": attempt,
        "dry_run": dry_run,
    }
    verify = step.action in st.VERIFY_ACTIONS
    with (
        tracing.span("step", attributes=attributes) as span,
        tracing.span("verify", attributes=attributes)
        if verify
        else nullcontext(trace.INVALID_SPAN) as check,
    ):
        try:
            yield outcome
        finally:
            label = outcome_label(outcome.result, dry_run=dry_run)
            for current in (span, check):
                current.set_attribute("outcome", label)
                if outcome.result is not None and not outcome.result.ok:
                    current.set_attribute("detail", bounded(outcome.result.detail))
