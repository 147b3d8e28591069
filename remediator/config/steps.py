"""Playbook steps: one pydantic model per action, a discriminated union on ``action``.

Each built-in action declares its step model, its target types and whether it changes state
on its class in ``remediator/actions/`` (the registry in ``remediator/actions/__init__.py``);
the ``Step`` union, :data:`STATE_CHANGING` and :data:`ACTION_TARGET_TYPES` are derived from
it. The steps that are not actions (``verify.health``, ``verify.prometheus``, ``quarantine``,
``escalate``, ``plugin``) are declared here. Parameters come only from configuration, never
from alert text.

Target templates: ``{{ labels.container }}``, ``{{ annotations.service }}`` and literal text.

Deliberately tiny: no expressions, no filters, no code. A template renders to a plain string that
is then looked up in the registered targets; it is never passed to a shell.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import Field, model_validator

from remediator.actions import BUILTIN_ACTIONS
from remediator.actions.base import Signal, StepModel
from remediator.config.durations import Duration
from remediator.config.promql import compile_query

_FIELD = re.compile(r"\{\{\s*(labels|annotations)\.([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
_BRACES = re.compile(r"\{\{|\}\}")


@dataclass(frozen=True, slots=True)
class Template:
    source: str

    def render(self, *, labels: dict[str, str], annotations: dict[str, str]) -> str:
        """The rendered string; a missing label renders as empty."""

        def field(match: re.Match[str]) -> str:
            scope = labels if match.group(1) == "labels" else annotations
            return scope.get(match.group(2), "")

        return _FIELD.sub(field, self.source)


def compile_template(source: str) -> Template:
    """Check a template; ``ValueError`` for anything but ``{{ labels.x }}`` / annotations."""
    rest = _FIELD.sub("", source)
    if _BRACES.search(rest):
        raise ValueError(
            f"invalid template {source!r}: only {{{{ labels.NAME }}}} and "
            "{{ annotations.NAME }} are allowed"
        )
    return Template(source)


__all__ = [
    "ACTION_TARGET_TYPES",
    "STATE_CHANGING",
    "VERIFY_ACTIONS",
    "Escalate",
    "PluginStep",
    "Quarantine",
    "Signal",
    "Step",
    "VerifyHealth",
    "VerifyPrometheus",
    "action_names",
    "fits",
]

_Step = StepModel


class Quarantine(StepModel):
    action: Literal["quarantine"]
    pause: bool = True


class VerifyHealth(StepModel):
    action: Literal["verify.health"]
    within: Duration = 30.0
    interval: Duration = 2.0


class VerifyPrometheus(StepModel):
    action: Literal["verify.prometheus"]
    query: str = Field(min_length=1)
    expect: Literal["non_empty", "empty"] = "non_empty"
    below: float | None = None
    above: float | None = None
    within: Duration = 60.0
    interval: Duration = 5.0

    @model_validator(mode="after")
    def _check(self) -> VerifyPrometheus:
        compile_query(self.query)  # placeholders only inside string literals
        if self.expect == "empty" and (self.below is not None or self.above is not None):
            raise ValueError("'below' and 'above' need expect: non_empty")
        return self

    def holds(self, values: tuple[float, ...]) -> bool:
        """Is the condition met by a query's values (one per series)?"""
        if self.expect == "empty":
            return not values
        return bool(values) and all(
            (self.below is None or value < self.below)
            and (self.above is None or value > self.above)
            for value in values
        )

    def condition(self) -> str:
        """The condition in words, for the step's event."""
        if self.expect == "empty":
            return "no series"
        bounds = [] if self.below is None else [f"below {self.below:g}"]
        bounds += [] if self.above is None else [f"above {self.above:g}"]
        said = " and ".join(bounds)
        return f"every series {said}" if said else "some series"


class Escalate(StepModel):
    action: Literal["escalate"]
    reason: str = "playbook"


class PluginStep(StepModel):
    """A custom action from an installed plugin (entry point group ``remediator.actions``)."""

    action: Literal["plugin"]
    plugin: str = Field(pattern=r"^[a-zA-Z0-9_.-]+$")
    params: dict[str, Any] = Field(default_factory=dict)


# The steps that are not actions: they fit any target; all but verification change state.
_BUILTIN_STEPS: tuple[type[StepModel], ...] = (
    Quarantine,
    VerifyHealth,
    VerifyPrometheus,
    Escalate,
    PluginStep,
)
_MODELS = tuple(action.step_type for action in BUILTIN_ACTIONS) + _BUILTIN_STEPS

if TYPE_CHECKING:
    Step = StepModel
else:
    Step = Annotated[Union[_MODELS], Field(discriminator="action")]  # noqa: UP007

VERIFY_ACTIONS = frozenset({"verify.health", "verify.prometheus"})
STATE_CHANGING = frozenset(
    [action.name for action in BUILTIN_ACTIONS if action.changes_state] + ["quarantine", "plugin"]
)


def action_names() -> list[str]:
    """Every built-in action name, from the union itself."""
    names: list[str] = []
    for model in _MODELS:
        names.append(model.model_fields["action"].annotation.__args__[0])  # type: ignore[union-attr]
    return sorted(names)


# Which target types each action can act on. Verification and escalation steps fit any target.
ACTION_TARGET_TYPES: dict[str, frozenset[str]] = {
    action.name: action.target_types for action in BUILTIN_ACTIONS
}


def fits(action: str, target_type: str) -> bool:
    """Can ``action`` act on a target of ``target_type``? (Unlisted actions fit any target.)"""
    allowed = ACTION_TARGET_TYPES.get(action)
    return allowed is None or target_type in allowed
