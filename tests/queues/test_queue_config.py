"""check-config refuses queue steps a backend does not support or a target does not allow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from remediator.cli import main
from remediator.config import model as config_mod
from remediator.config.targets import RqTarget
from remediator.engine.health import HealthMonitor
from remediator.errors import ConfigError

TARGETS: list[dict[str, Any]] = [
    {"name": "jobs", "type": "rq", "url": "redis://127.0.0.1:1/0", "queues": ["default"]},
    {
        "name": "tasks",
        "type": "celery",
        "broker_url": "redis://127.0.0.1:1/0",
        "queues": ["celery"],
    },
    {
        "name": "broker",
        "type": "rabbitmq",
        "api_url": "http://127.0.0.1:1",
        "username": "u",
        "password_env": "RABBIT_PASSWORD",
        "queues": ["orders", "mails"],
        "dead_letters": {"orders": "orders.dlq"},
        "workers_container": "consumer",
    },
    {"name": "consumer", "type": "docker_container"},
]


def problems(target: str, step: dict[str, Any]) -> list[str]:
    book = {"name": "p", "match": ['alertname="X"'], "target": target, "steps": [step]}
    try:
        config_mod.parse({"targets": TARGETS, "playbooks": [book]}, env={})
    except ConfigError as exc:
        return [line.removeprefix("<root>: ") for line in exc.problems]  # one problem: <root>
    return []


@pytest.mark.parametrize(
    ("target", "step", "expected"),
    [
        (
            "tasks",
            {"action": "queue.clean_failed", "queue": "celery"},
            "queue.clean_failed is not supported for celery targets",
        ),
        (
            "tasks",
            {"action": "queue.requeue_failed", "queue": "celery"},
            "queue.requeue_failed is not supported for celery targets",
        ),
        (
            "broker",
            {"action": "queue.drain_delayed", "queue": "orders"},
            "queue.drain_delayed is not supported for rabbitmq targets",
        ),
        (
            "jobs",
            {"action": "queue.resume", "queue": "other"},
            "queue 'other' is not one of jobs's queues",
        ),
        (
            "jobs",
            {"action": "queue.purge", "queue": "default"},
            "queue.purge needs allow_purge: true on jobs",
        ),
        (
            "broker",
            {"action": "queue.requeue_failed", "queue": "orders", "exception": "ValueError"},
            "exception: rabbitmq failed messages carry no exception class",
        ),
        (
            "broker",
            {"action": "queue.requeue_failed", "queue": "mails"},
            "broker names no dead-letter queue for 'mails'",
        ),
        (
            "jobs",
            {"action": "queue.restart_workers", "queue": "default"},
            "queue.restart_workers on jobs needs workers_container or workers_process",
        ),
    ],
)
def test_check_config_refuses_a_queue_step_the_target_cannot_take(
    target: str, step: dict[str, Any], expected: str
) -> None:
    assert problems(target, step) == [f"playbooks[0].steps[0]: {expected}"]


def test_a_workers_container_must_be_a_registered_target() -> None:
    targets = [{**TARGETS[2], "workers_container": "stranger"}]
    book = {
        "name": "p",
        "target": "broker",
        "steps": [{"action": "queue.resume", "queue": "orders"}],
    }
    with pytest.raises(ConfigError) as caught:
        config_mod.parse({"targets": targets, "playbooks": [book]}, env={})
    assert [p.removeprefix("<root>: ") for p in caught.value.problems] == [
        "playbooks[0].steps[0]: workers_container 'stranger' of broker is not a registered docker_container target"
    ]


def test_supported_queue_steps_pass_check_config(tmp_path: Path) -> None:
    books = [
        {
            "name": "a",
            "target": "jobs",
            "steps": [
                {
                    "action": "queue.requeue_failed",
                    "queue": "default",
                    "exception": "ValueError",
                    "max_jobs": 20,
                }
            ],
        },
        {"name": "b", "target": "tasks", "steps": [{"action": "queue.resume", "queue": "celery"}]},
        {
            "name": "c",
            "target": "broker",
            "steps": [
                {"action": "queue.requeue_failed", "queue": "orders"},
                {"action": "queue.resume", "queue": "orders"},
            ],
        },
    ]
    path = tmp_path / "remediator.yml"
    path.write_text(yaml.safe_dump({"targets": TARGETS, "playbooks": books}), encoding="utf-8")
    assert main(["check-config", str(path)]) == 0
    bad = {
        "targets": TARGETS,
        "playbooks": [
            {
                "name": "d",
                "target": "jobs",
                "steps": [{"action": "queue.purge", "queue": "default"}],
            }
        ],
    }
    path.write_text(yaml.safe_dump(bad), encoding="utf-8")
    assert main(["check-config", str(path)]) == 1


def test_queue_targets_are_checked_every_queue_interval() -> None:
    cfg = config_mod.parse(
        {"self_healing": {"queue_interval": "45s"}, "targets": TARGETS[:1]}, env={}
    )
    monitor = HealthMonitor.__new__(HealthMonitor)
    monitor.config = cfg
    target = cfg.targets[0]
    assert isinstance(target, RqTarget)
    assert monitor.interval(target) == 45.0
    assert config_mod.parse({}, env={}).self_healing.queue_interval == 60.0
