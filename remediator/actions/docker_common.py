"""The Docker actions' shared call: a body on the target's engine, bounded, as an ActionResult."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from remediator.actions.base import ActionContext, ActionResult
from remediator.tech.docker import (
    ENGINE_ERRORS,
    Outcome,
    call_bounded,
    describe_error,
    engine,
    timeout_detail,
)


async def run_on_engine(
    ctx: ActionContext,
    docker_host: str | None,
    body: Callable[[Any], Outcome],
    started: float,
) -> ActionResult:
    """Run ``body(client)`` for the target's engine in a thread, bounded by the step timeout."""
    timeout = float(ctx.step.timeout)

    def blocking() -> Outcome:
        return body(engine(ctx.clients, docker_host))

    try:
        outcome = await call_bounded(blocking, timeout)
    except ENGINE_ERRORS as exc:
        elapsed = time.monotonic() - started
        if isinstance(exc, TimeoutError) and elapsed >= timeout:
            return ActionResult(False, timeout_detail(timeout), elapsed)
        return ActionResult(False, describe_error(exc), elapsed)
    return ActionResult(outcome.ok, outcome.detail, time.monotonic() - started, outcome.data)
