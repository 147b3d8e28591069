"""The action interface: what every recovery action family implements.

An action receives a registered target (never a name from an alert), its validated step
parameters from configuration, and the shared clients. It returns an :class:`ActionResult`;
it raises only for programming errors. Actions never spawn a shell.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field

from remediator.clients import Clients
from remediator.config.approvals import ApprovalSpec
from remediator.config.durations import Duration
from remediator.config.targets import Target

# What an action reports while it runs (one item, e.g. a playbook task's result), called on the
# event loop: an action working in a thread hands each item over with
# ``loop.call_soon_threadsafe`` (remediator/actions/ansible.py).
Progress = Callable[[Mapping[str, Any]], None]

Signal = Annotated[str, Field(pattern=r"^(SIG)?[A-Z0-9]{2,8}$")]


class StepModel(BaseModel):
    """The base of every step's parameters: an action's model adds ``action: Literal[name]``
    and its own fields (remediator/config/steps.py derives the ``Step`` union from the registry)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout: Duration = 60.0
    action: str  # each model narrows it to ``Literal[its action name]``, the discriminator
    approval: ApprovalSpec | None = Field(
        default=None,
        description="When set, an alert's run pauses before this step (the steps before it "
        "done, state `awaiting_approval`) until a listed approver approves; the same keys as "
        "the playbook's `approval` (docs/playbooks.md#approval-of-a-single-step).",
    )


@dataclass(frozen=True, slots=True)
class ActionResult:
    ok: bool
    detail: str
    duration: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)
    # What the runner keeps in the target's stored data after a successful real run (e.g. the
    # URL a failover made active), so later steps, health checks and the API see it.
    persist: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ActionContext:
    target: Target
    step: Any  # the step's pydantic model, the action's ``step_type`` (e.g. DockerRestart)
    clients: Clients
    dry_run: bool = False
    # The alert's labels: only the host actions read them, each value checked against the
    # configuration's regex before use (remediator/config/commands.py).
    labels: Mapping[str, str] = field(default_factory=dict)
    now: float | None = None  # the engine clock's time (None: the wall clock)
    # Where a real run reports its progress (None: nobody listens; never set in a dry run);
    # the runner records each item as a ``recovery:progress`` event (remediator/engine/progress.py).
    progress: Progress | None = None


class Action(Protocol):
    """One action. ``name`` is the step's ``action`` value in configuration."""

    name: ClassVar[str]
    target_types: ClassVar[frozenset[str]]

    async def run(self, ctx: ActionContext) -> ActionResult: ...


class BuiltinAction(Action, Protocol):
    """A built-in action declares itself once: its step model (``step_type``, whose ``action``
    literal is ``name``), the target types it acts on, whether it changes state (its intent is
    recorded first, remediator/engine/intents.py) and whether it switches between a target's
    configured endpoints (it is not pointed at the active one, remediator/engine/runner.py)."""

    # Read-only members (class attributes on the implementations).
    @property
    def step_type(self) -> type[StepModel]: ...

    @property
    def changes_state(self) -> bool: ...

    @property
    def switches_endpoint(self) -> bool: ...


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
    step_type: ClassVar[type[StepModel]]
    changes_state: ClassVar[bool] = True
    switches_endpoint: ClassVar[bool] = False
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
            ok, detail, data = await asyncio.wait_for(self.perform_in(ctx), timeout=step.timeout)
        except TimeoutError:
            await self.on_timeout(target, ctx.clients)
            return result(False, f"{self.name} on {target.name}: timed out after {step.timeout}s")
        except self.errors as exc:
            error = self.error_detail(exc, target, step)
            return result(False, f"{self.name} on {target.name} failed: {error}")
        except Exception as exc:  # never raise out of an action
            return result(False, f"{self.name} on {target.name} failed: {type(exc).__name__}")
        outcome = result(ok, detail, data)
        keep = self.persisted(target, data) if ok else {}
        return replace(outcome, persist=keep) if keep else outcome

    def describe(self, target: Any, step: Any) -> str:
        raise NotImplementedError

    async def perform_in(self, ctx: ActionContext) -> Outcome:
        """:meth:`perform` with what it needs of the context (an action that reads the alert's
        labels overrides this)."""
        return await self.perform(ctx.target, ctx.step, ctx.clients)

    async def perform(self, target: Any, step: Any, clients: Clients) -> Outcome:
        raise NotImplementedError

    def persisted(self, target: Any, data: dict[str, Any]) -> dict[str, Any]:
        """What a successful call keeps in the target's stored data ({}: nothing)."""
        return {}

    def error_detail(self, exc: BaseException, target: Any, step: Any) -> str:
        """A short, secret-free description of a family error."""
        return type(exc).__name__

    async def on_timeout(self, target: Any, clients: Clients) -> None:
        """Called when ``perform`` timed out (e.g. to drop a connection in an unknown state)."""
