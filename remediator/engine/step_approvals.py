"""Approval of a single step: where an alert's run pauses, and whose approval a step needs.

A step with ``approval:`` splits its playbook's steps: an alert's run takes the steps up to it
(:func:`segment`), then pauses — its remediation waits in ``awaiting_approval`` with an open
approval of that step (:meth:`remediator.engine.run.Runs.execute`, the store's
``pause_for_approval``) — and an approval resumes it *at* that step
(:class:`~remediator.engine.run.Order` ``resume``), never repeating the steps before it. A
denial, an expiry or a resolved alert ends it as the playbook's own approval does
(remediator/engine/approvals.py). Manual runs (``POST /trigger``) and dry runs never pause:
a dry run only says that it would ask (:func:`remediator.engine.decisions.step_json`).
"""

from __future__ import annotations

from collections.abc import Sequence

from remediator.config.approvals import ApprovalSpec
from remediator.config.steps import Step


def segment(steps: Sequence[Step], *, resume: int | None, pauses: bool) -> tuple[int, int]:
    """The steps ``[first, stop)`` a run takes now: from the step an approval resumed it at
    (else the first) up to the next step that asks for approval (``stop``; ``len(steps)``
    when none does, or when the run never ``pauses``)."""
    first = 0 if resume is None else resume
    if not pauses:
        return first, len(steps)
    start = first if resume is None else first + 1  # the resumed step itself was approved
    for index in range(start, len(steps)):
        if steps[index].approval is not None:
            return first, index
    return first, len(steps)


def spec_of(
    steps: Sequence[Step], playbook: ApprovalSpec | None, step: int | None
) -> ApprovalSpec | None:
    """Who decides on an approval: the playbook's (``step`` None), else that step's; None when
    the configuration no longer asks for it."""
    if step is None:
        return playbook
    return steps[step].approval if 0 <= step < len(steps) else None


def where(steps: Sequence[Step], step: int) -> str:
    """How messages name a step: ``steps[1] (docker.restart)``."""
    action = steps[step].action if 0 <= step < len(steps) else "?"
    return f"steps[{step}] ({action})"
