"""Run a ``queue.*`` action or a queue check the way the engine does (real clients)."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import TypeAdapter

from remediator.actions import ActionContext, ActionResult, builtin_actions
from remediator.checks import builtin_checks
from remediator.checks.base import CheckResult
from remediator.clients import Clients
from remediator.config.steps import Step
from remediator.config.targets import Target

STEP = TypeAdapter(Step)
TARGET = TypeAdapter(Target)


def target(**fields: Any) -> Target:
    return TARGET.validate_python(fields)


def act(tgt: Target, action: str, *, dry_run: bool = False, **params: Any) -> ActionResult:
    step = STEP.validate_python({"action": action, **params})

    async def run() -> ActionResult:
        clients = Clients()
        try:
            ctx = ActionContext(target=tgt, step=step, clients=clients, dry_run=dry_run)
            return await builtin_actions()[action].run(ctx)
        finally:
            await clients.aclose()
            clients.close()

    return asyncio.run(run())


def check(tgt: Target, timeout: float = 10.0) -> CheckResult:
    async def run() -> CheckResult:
        clients = Clients()
        try:
            return await builtin_checks()[tgt.type].check(tgt, clients, timeout=timeout)
        finally:
            await clients.aclose()
            clients.close()

    return asyncio.run(run())
