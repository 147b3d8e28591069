"""The Docker actions and health checks against the real test dockerd (``tests/services.sh up``).

Every container runs from the local test image with network_mode ``none``, carries
``remediator.test=1`` and is removed at teardown (by ``container_factory``, or for containers the
scale action creates, by the test's unique Compose project label).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import docker.errors
import pytest

from remediator.actions.base import Action, ActionContext, ActionResult
from remediator.actions.docker import (
    ACTIONS,
    DockerKill,
    DockerKillAction,
    DockerPause,
    DockerPauseAction,
    DockerRestart,
    DockerRestartAction,
    DockerStart,
    DockerStartAction,
    DockerStop,
    DockerStopAction,
    DockerUnpause,
    DockerUnpauseAction,
    DockerUpdateLimits,
    DockerUpdateLimitsAction,
    parse_memory,
)
from remediator.actions.docker_scale import ACTIONS as SCALE_ACTIONS
from remediator.actions.docker_scale import (
    NUMBER_LABEL,
    DockerScale,
    DockerScaleAction,
    clamp,
)
from remediator.checks.base import CheckResult
from remediator.checks.docker import CHECKS, DockerContainerCheck, DockerServiceCheck
from remediator.clients import Clients
from remediator.config import steps
from remediator.config.targets import DockerContainerTarget, DockerServiceTarget, Target
from remediator.tech.docker import PROJECT_LABEL, SERVICE_LABEL
from tests.realservices import TEST_LABEL, ContainerFactory
from tests.waiting import wait_for

pytestmark = pytest.mark.docker

DOWN_ENGINE = "unix:///tmp/nonexistent-docker.sock"
MiB = 1024**2

Step = Any  # one of the remediator.config.steps models


# ------------------------------------------------------------------------------------------------
# helpers and fixtures
# ------------------------------------------------------------------------------------------------


def run(
    action: Action, target: Target, step: Step, clients: Clients, *, dry_run: bool = False
) -> ActionResult:
    ctx = ActionContext(target=target, step=step, clients=clients, dry_run=dry_run)
    return asyncio.run(action.run(ctx))


def check(checker: Any, target: Target, clients: Clients, timeout: float = 10.0) -> CheckResult:
    result: CheckResult = asyncio.run(checker.check(target, clients, timeout=timeout))
    return result


def container_target(container: Any, docker_host: str | None = None) -> DockerContainerTarget:
    return DockerContainerTarget(
        type="docker_container", name="app", container=container.name, docker_host=docker_host
    )


def state(docker_client: Any, container: Any) -> dict[str, Any]:
    data: dict[str, Any] = docker_client.api.inspect_container(container.id)["State"]
    return data


def host_config(docker_client: Any, container: Any) -> dict[str, Any]:
    data: dict[str, Any] = docker_client.api.inspect_container(container.id)["HostConfig"]
    return data


def restart(stop_timeout: int = 0, **kw: Any) -> DockerRestart:
    return DockerRestart(action="docker.restart", stop_timeout=stop_timeout, **kw)


def stop(stop_timeout: int = 0) -> DockerStop:
    return DockerStop(action="docker.stop", stop_timeout=stop_timeout)


def start() -> DockerStart:
    return DockerStart(action="docker.start")


def kill(signal: str = "SIGKILL") -> DockerKill:
    return DockerKill(action="docker.kill", signal=signal)


def pause() -> DockerPause:
    return DockerPause(action="docker.pause")


def unpause() -> DockerUnpause:
    return DockerUnpause(action="docker.unpause")


def limits(memory: str | None = None, cpus: float | None = None) -> DockerUpdateLimits:
    return DockerUpdateLimits(action="docker.update_limits", memory=memory, cpus=cpus)


def scale(replicas: int | None = None, delta: int | None = None) -> DockerScale:
    return DockerScale(action="docker.scale", replicas=replicas, delta=delta)


@pytest.fixture
def docker_host(docker_client: Any, services_env: dict[str, str]) -> str:
    """DOCKER_HOST of the test engine (``docker_client`` has verified it is not the system one)."""
    return services_env["DOCKER_HOST"]


@pytest.fixture
def clients(docker_host: str) -> Iterator[Clients]:
    made = Clients(default_docker_host=docker_host)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def sleeper(container_factory: ContainerFactory) -> Any:
    """A running container whose init forwards SIGTERM, so stops are immediate."""
    return container_factory(("sleep", "3600"), init=True)


class Service:
    """A fake Compose service: one labelled container, plus whatever the scale action adds."""

    def __init__(self, docker_client: Any, project: str, first: Any) -> None:
        self.client = docker_client
        self.project = project
        self.first = first

    def target(self, min_replicas: int = 1, max_replicas: int = 5) -> DockerServiceTarget:
        return DockerServiceTarget(
            type="docker_service",
            name="web-service",
            project=self.project,
            service="web",
            min_replicas=min_replicas,
            max_replicas=max_replicas,
        )

    def containers(self, *, running_only: bool = True) -> list[Any]:
        filters = {"label": [f"{PROJECT_LABEL}={self.project}", f"{SERVICE_LABEL}=web"]}
        if running_only:
            filters["status"] = ["running"]
        found = self.client.containers.list(all=True, filters=filters)
        return sorted(found, key=lambda c: int(c.labels.get(NUMBER_LABEL, "0")))

    def names(self) -> list[str]:
        return [str(c.name) for c in self.containers()]


@pytest.fixture
def service(docker_client: Any, container_factory: ContainerFactory) -> Iterator[Service]:
    project = f"rmtest{uuid.uuid4().hex[:12]}"
    labels = {
        PROJECT_LABEL: project,
        SERVICE_LABEL: "web",
        NUMBER_LABEL: "1",
        "com.docker.compose.oneoff": "False",
        "app.tier": "frontend",
    }
    first = container_factory(
        ("sleep", "3600"),
        labels=labels,
        init=True,
        mem_limit="64m",
        nano_cpus=500_000_000,
        restart_policy={"Name": "on-failure", "MaximumRetryCount": 2},
        environment={"FOO": "bar"},
        working_dir="/tmp",
        user="65534",
        stop_signal="SIGTERM",
    )
    try:
        yield Service(docker_client, project, first)
    finally:
        # Only containers of this test's unique project that carry the test label.
        filters = {"label": [f"{PROJECT_LABEL}={project}", f"{TEST_LABEL}=1"]}
        for container in docker_client.containers.list(all=True, filters=filters):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)


# ------------------------------------------------------------------------------------------------
# exports
# ------------------------------------------------------------------------------------------------


def test_exports_cover_every_docker_step() -> None:
    names = sorted(action.name for action in (*ACTIONS, *SCALE_ACTIONS))
    assert names == sorted(n for n in steps.action_names() if n.startswith("docker."))
    for action in (*ACTIONS, *SCALE_ACTIONS):
        wanted = "docker_service" if action.name == "docker.scale" else "docker_container"
        assert action.target_types == frozenset({wanted})
    assert [c.target_type for c in CHECKS] == ["docker_container", "docker_service"]
    assert parse_memory("512m") == 512 * MiB
    assert parse_memory("1g") == 1024 * MiB
    assert parse_memory("2k") == 2048
    assert parse_memory("100") == 100
    assert clamp(5, 1, 3) == 3
    assert clamp(-2, 1, 3) == 1
    assert clamp(0, 0, 3) == 0


# ------------------------------------------------------------------------------------------------
# container actions
# ------------------------------------------------------------------------------------------------


def test_restart_changes_started_at(docker_client: Any, clients: Clients, sleeper: Any) -> None:
    before = state(docker_client, sleeper)["StartedAt"]
    result = run(DockerRestartAction(), container_target(sleeper), restart(), clients)
    assert result.ok, result.detail
    assert result.detail == f"restarted container {sleeper.name!r}"
    after = state(docker_client, sleeper)
    assert after["Running"] is True
    assert result.data["started_at_before"] == before
    assert result.data["started_at_after"] == after["StartedAt"] != before
    assert result.data["container"] == sleeper.name
    assert result.duration > 0


def test_restart_of_stopped_container_starts_it(
    docker_client: Any, clients: Clients, sleeper: Any
) -> None:
    sleeper.stop(timeout=0)
    result = run(DockerRestartAction(), container_target(sleeper), restart(), clients)
    assert result.ok, result.detail
    assert "was exited" in result.detail
    assert state(docker_client, sleeper)["Running"] is True


def test_stop_and_start_are_idempotent(docker_client: Any, clients: Clients, sleeper: Any) -> None:
    target = container_target(sleeper)
    result = run(DockerStopAction(), target, stop(), clients)
    assert result.ok, result.detail
    assert state(docker_client, sleeper)["Status"] == "exited"
    again = run(DockerStopAction(), target, stop(), clients)
    assert again.ok and "already stopped" in again.detail

    result = run(DockerStartAction(), target, start(), clients)
    assert result.ok, result.detail
    assert result.data["status_after"] == "running"
    assert state(docker_client, sleeper)["Running"] is True
    again = run(DockerStartAction(), target, start(), clients)
    assert again.ok and "already running" in again.detail


def test_kill_with_sigkill_then_restart(docker_client: Any, clients: Clients, sleeper: Any) -> None:
    target = container_target(sleeper)
    result = run(DockerKillAction(), target, kill("SIGKILL"), clients)
    assert result.ok, result.detail
    assert wait_for(lambda: state(docker_client, sleeper)["Running"] is False, timeout=10)
    assert state(docker_client, sleeper)["ExitCode"] == 137

    again = run(DockerKillAction(), target, kill("SIGKILL"), clients)
    assert again.ok and "already stopped" in again.detail
    hup = run(DockerKillAction(), target, kill("SIGHUP"), clients)
    assert not hup.ok and "not sent" in hup.detail

    result = run(DockerRestartAction(), target, restart(), clients)
    assert result.ok, result.detail
    assert state(docker_client, sleeper)["Running"] is True


def test_pause_and_unpause(docker_client: Any, clients: Clients, sleeper: Any) -> None:
    target = container_target(sleeper)
    result = run(DockerPauseAction(), target, pause(), clients)
    assert result.ok, result.detail
    assert state(docker_client, sleeper)["Paused"] is True
    assert state(docker_client, sleeper)["Status"] == "paused"
    again = run(DockerPauseAction(), target, pause(), clients)
    assert again.ok and "already paused" in again.detail
    started = run(DockerStartAction(), target, start(), clients)
    assert not started.ok and "paused" in started.detail

    result = run(DockerUnpauseAction(), target, unpause(), clients)
    assert result.ok, result.detail
    assert state(docker_client, sleeper)["Paused"] is False
    assert state(docker_client, sleeper)["Running"] is True
    again = run(DockerUnpauseAction(), target, unpause(), clients)
    assert again.ok and "not paused" in again.detail

    sleeper.stop(timeout=0)
    stopped = run(DockerPauseAction(), target, pause(), clients)
    assert not stopped.ok and "cannot pause" in stopped.detail


def test_update_limits_raises_memory_and_sets_cpus(
    docker_client: Any, clients: Clients, container_factory: ContainerFactory
) -> None:
    limited = container_factory(("sleep", "3600"), init=True, mem_limit="64m")
    assert host_config(docker_client, limited)["MemorySwap"] == 128 * MiB
    target = container_target(limited)
    result = run(DockerUpdateLimitsAction(), target, limits("512m", 0.5), clients)
    assert result.ok, result.detail
    config = host_config(docker_client, limited)
    assert config["Memory"] == 512 * MiB
    assert config["MemorySwap"] == 576 * MiB  # the 64m swap allowance is kept
    assert config["NanoCpus"] == 500_000_000
    assert result.data["memory_before"] == 64 * MiB
    assert result.data["memory_after"] == 512 * MiB
    assert result.data["nano_cpus_after"] == 500_000_000
    assert state(docker_client, limited)["Running"] is True

    again = run(DockerUpdateLimitsAction(), target, limits("512m", 0.5), clients)
    assert again.ok and "already in place" in again.detail

    lower = run(DockerUpdateLimitsAction(), target, limits("256m"), clients)
    assert lower.ok, lower.detail
    assert host_config(docker_client, limited)["Memory"] == 256 * MiB


def test_update_limits_on_unlimited_container(
    docker_client: Any, clients: Clients, sleeper: Any
) -> None:
    result = run(DockerUpdateLimitsAction(), container_target(sleeper), limits("128m"), clients)
    assert result.ok, result.detail
    config = host_config(docker_client, sleeper)
    assert config["Memory"] == 128 * MiB
    assert config["MemorySwap"] == -1

    too_many = run(DockerUpdateLimitsAction(), container_target(sleeper), limits(cpus=512), clients)
    assert not too_many.ok
    assert too_many.detail.startswith("docker API error")
    assert "\n" not in too_many.detail


# ------------------------------------------------------------------------------------------------
# docker.scale
# ------------------------------------------------------------------------------------------------


def test_scale_up_to_three_and_back_to_one(
    docker_client: Any, clients: Clients, service: Service
) -> None:
    project, first = service.project, service.first
    up = run(DockerScaleAction(), service.target(), scale(replicas=3), clients)
    assert up.ok, up.detail
    new_names = [f"{project}-web-2", f"{project}-web-3"]
    assert up.data["before"] == 1 and up.data["after"] == 3
    assert up.data["created"] == new_names
    assert up.data["names_after"] == [first.name, *new_names]
    assert service.names() == [first.name, *new_names]

    source = docker_client.api.inspect_container(first.id)
    for number, name in enumerate(new_names, start=2):
        copy = docker_client.api.inspect_container(name)
        labels = copy["Config"]["Labels"]
        assert labels == {**source["Config"]["Labels"], NUMBER_LABEL: str(number)}
        assert labels[TEST_LABEL] == "1"
        assert copy["State"]["Running"] is True
        assert copy["Image"] == source["Image"]
        assert copy["Config"]["Cmd"] == ["sleep", "3600"]
        assert "FOO=bar" in copy["Config"]["Env"]
        assert copy["Config"]["WorkingDir"] == "/tmp"
        assert copy["Config"]["User"] == "65534"
        host = copy["HostConfig"]
        assert host["NetworkMode"] == "none"
        assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
        assert host["Memory"] == 64 * MiB
        assert host["NanoCpus"] == 500_000_000
        assert host["Init"] is True

    healthy = check(DockerServiceCheck(), service.target(min_replicas=3), clients)
    assert healthy.healthy, healthy.detail

    again = run(DockerScaleAction(), service.target(), scale(replicas=3), clients)
    assert again.ok and "already at 3" in again.detail

    down = run(DockerScaleAction(), service.target(), scale(delta=-2), clients)
    assert down.ok, down.detail
    assert down.data["removed"] == list(reversed(new_names))  # highest number first
    assert down.data["before"] == 3 and down.data["after"] == 1
    assert service.names() == [first.name]
    assert [c.name for c in service.containers(running_only=False)] == [first.name]


def test_scale_up_restarts_stopped_replicas_first(
    docker_client: Any, clients: Clients, service: Service
) -> None:
    assert run(DockerScaleAction(), service.target(), scale(replicas=2), clients).ok
    second = docker_client.containers.get(f"{service.project}-web-2")
    second.stop(timeout=0)
    assert len(service.names()) == 1
    unhealthy = check(DockerServiceCheck(), service.target(min_replicas=2), clients)
    assert not unhealthy.healthy
    assert "1 of min 2" in unhealthy.detail

    result = run(DockerScaleAction(), service.target(), scale(delta=1), clients)
    assert result.ok, result.detail
    assert result.data["started"] == [second.name]
    assert result.data["created"] == []
    assert service.names() == [service.first.name, second.name]


def test_scale_is_clamped_to_the_target_bounds(clients: Clients, service: Service) -> None:
    result = run(DockerScaleAction(), service.target(max_replicas=2), scale(replicas=5), clients)
    assert result.ok, result.detail
    assert result.data["requested"] == 5 and result.data["desired"] == 2
    assert "clamped to 2" in result.detail
    assert len(service.names()) == 2

    floor = run(DockerScaleAction(), service.target(min_replicas=1), scale(delta=-5), clients)
    assert floor.ok, floor.detail
    assert floor.data["desired"] == 1
    assert service.names() == [service.first.name]


def test_scale_of_a_service_without_containers(clients: Clients, docker_host: str) -> None:
    target = DockerServiceTarget(
        type="docker_service", name="ghost", project=f"rmtest{uuid.uuid4().hex[:12]}", service="x"
    )
    result = run(DockerScaleAction(), target, scale(replicas=2), clients)
    assert not result.ok
    assert "no container to copy" in result.detail
    assert result.data["after"] == 0


# ------------------------------------------------------------------------------------------------
# failures, dry-run, target types
# ------------------------------------------------------------------------------------------------

CONTAINER_CASES: list[tuple[Action, Step]] = [
    (DockerRestartAction(), restart()),
    (DockerStopAction(), stop()),
    (DockerStartAction(), start()),
    (DockerKillAction(), kill()),
    (DockerPauseAction(), pause()),
    (DockerUnpauseAction(), unpause()),
    (DockerUpdateLimitsAction(), limits("256m", 0.5)),
]


def test_unknown_container_fails_without_exception(clients: Clients) -> None:
    target = DockerContainerTarget(
        type="docker_container", name="ghost", container=f"no-such-{uuid.uuid4().hex}"
    )
    for action, step in CONTAINER_CASES:
        result = run(action, target, step, clients)
        assert not result.ok
        assert result.detail == f"container {target.container_name!r} not found"
    unhealthy = check(DockerContainerCheck(), target, clients)
    assert not unhealthy.healthy and "not found" in unhealthy.detail


def test_id_prefix_and_invalid_names_are_not_accepted(clients: Clients, sleeper: Any) -> None:
    by_id = DockerContainerTarget(type="docker_container", name="app", container=sleeper.id[:12])
    result = run(DockerRestartAction(), by_id, restart(), clients)
    assert not result.ok and "not found" in result.detail
    bad = DockerContainerTarget(type="docker_container", name="app", container="../../x")
    result = run(DockerRestartAction(), bad, restart(), clients)
    assert not result.ok and "invalid container name" in result.detail


def test_dry_run_touches_nothing(docker_client: Any, clients: Clients, service: Service) -> None:
    container = service.first
    before = docker_client.api.inspect_container(container.id)
    name = container.name
    expected = [
        f"dry-run: would restart container {name!r} (stop_timeout 0s)",
        f"dry-run: would stop container {name!r} (stop_timeout 0s)",
        f"dry-run: would start container {name!r}",
        f"dry-run: would kill container {name!r} with SIGKILL",
        f"dry-run: would pause container {name!r}",
        f"dry-run: would unpause container {name!r}",
        f"dry-run: would update limits of container {name!r} (memory=256m cpus=0.5)",
    ]
    for (action, step), detail in zip(CONTAINER_CASES, expected, strict=True):
        result = run(action, container_target(container), step, clients, dry_run=True)
        assert (result.ok, result.detail) == (True, detail)
    result = run(DockerScaleAction(), service.target(), scale(replicas=9), clients, dry_run=True)
    assert result.ok
    assert result.detail == (
        f"dry-run: would scale service '{service.project}/web' to 5 replicas (within [1, 5])"
    )
    after = docker_client.api.inspect_container(container.id)
    assert after["State"] == before["State"]
    assert after["HostConfig"] == before["HostConfig"]
    assert service.names() == [container.name]


def test_down_engine_fails_quickly(docker_host: str, sleeper: Any) -> None:
    down = Clients(default_docker_host=DOWN_ENGINE)
    good = Clients(default_docker_host=docker_host)
    service_target = DockerServiceTarget(type="docker_service", name="s", project="p", service="x")
    try:
        cases: list[tuple[Action, Target, Step, Clients]] = [
            (a, container_target(sleeper), s, down) for a, s in CONTAINER_CASES
        ]
        cases.append((DockerScaleAction(), service_target, scale(replicas=2), down))
        # a target on another engine fails even though the default engine is up
        cases.append(
            (DockerRestartAction(), container_target(sleeper, DOWN_ENGINE), restart(), good)
        )
        for action, target, step, clients in cases:
            began = time.monotonic()
            result = run(action, target, step, clients)
            assert time.monotonic() - began < 3
            assert not result.ok
            assert result.detail.startswith("docker engine unreachable"), result.detail
        check_cases: list[tuple[Any, Target]] = [
            (DockerContainerCheck(), container_target(sleeper)),
            (DockerServiceCheck(), service_target),
        ]
        for checker, check_target in check_cases:
            unhealthy = check(checker, check_target, down)
            assert not unhealthy.healthy
            assert unhealthy.detail.startswith("docker engine unreachable")
    finally:
        down.close()
        good.close()


def test_step_timeout_bounds_the_action(
    docker_client: Any, clients: Clients, container_factory: ContainerFactory
) -> None:
    stubborn = container_factory(("sleep", "3600"))  # PID 1 sleep ignores SIGTERM
    result = run(
        DockerRestartAction(), container_target(stubborn), restart(1, timeout=0.2), clients
    )
    assert not result.ok
    assert result.detail == "timed out after 0.2s"
    assert result.duration < 1


def test_wrong_target_type(clients: Clients, sleeper: Any) -> None:
    service_target = DockerServiceTarget(type="docker_service", name="s", project="p", service="x")
    for action, step in CONTAINER_CASES:
        result = run(action, service_target, step, clients)
        assert (result.ok, result.detail) == (False, "wrong target type")
    result = run(DockerScaleAction(), container_target(sleeper), scale(replicas=1), clients)
    assert (result.ok, result.detail) == (False, "wrong target type")
    assert check(DockerContainerCheck(), service_target, clients).detail == "wrong target type"
    assert check(DockerServiceCheck(), container_target(sleeper), clients).detail == (
        "wrong target type"
    )


# ------------------------------------------------------------------------------------------------
# health checks
# ------------------------------------------------------------------------------------------------


def test_container_check_running_paused_stopped(clients: Clients, sleeper: Any) -> None:
    target = container_target(sleeper)
    healthy = check(DockerContainerCheck(), target, clients)
    assert healthy.healthy, healthy.detail
    assert healthy.detail == f"container {sleeper.name!r} is running"

    sleeper.pause()
    paused = check(DockerContainerCheck(), target, clients)
    assert not paused.healthy and "paused" in paused.detail
    sleeper.unpause()
    assert check(DockerContainerCheck(), target, clients).healthy

    sleeper.stop(timeout=0)
    stopped = check(DockerContainerCheck(), target, clients)
    assert not stopped.healthy and "exited" in stopped.detail


def test_container_check_follows_the_healthcheck(
    clients: Clients, container_factory: ContainerFactory
) -> None:
    second = 1_000_000_000
    passing = container_factory(
        ("sleep", "3600"), init=True, healthcheck={"test": ["CMD", "true"], "interval": second}
    )
    failing = container_factory(
        ("sleep", "3600"),
        init=True,
        healthcheck={"test": ["CMD", "false"], "interval": second, "retries": 1},
    )
    slow = container_factory(
        ("sleep", "3600"),
        init=True,
        healthcheck={"test": ["CMD", "true"], "interval": 600 * second},
    )
    checker = DockerContainerCheck()
    starting = check(checker, container_target(slow), clients)
    assert not starting.healthy and "starting" in starting.detail

    assert wait_for(lambda: check(checker, container_target(passing), clients).healthy)
    result = check(checker, container_target(passing), clients)
    assert result.detail == f"container {passing.name!r} is running and healthy"
    assert wait_for(
        lambda: "unhealthy" in check(checker, container_target(failing), clients).detail
    )
    assert not check(checker, container_target(failing), clients).healthy


def test_service_check_counts_running_containers(clients: Clients, service: Service) -> None:
    assert check(DockerServiceCheck(), service.target(min_replicas=1), clients).healthy
    short = check(DockerServiceCheck(), service.target(min_replicas=2), clients)
    assert not short.healthy and short.detail.startswith("1 of min 2")
    service.first.pause()
    paused = check(DockerServiceCheck(), service.target(min_replicas=1), clients)
    assert not paused.healthy
    service.first.unpause()
