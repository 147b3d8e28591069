"""Built-in health checks for Docker targets.

``docker_container``: healthy when the container is running and not paused and, if it has a
healthcheck, its health status is ``healthy`` (``starting`` counts as unhealthy).
``docker_service``: healthy when at least ``min_replicas`` containers of the Compose service are
running (paused ones do not count).

Checks never raise for engine errors or timeouts: they report unhealthy with a short detail.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

from remediator.checks.base import CheckResult, HealthCheck
from remediator.clients import Clients
from remediator.config.targets import DockerContainerTarget, DockerServiceTarget, Target
from remediator.tech.docker import (
    ENGINE_ERRORS,
    PROJECT_LABEL,
    SERVICE_LABEL,
    call_bounded,
    describe_error,
    engine,
    get_container,
    state_of,
    timeout_detail,
)


async def _bounded(
    clients: Clients,
    docker_host: str | None,
    body: Callable[[Any], tuple[bool, str]],
    timeout: float,
    started: float,
) -> CheckResult:
    def blocking() -> tuple[bool, str]:
        return body(engine(clients, docker_host))

    try:
        healthy, detail = await call_bounded(blocking, timeout)
    except ENGINE_ERRORS as exc:
        elapsed = time.monotonic() - started
        if isinstance(exc, TimeoutError) and elapsed >= timeout:
            return CheckResult(False, timeout_detail(timeout), elapsed)
        return CheckResult(False, describe_error(exc), elapsed)
    return CheckResult(healthy, detail, time.monotonic() - started)


def container_health(container: Any) -> tuple[bool, str]:
    """(healthy, detail) from an inspected container's state."""
    state = state_of(container)
    name = container.name
    status = str(state.get("Status") or "unknown")
    if state.get("Paused"):
        return False, f"container {name!r} is paused"
    if not state.get("Running") or status == "restarting":
        return False, f"container {name!r} is {status}"
    health = state.get("Health")
    if health:
        health_status = str(health.get("Status") or "unknown")
        if health_status != "healthy":
            return False, f"container {name!r} is running but {health_status}"
        return True, f"container {name!r} is running and healthy"
    return True, f"container {name!r} is running"


class DockerContainerCheck:
    target_type: ClassVar[str] = "docker_container"

    async def check(self, target: Target, clients: Clients, *, timeout: float) -> CheckResult:
        started = time.monotonic()
        if not isinstance(target, DockerContainerTarget):
            return CheckResult(False, "wrong target type", time.monotonic() - started)
        name = target.container_name

        def body(client: Any) -> tuple[bool, str]:
            return container_health(get_container(client, name))

        return await _bounded(clients, target.docker_host, body, timeout, started)


class DockerServiceCheck:
    target_type: ClassVar[str] = "docker_service"

    async def check(self, target: Target, clients: Clients, *, timeout: float) -> CheckResult:
        started = time.monotonic()
        if not isinstance(target, DockerServiceTarget):
            return CheckResult(False, "wrong target type", time.monotonic() - started)
        label = f"{target.project}/{target.service}"
        minimum = target.min_replicas

        def body(client: Any) -> tuple[bool, str]:
            filters = {
                "label": [f"{PROJECT_LABEL}={target.project}", f"{SERVICE_LABEL}={target.service}"],
                "status": "running",
            }
            running = len(client.containers.list(filters=filters, sparse=True))
            detail = f"{running} of min {minimum} containers of service {label!r} running"
            return running >= minimum, detail

        return await _bounded(clients, target.docker_host, body, timeout, started)


CHECKS: tuple[HealthCheck, ...] = (DockerContainerCheck(), DockerServiceCheck())
