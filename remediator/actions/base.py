"""The action interface: what every recovery action family implements.

An action receives a registered target (never a name from an alert), its validated step
parameters from configuration, and the shared clients. It returns an :class:`ActionResult`;
it raises only for programming errors. Actions never spawn a shell.
"""

from __future__ import annotations

import asyncio
import time
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


Outcome = tuple[bool, str, dict[str, Any]]


class GuardedAction:
    """The shared shape of an action family: check the target and step types, honour dry-run,
    bound :meth:`perform` by the step's timeout, and turn the family's errors (``errors``) into
    a failed result with a sanitized detail. Subclasses set the class attributes and implement
    :meth:`describe` and :meth:`perform` (and may refine :meth:`error_detail`/:meth:`on_timeout`).
    """

    name: ClassVar[str]
    target_types: ClassVar[frozenset[str]]
    target_class: ClassVar[type[Any]]
    step_type: ClassVar[type[Any]]
    errors: ClassVar[tuple[type[BaseException], ...]] = (OSError, ValueError)

    async def run(self, ctx: ActionContext) -> ActionResult:
        start = time.monotonic()

        def result(ok: bool, detail: str, data: dict[str, Any] | None = None) -> ActionResult:
            return ActionResult(ok, detail, time.monotonic() - start, data or {})

        target, step = ctx.target, ctx.step
        if not isinstance(target, self.target_class):
            return result(False, "wrong target type")
        if not isinstance(step, self.step_type):
            return result(False, f"wrong step for {self.name}")
        if ctx.dry_run:
            return result(True, f"dry-run: would {self.describe(target, step)}")
        try:
            ok, detail, data = await asyncio.wait_for(
                self.perform(target, step, ctx.clients), timeout=step.timeout
            )
        except TimeoutError:
            await self.on_timeout(target, ctx.clients)
            return result(False, f"{self.name} on {target.name}: timed out after {step.timeout}s")
        except self.errors as exc:
            error = self.error_detail(exc, target, step)
            return result(False, f"{self.name} on {target.name} failed: {error}")
        except Exception as exc:  # never raise out of an action
            return result(False, f"{self.name} on {target.name} failed: {type(exc).__name__}")
        return result(ok, detail, data)

    def describe(self, target: Any, step: Any) -> str:
        raise NotImplementedError

    async def perform(self, target: Any, step: Any, clients: Clients) -> Outcome:
        raise NotImplementedError

    def error_detail(self, exc: BaseException, target: Any, step: Any) -> str:
        """A short, secret-free description of a family error."""
        return type(exc).__name__

    async def on_timeout(self, target: Any, clients: Clients) -> None:
        """Called when ``perform`` timed out (e.g. to drop a connection in an unknown state)."""
