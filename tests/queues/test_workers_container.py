"""Consumers in a registered container: queue.resume starts it (RabbitMQ), queue.restart_workers
restarts it (RQ), on the real Docker engine of tests/services.sh."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.queues.actions import act, target
from tests.realservices import ContainerFactory, require

pytestmark = pytest.mark.docker


@pytest.fixture
def docker_host() -> str:
    return require("docker")


def test_queue_resume_starts_the_stopped_consumers_container(
    container_factory: ContainerFactory, tmp_path: Path, docker_host: str
) -> None:
    consumer: Any = container_factory(("sleep", "3600"), init=True)
    consumer.stop(timeout=1)
    consumer.reload()
    assert consumer.status == "exited"
    secret = tmp_path / "password"
    secret.write_text("unused", encoding="utf-8")
    broker = target(
        type="rabbitmq",
        name="broker",
        api_url="http://127.0.0.1:1",
        username="u",
        password_file=str(secret),
        queues=["orders"],
        workers_container=consumer.name,
        docker_host=docker_host,
    )

    result = act(broker, "queue.resume", queue="orders")

    assert result.ok, result.detail
    assert result.data["ids"] == [consumer.name]
    consumer.reload()
    assert consumer.status == "running"


def test_queue_restart_workers_restarts_the_rq_workers_container(
    container_factory: ContainerFactory, docker_host: str
) -> None:
    worker: Any = container_factory(("sleep", "3600"), init=True)
    worker.reload()
    started = worker.attrs["State"]["StartedAt"]
    jobs = target(
        type="rq",
        name="jobs",
        url="redis://127.0.0.1:1/0",
        queues=["default"],
        workers_container=worker.name,
        docker_host=docker_host,
    )

    result = act(jobs, "queue.restart_workers", queue="default")

    assert result.ok, result.detail
    worker.reload()
    assert worker.status == "running" and worker.attrs["State"]["StartedAt"] != started
