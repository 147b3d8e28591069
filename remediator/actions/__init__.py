"""The recovery actions, registered by name in an explicit dict.

Each built-in action class declares itself once (:class:`~remediator.actions.base.BuiltinAction`:
its name, step model, target types, whether it changes state); ``remediator/config/steps.py`` derives
the playbook step union and its tables from :data:`BUILTIN_ACTIONS`. Adding an action is its
class in a family module, listed in that module's ``ACTIONS``.
"""

from __future__ import annotations

from remediator.actions import (
    ansible,
    docker,
    docker_scale,
    http,
    postgres,
    process,
    queue,
    redis,
    ssh,
    systemd,
)
from remediator.actions.base import Action, ActionContext, ActionResult, BuiltinAction

BUILTIN_ACTIONS: tuple[BuiltinAction, ...] = tuple(
    action
    for family in (
        docker,
        docker_scale,
        redis,
        postgres,
        http,
        process,
        queue,
        systemd,
        ssh,
        ansible,
    )
    for action in family.ACTIONS
)


def builtin_actions() -> dict[str, Action]:
    """Every built-in action by its configuration name (``docker.restart``, ...)."""
    registry: dict[str, Action] = {}
    for action in BUILTIN_ACTIONS:
        if action.name in registry:
            raise RuntimeError(f"action {action.name!r} registered twice")
        if action.step_type.model_fields["action"].annotation.__args__ != (action.name,):  # type: ignore[union-attr]
            raise RuntimeError(f"the step model of {action.name!r} names another action")
        registry[action.name] = action
    return registry


__all__ = [
    "BUILTIN_ACTIONS",
    "Action",
    "ActionContext",
    "ActionResult",
    "BuiltinAction",
    "builtin_actions",
]
