"""The recovery actions, registered by name in an explicit dict."""

from __future__ import annotations

from remediator.actions import docker, http, postgres, process, redis
from remediator.actions.base import Action, ActionContext, ActionResult


def builtin_actions() -> dict[str, Action]:
    """Every built-in action by its configuration name (``docker.restart``, ...)."""
    registry: dict[str, Action] = {}
    for family in (docker, redis, postgres, http, process):
        for action in family.ACTIONS:
            if action.name in registry:
                raise RuntimeError(f"action {action.name!r} registered twice")
            registry[action.name] = action
    return registry


__all__ = ["Action", "ActionContext", "ActionResult", "builtin_actions"]
