"""The action interface: what every recovery action family implements.

An action receives a registered target (never a name from an alert), its validated step
parameters from configuration, and the shared clients. It returns an :class:`ActionResult`;
it raises only for programming errors. Actions never spawn a shell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from remediator.clients import Clients
from remediator.targets import Target


@dataclass(frozen=True, slots=True)
class ActionResult:
    ok: bool
    detail: str
    duration: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ActionContext:
    target: Target
    step: Any  # the step's pydantic model from remediator.steps (e.g. steps.DockerRestart)
    clients: Clients
    dry_run: bool = False


class Action(Protocol):
    """One action. ``name`` is the step's ``action`` value in configuration."""

    name: ClassVar[str]
    target_types: ClassVar[frozenset[str]]

    async def run(self, ctx: ActionContext) -> ActionResult: ...
