"""docker.scale: change the number of running containers of a Compose service.

The service's containers are those labelled ``com.docker.compose.project=<project>`` and
``com.docker.compose.service=<service>`` on the target's engine; the replicas are the running
ones. The wanted count (``replicas``, or current + ``delta``) is clamped to the target's
``[min_replicas, max_replicas]``.

Scaling up first starts stopped containers of the service (lowest number first), then creates
new ones copied from an existing container (image, command, entrypoint, env, every label with
the next free ``com.docker.compose.container-number``, working dir, user, healthcheck, stop
signal/timeout, and the host config: network mode and networks, restart policy, memory/CPU
limits, binds/mounts, init, ...), named ``<project>-<service>-<n>``, and starts them. Port
bindings are never copied (they would collide). Scaling down stops and removes the
highest-numbered running containers first (their volumes are kept).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, ClassVar, Literal

import docker.errors
from pydantic import Field, model_validator

from remediator.actions.base import ActionContext, ActionResult, BuiltinAction, StepModel
from remediator.actions.docker import run_on_engine
from remediator.config.targets import DockerServiceTarget
from remediator.tech.docker import (
    CONTAINER_NAME_RE,
    ENGINE_ERRORS,
    PROJECT_LABEL,
    SERVICE_LABEL,
    InvalidName,
    Outcome,
    describe_error,
    state_of,
)


class DockerScale(StepModel):
    action: Literal["docker.scale"]
    replicas: int | None = Field(default=None, ge=0)
    delta: int | None = None

    @model_validator(mode="after")
    def _one(self) -> DockerScale:
        if (self.replicas is None) == (self.delta is None):
            raise ValueError("give exactly one of 'replicas' or 'delta'")
        return self


NUMBER_LABEL = "com.docker.compose.container-number"
SERVICE_TARGETS: frozenset[str] = frozenset({"docker_service"})

_CONFIG_KEYS = (
    "Cmd",
    "Entrypoint",
    "Env",
    "WorkingDir",
    "User",
    "Healthcheck",
    "StopSignal",
    "StopTimeout",
    "ExposedPorts",
    "Volumes",
    "Tty",
    "OpenStdin",
    "StdinOnce",
    "Shell",
)
# Copied verbatim from the source's HostConfig; PortBindings/Links are deliberately absent.
_HOST_CONFIG_KEYS = (
    "NetworkMode",
    "RestartPolicy",
    "Memory",
    "MemorySwap",
    "MemoryReservation",
    "NanoCpus",
    "CpuShares",
    "CpuQuota",
    "CpuPeriod",
    "CpusetCpus",
    "CpusetMems",
    "PidsLimit",
    "Binds",
    "Mounts",
    "Tmpfs",
    "VolumesFrom",
    "Init",
    "CapAdd",
    "CapDrop",
    "Privileged",
    "SecurityOpt",
    "ReadonlyRootfs",
    "LogConfig",
    "ExtraHosts",
    "Dns",
    "DnsOptions",
    "DnsSearch",
    "ShmSize",
    "Ulimits",
    "Devices",
    "GroupAdd",
    "Sysctls",
    "OomScoreAdj",
    "IpcMode",
    "PidMode",
    "Runtime",
)
_BUILTIN_NETWORK_MODES = frozenset({"", "default", "bridge", "host", "none"})
_MAX_NAME_ATTEMPTS = 20


def container_number(container: Any) -> int:
    """The Compose container number (0 when the label is missing or not a number)."""
    value = str((container.labels or {}).get(NUMBER_LABEL, ""))
    return int(value) if value.isdigit() else 0


def _order(container: Any) -> tuple[int, str]:
    return container_number(container), str(container.name)


def service_containers(client: Any, project: str, service: str) -> list[Any]:
    """All containers of the service (any state), lowest number first."""
    labels = [f"{PROJECT_LABEL}={project}", f"{SERVICE_LABEL}={service}"]
    found = client.containers.list(all=True, filters={"label": labels})
    return sorted(found, key=_order)


def _is_replica(container: Any) -> bool:
    return bool(state_of(container).get("Running"))


def clamp(requested: int, low: int, high: int) -> int:
    """``requested`` within ``[low, high]`` (``high`` wins if the bounds cross), never < 0."""
    return max(0, min(max(requested, low), high))


def _image_ref(client: Any, attrs: dict[str, Any]) -> str:
    """The source's image by name if that name still means the same image, else by ID."""
    image_id = str(attrs.get("Image") or "")
    name = str((attrs.get("Config") or {}).get("Image") or "")
    if name and name != image_id:
        with contextlib.suppress(docker.errors.NotFound):
            if client.images.get(name).id == image_id:
                return name
    return image_id


def _endpoints(attrs: dict[str, Any], exclude: set[str]) -> dict[str, dict[str, Any]]:
    """Per user-defined network of the source, the endpoint config with its service aliases."""
    networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    endpoints: dict[str, dict[str, Any]] = {}
    for network, endpoint in networks.items():
        if network in _BUILTIN_NETWORK_MODES:
            continue
        aliases = [a for a in (endpoint or {}).get("Aliases") or [] if a not in exclude]
        endpoints[str(network)] = {"Aliases": aliases} if aliases else {}
    return endpoints


def _replica_config(client: Any, source: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The create body copied from ``source`` and the extra networks to connect afterwards."""
    attrs: dict[str, Any] = source.attrs
    config_in = attrs.get("Config") or {}
    host_in = attrs.get("HostConfig") or {}
    config = {k: config_in[k] for k in _CONFIG_KEYS if config_in.get(k) not in (None, "")}
    config["Image"] = _image_ref(client, attrs)
    config["Labels"] = dict(config_in.get("Labels") or {})
    config["HostConfig"] = {k: host_in[k] for k in _HOST_CONFIG_KEYS if host_in.get(k) is not None}
    extra: dict[str, Any] = {}
    mode = str(host_in.get("NetworkMode") or "")
    if mode not in _BUILTIN_NETWORK_MODES and not mode.startswith("container:"):
        extra = _endpoints(attrs, {str(source.name), str(source.id)[:12]})
        config["NetworkingConfig"] = {"EndpointsConfig": {mode: extra.pop(mode, {})}}
    return config, extra


def _create_replica(
    client: Any,
    source: Any,
    project: str,
    service: str,
    taken_numbers: set[int],
    taken_names: set[str],
) -> str:
    """Create and start one new replica copied from ``source``; returns its name."""
    config, extra_networks = _replica_config(client, source)
    labels = dict(config["Labels"])
    for _attempt in range(_MAX_NAME_ATTEMPTS):
        number = 1
        while number in taken_numbers:
            number += 1
        name = f"{project}-{service}-{number}"
        taken_numbers.add(number)
        if name in taken_names:
            continue
        if not CONTAINER_NAME_RE.match(name):
            raise InvalidName(name)
        config["Labels"] = {**labels, NUMBER_LABEL: str(number)}
        try:
            created = client.api.create_container_from_config(config, name=name)
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # the name is used by a container outside the service
                taken_names.add(name)
                continue
            raise
        container_id = str(created["Id"])
        taken_names.add(name)
        try:
            for network, endpoint in extra_networks.items():
                aliases = endpoint.get("Aliases") or None
                client.api.connect_container_to_network(container_id, network, aliases=aliases)
            client.api.start(container_id)
        except ENGINE_ERRORS:
            with contextlib.suppress(*ENGINE_ERRORS):
                client.api.remove_container(container_id, force=True)
            raise
        return name
    raise InvalidName(f"{project}-{service}-<n> (no free name)")


def _remove(container: Any) -> None:
    """Stop (with the container's own stop timeout) and remove; gone already is fine."""
    try:
        container.stop()
        container.remove()
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # 409: removal already in progress (e.g. AutoRemove)
            raise


def _scale(client: Any, target: DockerServiceTarget, step: Any) -> Outcome:
    project, service = target.project, target.service
    containers = service_containers(client, project, service)
    replicas = [c for c in containers if _is_replica(c)]
    requested = step.replicas if step.replicas is not None else len(replicas) + step.delta
    desired = clamp(int(requested), target.min_replicas, target.max_replicas)
    data: dict[str, Any] = {
        "project": project,
        "service": service,
        "before": len(replicas),
        "requested": requested,
        "desired": desired,
        "min_replicas": target.min_replicas,
        "max_replicas": target.max_replicas,
        "names_before": [c.name for c in replicas],
        "started": [],
        "created": [],
        "removed": [],
    }
    label = f"{project}/{service}"
    error: str | None = None
    try:
        if desired > len(replicas):
            missing = desired - len(replicas)
            for container in [c for c in containers if not _is_replica(c)][:missing]:
                container.start()
                data["started"].append(container.name)
                missing -= 1
            if missing and not containers:
                error = f"service {label!r} has no container to copy a new replica from"
            elif missing:
                source = replicas[0] if replicas else containers[0]
                numbers = {container_number(c) for c in containers}
                names = {str(c.name) for c in containers}
                for _ in range(missing):
                    name = _create_replica(client, source, project, service, numbers, names)
                    data["created"].append(name)
        elif desired < len(replicas):
            for container in sorted(replicas, key=_order, reverse=True)[: len(replicas) - desired]:
                _remove(container)
                data["removed"].append(container.name)
    except ENGINE_ERRORS as exc:
        error = describe_error(exc)
    after = [c for c in service_containers(client, project, service) if _is_replica(c)]
    data["after"] = len(after)
    data["names_after"] = [c.name for c in after]
    clamped = f" (requested {requested}, clamped to {desired})" if requested != desired else ""
    if error is not None:
        return Outcome(False, f"scaling {label!r} failed: {error}", data)
    if len(after) != desired:
        return Outcome(False, f"service {label!r} has {len(after)} replicas, not {desired}", data)
    if data["before"] == desired:
        return Outcome(True, f"service {label!r} already at {desired} replicas{clamped}", data)
    return Outcome(True, f"scaled {label!r} from {data['before']} to {desired}{clamped}", data)


class DockerScaleAction:
    name: ClassVar[str] = "docker.scale"
    step_type: ClassVar[type[StepModel]] = DockerScale
    target_types: ClassVar[frozenset[str]] = SERVICE_TARGETS
    changes_state: ClassVar[bool] = True
    switches_endpoint: ClassVar[bool] = False

    async def run(self, ctx: ActionContext) -> ActionResult:
        started = time.monotonic()
        target = ctx.target
        if getattr(target, "type", None) not in self.target_types or not isinstance(
            target, DockerServiceTarget
        ):
            return ActionResult(False, "wrong target type", time.monotonic() - started)
        step = ctx.step
        label = f"{target.project}/{target.service}"
        if ctx.dry_run:
            bounds = f"within [{target.min_replicas}, {target.max_replicas}]"
            if step.replicas is not None:
                wanted = clamp(step.replicas, target.min_replicas, target.max_replicas)
                detail = f"dry-run: would scale service {label!r} to {wanted} replicas ({bounds})"
            else:
                detail = f"dry-run: would scale service {label!r} by {step.delta:+d} ({bounds})"
            return ActionResult(True, detail, time.monotonic() - started, {"service": label})

        def body(client: Any) -> Outcome:
            return _scale(client, target, step)

        return await run_on_engine(ctx, target.docker_host, body, started)


ACTIONS: tuple[BuiltinAction, ...] = (DockerScaleAction(),)
