"""Docker plumbing shared by the Docker actions and health checks.

Every Docker SDK call is blocking, so it runs in a worker thread (:func:`asyncio.to_thread`)
bounded by :func:`asyncio.wait_for`. Engine errors never escape as exceptions: they become a
short, single-line, sanitized description (:func:`describe_error`). Container names only ever
come from a registered target and are checked against Docker's own name syntax, and a looked-up
container must carry exactly that name (Docker would otherwise also match an ID prefix).
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import docker.errors

from remediator.clients import Clients

T = TypeVar("T")

CONTAINER_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$")
DEFAULT_ENGINE = "unix:///var/run/docker.sock"  # what docker.from_env() uses without DOCKER_HOST
_MAX_DETAIL = 200
_PROBE_TIMEOUT = 2.0
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


class Outcome(NamedTuple):
    """What an action's blocking body reports; the runner adds the duration."""

    ok: bool
    detail: str
    data: dict[str, Any]


class EngineUnreachable(Exception):
    """The engine's socket does not accept connections (dockerd down or socket missing)."""


class ContainerNotFound(Exception):
    """No container with exactly this name exists on the engine."""

    def __init__(self, name: str) -> None:
        super().__init__(f"container {name!r} not found")
        self.name = name


class InvalidName(Exception):
    """A container name from configuration that Docker would not accept as a name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"invalid container name {name!r}")


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."


def _is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, TimeoutError):
        return True
    # requests/urllib3 timeouts, matched by name so that neither needs type stubs here.
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"Timeout", "ReadTimeoutError", "ConnectTimeoutError"})


def describe_error(exc: BaseException) -> str:
    """A short, single-line description of an engine error, without a stack trace."""
    if isinstance(exc, ContainerNotFound | InvalidName):
        return str(exc)
    if isinstance(exc, EngineUnreachable):
        return _one_line(f"docker engine unreachable: {exc}")
    if isinstance(exc, docker.errors.NotFound):
        return _one_line(f"not found: {exc.explanation or exc}")
    if isinstance(exc, docker.errors.APIError):
        return _one_line(f"docker API error {exc.status_code}: {exc.explanation or exc}")
    if _is_timeout(exc):
        return "docker engine did not answer in time"
    text = str(exc)
    if isinstance(exc, docker.errors.DockerException):
        if "Error while fetching server API version" in text or "Connection" in text:
            return "docker engine unreachable"
        return _one_line(f"docker error: {text}")
    if isinstance(exc, OSError):  # requests' ConnectionError is an OSError too
        return _one_line(f"docker engine unreachable: {exc.strerror or type(exc).__name__}")
    return _one_line(f"docker error: {type(exc).__name__}")


def engine_address(clients: Clients, docker_host: str | None) -> str:
    """The engine URL a target resolves to (mirrors :meth:`Clients.docker`)."""
    return (
        docker_host
        or clients.default_docker_host
        or os.environ.get("DOCKER_HOST")
        or DEFAULT_ENGINE
    )


def _probe(address: str) -> None:
    """Fail fast (and without the SDK's leaked socket) when a unix socket is not served."""
    if not address.startswith("unix://"):
        return
    path = address.removeprefix("unix://")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(_PROBE_TIMEOUT)
            sock.connect(path)
    except OSError as exc:
        raise EngineUnreachable(exc.strerror or type(exc).__name__) from None


def engine(clients: Clients, docker_host: str | None) -> Any:
    """The SDK client for a target's engine, after a cheap reachability probe (blocking)."""
    _probe(engine_address(clients, docker_host))
    return clients.docker(docker_host)


def get_container(client: Any, name: str) -> Any:
    """The container named exactly ``name`` (never an ID or ID-prefix match)."""
    if not CONTAINER_NAME_RE.match(name):
        raise InvalidName(name)
    try:
        container = client.containers.get(name)
    except docker.errors.NotFound:
        raise ContainerNotFound(name) from None
    if container.name != name:
        raise ContainerNotFound(name)
    return container


# Errors reported as a failed result instead of being raised (requests' errors are OSErrors).
ENGINE_ERRORS: tuple[type[BaseException], ...] = (
    docker.errors.DockerException,
    OSError,
    EngineUnreachable,
    ContainerNotFound,
    InvalidName,
)


async def call_bounded(func: Callable[[], T], timeout: float) -> T:
    """Run a blocking call in a thread, bounded by ``timeout`` seconds.

    On timeout the thread cannot be interrupted; it finishes in the background (the SDK's own
    HTTP timeout bounds it) while the caller gets :class:`TimeoutError` now.
    """
    return await asyncio.wait_for(asyncio.to_thread(func), timeout=timeout)


def timeout_detail(timeout: float) -> str:
    return f"timed out after {timeout:g}s"


def state_of(container: Any) -> dict[str, Any]:
    """The ``State`` section of an inspected container (empty if absent)."""
    state = container.attrs.get("State") or {}
    return dict(state)


def status_of(container: Any) -> str:
    return str(state_of(container).get("Status") or "unknown")
