"""Registered targets: the allow-list of everything remediator may touch.

Each target type is a pydantic model; ``Target`` is the discriminated union on ``type``. An
action only ever receives a target looked up here by exact name.
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from remediator.config.durations import Duration

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
LABEL_KEY_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.-]{0,63}$")


def check_labels(value: dict[str, str]) -> dict[str, str]:
    """Label keys are short identifiers; values are short, printable text."""
    for key, item in value.items():
        if not LABEL_KEY_RE.match(key):
            raise ValueError(
                f"invalid label name {key!r}: a letter or '_', then letters, digits, '_', '.', '-'"
            )
        if not item.isprintable() or len(item) > 128:
            raise ValueError(f"invalid value for label {key!r}: printable, at most 128 characters")
    return value


class _TargetBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The fields that decide where the target's secrets are sent (remediator/config/destinations.py)
    DESTINATION: ClassVar[tuple[str, ...]] = ()

    name: str
    check_interval: Duration | None = None  # default: the seed interval for the kind
    check_timeout: Duration = 5.0
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Labels of your choosing (`role: web`) that a playbook's `targets.labels` "
        "allow-list selects it by.",
    )

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        return check_labels(value)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError(f"invalid target name {value!r}: letters, digits, '_', '.', '-' only")
        return value


class DockerContainerTarget(_TargetBase):
    type: Literal["docker_container"]
    DESTINATION: ClassVar[tuple[str, ...]] = ("docker_host",)
    container: str = ""  # the container's name on the engine; defaults to the target name
    docker_host: str | None = None  # e.g. unix:///run/other.sock; None = the default engine

    @property
    def container_name(self) -> str:
        return self.container or self.name


class DockerServiceTarget(_TargetBase):
    type: Literal["docker_service"]
    DESTINATION: ClassVar[tuple[str, ...]] = ("docker_host",)
    project: str
    service: str
    docker_host: str | None = None
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=10, ge=1)


class RedisTarget(_TargetBase):
    type: Literal["redis"]
    DESTINATION: ClassVar[tuple[str, ...]] = ("url", "replica_url")
    url: str
    replica_url: str | None = None


class PostgresTarget(_TargetBase):
    type: Literal["postgres"]
    DESTINATION: ClassVar[tuple[str, ...]] = ("dsn",)
    dsn: str


class HttpTarget(_TargetBase):
    type: Literal["http"]
    DESTINATION: ClassVar[tuple[str, ...]] = ("base_url", "backup_url")
    base_url: str
    backup_url: str | None = None
    health_path: str = "/"
    expected_status: list[int] = Field(default_factory=lambda: [200])
    headers: dict[str, str] = Field(default_factory=dict)


class ProcessTarget(_TargetBase):
    type: Literal["process"]
    pidfile: str


Target = Annotated[
    DockerContainerTarget
    | DockerServiceTarget
    | RedisTarget
    | PostgresTarget
    | HttpTarget
    | ProcessTarget,
    Field(discriminator="type"),
]

TargetType = Literal["docker_container", "docker_service", "redis", "postgres", "http", "process"]
