"""What a state-changing action can tell about its own effect.

An action that implements :class:`Probed` is never repeated blindly by a replica that takes a
remediation over: before the call, the run records the target as :meth:`Probed.probe` sees it
(the step's intent); the heir probes again, and :meth:`Probed.took_effect` says whether the
dead owner's call already changed the target (remediator/engine/intents.py).

Probed today: ``docker.restart`` (the container's ``State.StartedAt`` and ``RestartCount``).
The other built-in actions are idempotent (``docker.start``/``stop``/``pause``/``unpause``/
``update_limits``/``scale``, ``docker.kill`` with SIGKILL, ``http.failover``,
``redis.failover``) or taken again by the heir (see docs/deployment.md, "What the replicas
share").
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from remediator.actions.base import ActionContext


@runtime_checkable
class Probed(Protocol):
    async def probe(self, ctx: ActionContext) -> dict[str, Any]:
        """The target's state this action changes, now ({} if it cannot be read)."""
        ...

    def took_effect(self, before: dict[str, Any], now: dict[str, Any]) -> bool:
        """Whether the call made after ``before`` was read has changed the target (``now``)."""
        ...
