"""Registered targets: the allow-list of everything remediator may touch.

Each target type is a pydantic model; ``Target`` is the discriminated union on ``type``. An
action only ever receives a target looked up here by exact name.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from remediator.config.durations import Duration

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")


class _TargetBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    check_interval: Duration | None = None  # default: the seed interval for the kind
    check_timeout: Duration = 5.0

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError(f"invalid target name {value!r}: letters, digits, '_', '.', '-' only")
        return value


class DockerContainerTarget(_TargetBase):
    type: Literal["docker_container"]
    container: str = ""  # the container's name on the engine; defaults to the target name
    docker_host: str | None = None  # e.g. unix:///run/other.sock; None = the default engine

    @property
    def container_name(self) -> str:
        return self.container or self.name


class DockerServiceTarget(_TargetBase):
    type: Literal["docker_service"]
    project: str
    service: str
    docker_host: str | None = None
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=10, ge=1)


class RedisTarget(_TargetBase):
    type: Literal["redis"]
    url: str
    replica_url: str | None = None


class PostgresTarget(_TargetBase):
    type: Literal["postgres"]
    dsn: str


class HttpTarget(_TargetBase):
    type: Literal["http"]
    base_url: str
    backup_url: str | None = None
    health_path: str = "/"
    expected_status: list[int] = Field(default_factory=lambda: [200])
    headers: dict[str, str] = Field(default_factory=dict)


class ProcessTarget(_TargetBase):
    type: Literal["process"]
    pidfile: str


QUEUE_NAME_RE = r"^[a-zA-Z0-9][a-zA-Z0-9_.:@-]{0,127}$"
QueueName = Annotated[str, Field(pattern=QUEUE_NAME_RE)]


class QueueTargetBase(_TargetBase):
    """A queue backend: the queue names it owns are the only ones its actions touch."""

    queues: list[QueueName] = Field(
        min_length=1,
        description="The queue names this target owns: the only queues its `queue.*` steps may name (letters, digits, `_.:@-`).",
    )
    allow_purge: bool = Field(
        default=False,
        description="Whether `queue.purge` may empty its queues; without it the step is refused.",
    )

    @field_validator("queues")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("queue names must be distinct")
        return value


class RqTarget(QueueTargetBase):
    type: Literal["rq"] = Field(
        description="RQ queues on Redis (library `rq`): [playbooks.md](playbooks.md#queue-recovery)."
    )
    url: str = Field(
        description="The Redis URL that holds the RQ queues (a password is never logged)."
    )
    workers_container: str | None = Field(
        default=None,
        description="The container the RQ workers run in, which must be a registered `docker_container` target: `queue.restart_workers` restarts it.",
    )
    docker_host: str | None = Field(
        default=None, description="The engine of `workers_container` (None: the default engine)."
    )


class CeleryTarget(QueueTargetBase):
    type: Literal["celery"] = Field(
        description="A Celery app's queues on a Redis broker (library `celery`, its control/inspect API): [playbooks.md](playbooks.md#queue-recovery)."
    )
    broker_url: str = Field(description="The app's Redis broker URL.")
    reply_timeout: Duration = Field(
        default=2.0,
        description="How long control and inspect broadcasts wait for the workers' replies.",
    )


class RabbitmqTarget(QueueTargetBase):
    type: Literal["rabbitmq"] = Field(
        description="RabbitMQ queues through the management plugin's HTTP API: [playbooks.md](playbooks.md#queue-recovery)."
    )
    api_url: str = Field(description="The management API, e.g. `http://127.0.0.1:15672`.")
    username: str = Field(min_length=1, description="The management API user.")
    password_env: str | None = Field(
        default=None, description="The environment variable holding the user's password."
    )
    password_file: str | None = Field(
        default=None,
        description="A file holding the user's password (give this or `password_env`).",
    )
    vhost: str = Field(default="/", description="The virtual host of the queues.")
    dead_letters: dict[QueueName, QueueName] = Field(
        default_factory=dict,
        description="Source queue -> its dead-letter queue: `queue.requeue_failed` moves the dead-lettered messages back.",
    )
    workers_container: str | None = Field(
        default=None,
        description="The container the consumers run in, which must be a registered `docker_container` target: `queue.resume` starts it, `queue.restart_workers` restarts it.",
    )
    docker_host: str | None = Field(
        default=None, description="The engine of `workers_container` (None: the default engine)."
    )

    @model_validator(mode="after")
    def _check(self) -> RabbitmqTarget:
        if (self.password_env is None) == (self.password_file is None):
            raise ValueError("give exactly one of password_env or password_file")
        for source in self.dead_letters:
            if source not in self.queues:
                raise ValueError(f"dead_letters: {source!r} is not one of the target's queues")
        return self


QUEUE_TARGET_TYPES = ("rq", "celery", "rabbitmq")
QueueTarget = RqTarget | CeleryTarget | RabbitmqTarget

Target = Annotated[
    DockerContainerTarget
    | DockerServiceTarget
    | RedisTarget
    | PostgresTarget
    | HttpTarget
    | ProcessTarget
    | RqTarget
    | CeleryTarget
    | RabbitmqTarget,
    Field(discriminator="type"),
]

TargetType = Literal[
    "docker_container",
    "docker_service",
    "redis",
    "postgres",
    "http",
    "process",
    "rq",
    "celery",
    "rabbitmq",
]
