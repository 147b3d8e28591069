"""Step intents: a state-changing step taken exactly once, even when its replica dies mid-way.

Before a run calls a state-changing action, it records the step's intent in the store (the
remediation, the step's index, the action and target, its owner, the time, and what the action's
probe saw of the target). A replica that takes the remediation over after the owner's lease
expired reads those intents; when it reaches such a step, it probes the target again and, if
the dead owner's call already took effect (for ``docker.restart``: the container started again
after the step began), records the step as ``recovery:action`` with outcome ``already_done``
instead of calling the action again. An effect not seen yet is waited for while the dead
owner's call could still be running (until its start plus the step's ``timeout``), probing every
:data:`SETTLE_INTERVAL`; only then is the step taken again. An action without a probe
(:class:`~remediator.actions.effects.Probed`) is repeated: the built-in ones are idempotent
where it matters. A previous owner's intents count for the heir's first attempt only.

Intents are recorded on a shared store (PostgreSQL) only: on SQLite, one process owns every
remediation and a run cut by a crash is marked interrupted at start-up, never taken over.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from remediator.actions.base import Action, ActionContext, ActionResult
from remediator.actions.effects import Probed
from remediator.clock import Clock
from remediator.errors import StoreUnavailable
from remediator.store.base import Intents as IntentStore
from remediator.store.records import StepIntent

log = logging.getLogger("remediator.intents")
ALREADY_DONE = "already_done"  # the recovery:action outcome of a step found already taken
SETTLE_INTERVAL = 1.0  # seconds between probes while a dead owner's call may still be running
Verdict = Literal["act", "already_done", "wait"]


def verdict(
    intent: StepIntent | None,
    *,
    action: str,
    effect: bool | None,
    now: float,
    timeout: float,
) -> Verdict:
    """What the heir does at a step: the previous owner's ``intent`` for it (None: none),
    whether its effect is seen (``effect``; None: the action cannot tell)."""
    if intent is None or intent.action != action or effect is None:
        return "act"
    if effect:
        return "already_done"
    return "wait" if now < intent.began_at + timeout else "act"


class Intents:
    """Records a run's step intents and settles a taken-over run's inherited ones."""

    def __init__(self, *, store: IntentStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def inherited(self, remediation_id: int) -> dict[int, StepIntent]:
        """The intents recorded for this remediation before this run began (a previous
        owner's), by step index; the run records its own only from now on."""
        return {i.step: i for i in await self.store.step_intents(remediation_id)}

    async def record(
        self, action: Action, *, ctx: ActionContext, remediation_id: int, index: int, owner: str
    ) -> ActionResult | None:
        """Record the intent of step ``index`` before its call; a failed result if the store
        cannot (the step is then not taken: it could not be recognised if this run died)."""
        probe = await self._probe(action, ctx)
        intent = StepIntent(
            remediation_id=remediation_id,
            step=index,
            action=action.name,
            target=ctx.target.name,
            owner=owner,
            began_at=self.clock.now(),
            probe=probe,
        )
        try:
            await self.store.record_intent(intent)
        except StoreUnavailable as exc:
            return ActionResult(False, f"step intent not recorded, step not taken: {exc.code}")
        return None

    async def settle(
        self, action: Action, *, ctx: ActionContext, intent: StepIntent, timeout: float
    ) -> ActionResult | None:
        """A previous owner began this step: a result if it already took effect, else None
        (take it) once its call can no longer be running."""
        while True:
            now_probe = await self._probe(action, ctx)
            effect: bool | None = None  # an action without a probe cannot tell
            if isinstance(action, Probed):
                seen = bool(intent.probe and now_probe)
                effect = seen and action.took_effect(intent.probe, now_probe)
            found = verdict(
                intent, action=action.name, effect=effect, now=self.clock.now(), timeout=timeout
            )
            if found == "act":
                return None
            if found == ALREADY_DONE:
                data: dict[str, Any] = {
                    "owner": intent.owner,
                    "began_at": intent.began_at,
                    "before": intent.probe,
                    "now": now_probe,
                }
                detail = (
                    f"{action.name} on {ctx.target.name} already took effect: begun by "
                    f"{intent.owner} before it stopped; not repeated"
                )
                return ActionResult(True, detail, 0.0, data)
            await self.clock.sleep(SETTLE_INTERVAL)

    async def _probe(self, action: Action, ctx: ActionContext) -> dict[str, Any]:
        if not isinstance(action, Probed):
            return {}
        try:
            return await action.probe(ctx)
        except Exception:  # a probe that cannot read the target sees nothing
            log.warning("probe failed", extra={"action": action.name})
            return {}
