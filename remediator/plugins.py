"""Plugins, from Python entry points: custom actions, strategies, health checks, subscribers.

Entry point groups (in a plugin's ``pyproject.toml``)::

    [project.entry-points."remediator.actions"]
    purge_cdn = "my_plugin:PurgeCdn"          # an Action class or instance; step `plugin: purge_cdn`
    [project.entry-points."remediator.strategies"]
    drain_node = "my_plugin:DRAIN"            # a Strategy
    [project.entry-points."remediator.checks"]
    my_check = "my_plugin:MyCheck"            # a HealthCheck for a target type
    [project.entry-points."remediator.subscribers"]
    pager = "my_plugin:subscribe"             # called with the EventBus: bus.on("circuit:open", fn)

A plugin that fails to load is logged and skipped; it never stops remediator from starting.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, ClassVar

from remediator.actions.base import Action, ActionContext, ActionResult
from remediator.audit.events import EventBus
from remediator.checks.base import HealthCheck
from remediator.config.steps import compile_template
from remediator.engine.decisions import Decision

log = logging.getLogger("remediator.plugins")


@dataclass(frozen=True)
class Strategy:
    """A custom recovery strategy (the seed's ``{name, condition, execute, priority}``).

    ``condition`` sees the decision for an alert no playbook handled; the first strategy (highest
    priority) whose condition holds runs ``execute`` on the target named by ``target`` (a
    template such as ``{{ labels.container }}``), through the same guards as any playbook.
    """

    name: str
    condition: Callable[[Decision, dict[str, str]], bool]
    execute: Callable[[ActionContext], Any]  # async: returns ActionResult
    target: str
    target_types: frozenset[str]
    priority: int = 0


def strategy_action(strategy: Strategy) -> Action:
    """An action class that runs a strategy's ``execute`` as the step of its plan."""

    class _StrategyAction:
        name: ClassVar[str] = f"plugin:strategy:{strategy.name}"
        target_types: ClassVar[frozenset[str]] = strategy.target_types

        async def run(self, ctx: ActionContext) -> ActionResult:
            if ctx.dry_run:
                return ActionResult(True, f"dry-run: would run strategy {strategy.name}")
            result: ActionResult = await strategy.execute(ctx)
            return result

    return _StrategyAction()


@dataclass
class Plugins:
    actions: dict[str, Action] = field(default_factory=dict)
    strategies: list[Strategy] = field(default_factory=list)
    checks: dict[str, HealthCheck] = field(default_factory=dict)
    subscribers: list[Callable[[EventBus], None]] = field(default_factory=list)

    def subscribe(self, bus: EventBus) -> None:
        for subscriber in self.subscribers:
            try:
                subscriber(bus)
            except Exception:
                name = getattr(subscriber, "__name__", "?")
                log.exception("plugin subscriber failed", extra={"plugin": name})


def _instance(obj: Any) -> Any:
    return obj() if isinstance(obj, type) else obj


def load(group_prefix: str = "remediator") -> Plugins:
    """Every installed plugin."""
    plugins = Plugins()
    for point in entry_points(group=f"{group_prefix}.actions"):
        try:
            action = _instance(point.load())
            plugins.actions[f"plugin:{point.name}"] = action
        except Exception:
            log.exception("plugin action failed to load", extra={"plugin": point.name})
    for point in entry_points(group=f"{group_prefix}.strategies"):
        try:
            strategy = point.load()
            if not isinstance(strategy, Strategy):
                raise TypeError(f"{point.name} is not a remediator.plugins.Strategy")
            compile_template(strategy.target)
            plugins.strategies.append(strategy)
        except Exception:
            log.exception("plugin strategy failed to load", extra={"plugin": point.name})
    for point in entry_points(group=f"{group_prefix}.checks"):
        try:
            check = _instance(point.load())
            plugins.checks[check.target_type] = check
        except Exception:
            log.exception("plugin check failed to load", extra={"plugin": point.name})
    for point in entry_points(group=f"{group_prefix}.subscribers"):
        try:
            plugins.subscribers.append(point.load())
        except Exception:
            log.exception("plugin subscriber failed to load", extra={"plugin": point.name})
    plugins.strategies.sort(key=lambda s: -s.priority)
    for strategy in plugins.strategies:
        plugins.actions[f"plugin:strategy:{strategy.name}"] = strategy_action(strategy)
    return plugins
