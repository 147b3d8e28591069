"""The Docker action family: restart, stop, start, kill, pause, unpause, update_limits, scale.

Container actions work on ``docker_container`` targets: the container named exactly
``target.container_name`` on the engine ``target.docker_host``. ``docker.scale`` works on
``docker_service`` targets (see :mod:`remediator.actions.docker_scale`). Every action is
idempotent where the engine allows, never raises for engine errors (they become ``ok=False``
with a short detail), honours ``ctx.dry_run`` by touching nothing, and is bounded by the
step's ``timeout``.

The Docker actions' shared call: a body on the target's engine, bounded, as an ActionResult.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from remediator.actions.base import ActionContext, ActionResult, BuiltinAction, Signal, StepModel
from remediator.config.targets import DockerContainerTarget
from remediator.tech.docker import (
    ENGINE_ERRORS,
    Outcome,
    call_bounded,
    describe_error,
    engine,
    get_container,
    state_of,
    status_of,
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


class DockerRestart(StepModel):
    action: Literal["docker.restart"]
    stop_timeout: int = Field(default=10, ge=0, le=600)


class DockerStop(StepModel):
    action: Literal["docker.stop"]
    stop_timeout: int = Field(default=10, ge=0, le=600)


class DockerStart(StepModel):
    action: Literal["docker.start"]


class DockerKill(StepModel):
    action: Literal["docker.kill"]
    signal: Signal = "SIGKILL"


class DockerPause(StepModel):
    action: Literal["docker.pause"]


class DockerUnpause(StepModel):
    action: Literal["docker.unpause"]


class DockerUpdateLimits(StepModel):
    action: Literal["docker.update_limits"]
    memory: str | None = Field(default=None, pattern=r"^\d+[bkmg]?$")
    cpus: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _some(self) -> DockerUpdateLimits:
        if self.memory is None and self.cpus is None:
            raise ValueError("give 'memory' and/or 'cpus'")
        return self


CONTAINER_TARGETS: frozenset[str] = frozenset({"docker_container"})
_KILL_SIGNALS = frozenset({"SIGKILL", "KILL", "9"})
_STOPPED = frozenset({"created", "exited", "dead"})
PROBE_TIMEOUT = 5.0  # seconds a probe of a container may take
_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def _started_at(container: Any) -> str | None:
    value = state_of(container).get("StartedAt")
    return str(value) if value else None


def _running(container: Any) -> bool:
    return bool(state_of(container).get("Running"))


def _paused(container: Any) -> bool:
    return bool(state_of(container).get("Paused"))


class _ContainerAction:
    """Target-type check, dry-run and the bounded engine call shared by container actions."""

    name: ClassVar[str]
    target_types: ClassVar[frozenset[str]] = CONTAINER_TARGETS
    step_type: ClassVar[type[StepModel]]
    changes_state: ClassVar[bool] = True
    switches_endpoint: ClassVar[bool] = False
    verb: ClassVar[str]

    async def run(self, ctx: ActionContext) -> ActionResult:
        started = time.monotonic()
        target = ctx.target
        if getattr(target, "type", None) not in self.target_types or not isinstance(
            target, DockerContainerTarget
        ):
            return ActionResult(False, "wrong target type", time.monotonic() - started)
        name = target.container_name
        if ctx.dry_run:
            detail = f"dry-run: would {self.verb} container {name!r}{self.params(ctx.step)}"
            return ActionResult(True, detail, time.monotonic() - started, {"container": name})

        def body(client: Any) -> Outcome:
            container = get_container(client, name)
            outcome = self.apply(container, ctx.step)
            data = {"container": name, "id": str(container.id)[:12], **outcome.data}
            return Outcome(outcome.ok, outcome.detail, data)

        return await run_on_engine(ctx, target.docker_host, body, started)

    def params(self, step: Any) -> str:
        """The step parameters, for the dry-run detail."""
        return ""

    def apply(self, container: Any, step: Any) -> Outcome:  # runs in a worker thread
        raise NotImplementedError


class DockerRestartAction(_ContainerAction):
    name: ClassVar[str] = "docker.restart"
    step_type = DockerRestart
    verb: ClassVar[str] = "restart"

    def params(self, step: DockerRestart) -> str:
        return f" (stop_timeout {step.stop_timeout}s)"

    def apply(self, container: Any, step: DockerRestart) -> Outcome:
        before, status_before = _started_at(container), status_of(container)
        container.restart(timeout=step.stop_timeout)
        container.reload()
        after, status_after = _started_at(container), status_of(container)
        data = {
            "status_before": status_before,
            "status_after": status_after,
            "started_at_before": before,
            "started_at_after": after,
        }
        name = container.name
        if not _running(container):
            return Outcome(False, f"container {name!r} is {status_after} after restart", data)
        if status_before in _STOPPED:
            return Outcome(True, f"started container {name!r} (was {status_before})", data)
        return Outcome(True, f"restarted container {name!r}", data)

    # Probed (remediator/actions/effects.py): a restart shows as a new StartedAt (or, by a
    # restart policy, a higher RestartCount); a heir never restarts a container twice.
    async def probe(self, ctx: ActionContext) -> dict[str, Any]:
        target = ctx.target
        if not isinstance(target, DockerContainerTarget):
            return {}

        def read() -> dict[str, Any]:
            client = engine(ctx.clients, target.docker_host)
            container = get_container(client, target.container_name)
            return {
                "started_at": _started_at(container),
                "restart_count": int(container.attrs.get("RestartCount") or 0),
                "status": status_of(container),
            }

        return await call_bounded(read, PROBE_TIMEOUT)

    def took_effect(self, before: dict[str, Any], now: dict[str, Any]) -> bool:
        started = now.get("started_at")
        if started and started != before.get("started_at"):
            return True
        return int(now.get("restart_count") or 0) > int(before.get("restart_count") or 0)


class DockerStopAction(_ContainerAction):
    name: ClassVar[str] = "docker.stop"
    step_type = DockerStop
    verb: ClassVar[str] = "stop"

    def params(self, step: DockerStop) -> str:
        return f" (stop_timeout {step.stop_timeout}s)"

    def apply(self, container: Any, step: DockerStop) -> Outcome:
        status_before = status_of(container)
        if not _running(container):
            data = {"status_before": status_before, "status_after": status_before}
            return Outcome(True, f"container {container.name!r} already stopped", data)
        container.stop(timeout=step.stop_timeout)
        container.reload()
        data = {"status_before": status_before, "status_after": status_of(container)}
        if _running(container):
            return Outcome(False, f"container {container.name!r} still running after stop", data)
        return Outcome(True, f"stopped container {container.name!r}", data)


class DockerStartAction(_ContainerAction):
    name: ClassVar[str] = "docker.start"
    step_type = DockerStart
    verb: ClassVar[str] = "start"

    def apply(self, container: Any, step: Any) -> Outcome:
        status_before = status_of(container)
        name = container.name
        data: dict[str, Any] = {"status_before": status_before, "status_after": status_before}
        if _paused(container):
            return Outcome(False, f"container {name!r} is paused (use docker.unpause)", data)
        if _running(container):
            return Outcome(True, f"container {name!r} already running", data)
        container.start()
        container.reload()
        data["status_after"] = status_of(container)
        data["started_at_after"] = _started_at(container)
        if not _running(container):
            return Outcome(False, f"container {name!r} is {data['status_after']} after start", data)
        return Outcome(True, f"started container {name!r}", data)


class DockerKillAction(_ContainerAction):
    name: ClassVar[str] = "docker.kill"
    step_type = DockerKill
    verb: ClassVar[str] = "kill"

    def params(self, step: DockerKill) -> str:
        return f" with {step.signal}"

    def apply(self, container: Any, step: DockerKill) -> Outcome:
        signal = str(step.signal)
        status_before = status_of(container)
        name = container.name
        if not _running(container):
            data = {"signal": signal, "status_before": status_before, "status_after": status_before}
            if signal in _KILL_SIGNALS:
                return Outcome(True, f"container {name!r} already stopped", data)
            return Outcome(False, f"container {name!r} is {status_before}; {signal} not sent", data)
        container.kill(signal=signal)
        container.reload()
        data = {
            "signal": signal,
            "status_before": status_before,
            "status_after": status_of(container),
        }
        return Outcome(True, f"sent {signal} to container {name!r}", data)


class DockerPauseAction(_ContainerAction):
    name: ClassVar[str] = "docker.pause"
    step_type = DockerPause
    verb: ClassVar[str] = "pause"

    def apply(self, container: Any, step: Any) -> Outcome:
        status_before = status_of(container)
        name = container.name
        data = {"status_before": status_before, "status_after": status_before}
        if _paused(container):
            return Outcome(True, f"container {name!r} already paused", data)
        if not _running(container):
            return Outcome(False, f"container {name!r} is {status_before}; cannot pause", data)
        container.pause()
        container.reload()
        data["status_after"] = status_of(container)
        if not _paused(container):
            return Outcome(False, f"container {name!r} is {data['status_after']} after pause", data)
        return Outcome(True, f"paused container {name!r}", data)


class DockerUnpauseAction(_ContainerAction):
    name: ClassVar[str] = "docker.unpause"
    step_type = DockerUnpause
    verb: ClassVar[str] = "unpause"

    def apply(self, container: Any, step: Any) -> Outcome:
        status_before = status_of(container)
        name = container.name
        data = {"status_before": status_before, "status_after": status_before}
        if not _running(container):
            return Outcome(
                False, f"container {name!r} is {status_before}; nothing to unpause", data
            )
        if not _paused(container):
            return Outcome(True, f"container {name!r} is not paused (already running)", data)
        container.unpause()
        container.reload()
        data["status_after"] = status_of(container)
        if _paused(container) or not _running(container):
            return Outcome(
                False, f"container {name!r} is {data['status_after']} after unpause", data
            )
        return Outcome(True, f"unpaused container {name!r}", data)


def parse_memory(text: str) -> int:
    """Bytes from ``512m``-style sizes (suffix b/k/m/g, powers of 1024; none = bytes)."""
    text = text.strip().lower()
    unit = _UNITS.get(text[-1:], 0)
    return int(text[:-1]) * unit if unit else int(text)


def _limits(container: Any) -> tuple[int, int, int]:
    host = container.attrs.get("HostConfig") or {}
    return (
        int(host.get("Memory") or 0),
        int(host.get("MemorySwap") or 0),
        int(host.get("NanoCpus") or 0),
    )


class DockerUpdateLimitsAction(_ContainerAction):
    """Live-update the memory limit and/or CPU quota (``NanoCpus``) of a container.

    Docker refuses a memory limit above the current memory+swap limit unless the swap limit is
    updated too: a positive swap allowance (``MemorySwap - Memory``) is preserved, and an
    unlimited/unset swap limit stays unlimited (``-1``).
    """

    name: ClassVar[str] = "docker.update_limits"
    step_type = DockerUpdateLimits
    verb: ClassVar[str] = "update limits of"

    def params(self, step: Any) -> str:
        parts = [f"memory={step.memory}"] if step.memory is not None else []
        parts += [f"cpus={step.cpus:g}"] if step.cpus is not None else []
        return f" ({' '.join(parts)})"

    def apply(self, container: Any, step: Any) -> Outcome:
        memory, swap, nano = _limits(container)
        body: dict[str, int] = {}
        want_memory = memory if step.memory is None else parse_memory(step.memory)
        want_nano = nano if step.cpus is None else round(float(step.cpus) * 1e9)
        name = container.name
        data: dict[str, Any] = {
            "memory_before": memory,
            "memory_swap_before": swap,
            "nano_cpus_before": nano,
        }
        if want_memory <= 0:
            return Outcome(False, "memory limit must be greater than 0", data)
        if want_memory != memory:
            body["Memory"] = want_memory
            body["MemorySwap"] = -1 if swap <= 0 else want_memory + max(swap - memory, 0)
        if want_nano != nano:
            body["NanoCpus"] = want_nano
        if body:
            # The SDK's update() has no NanoCpus parameter, so post the API body directly.
            api = container.client.api
            response = api._post_json(api._url("/containers/{0}/update", container.id), data=body)
            api._raise_for_status(response)
            container.reload()
        memory_after, swap_after, nano_after = _limits(container)
        data |= {
            "memory_after": memory_after,
            "memory_swap_after": swap_after,
            "nano_cpus_after": nano_after,
            "changed": sorted(body),
        }
        if (memory_after, nano_after) != (want_memory, want_nano):
            return Outcome(False, f"limits of container {name!r} did not take effect", data)
        if not body:
            return Outcome(True, f"limits of container {name!r} already in place", data)
        return Outcome(
            True, f"updated limits of container {name!r} ({', '.join(sorted(body))})", data
        )


ACTIONS: tuple[BuiltinAction, ...] = (
    DockerRestartAction(),
    DockerStopAction(),
    DockerStartAction(),
    DockerKillAction(),
    DockerPauseAction(),
    DockerUnpauseAction(),
    DockerUpdateLimitsAction(),
)
