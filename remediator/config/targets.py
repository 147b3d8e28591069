"""Registered targets: the allow-list of everything remediator may touch.

Each target type is a pydantic model; ``Target`` is the discriminated union on ``type``. An
action only ever receives a target looked up here by exact name.
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from remediator.config.commands import SshCommand, valid_unit
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


_BYTES = re.compile(r"^(\d+)\s*([kmg]i?b?)?$", re.IGNORECASE)
_UNIT_FACTOR = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


class LeakCheck(BaseModel):
    """Memory leak detection for the health check (remediator/checks/leak.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window: Duration
    min_growth: int
    min_samples: int = Field(default=5, ge=3)
    tolerance: float = Field(default=0.02, ge=0, lt=1)
    unit: str | None = None

    @field_validator("min_growth", mode="before")
    @classmethod
    def _bytes(cls, value: object) -> object:
        if isinstance(value, str):
            match = _BYTES.match(value.strip())
            if match is None:
                raise ValueError(f"invalid size {value!r}: bytes, or e.g. 64m, 512k, 1g")
            return int(match.group(1)) * _UNIT_FACTOR[(match.group(2) or "")[:1].lower()]
        return value

    @field_validator("min_growth")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("min_growth must be at least 1 byte")
        return value


class ProcessTarget(_TargetBase):
    type: Literal["process"]
    pidfile: str
    leak: LeakCheck | None = None

    @field_validator("leak")
    @classmethod
    def _no_unit(cls, value: LeakCheck | None) -> LeakCheck | None:
        if value is not None and value.unit is not None:
            raise ValueError("leak.unit is for ssh_host targets; a process has its pidfile")
        return value


_HOST_KEY = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+={0,2}$"
)
_PLAYBOOK_FILE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}\.ya?ml$")


class SshHostTarget(_TargetBase):
    """A VM or bare host reached over SSH (asyncssh), its host key pinned in the configuration."""

    type: Literal["ssh_host"]
    host: str
    port: int = Field(default=22, ge=1, le=65535)
    user: str = Field(pattern=r"^[a-z_][a-z0-9_.-]{0,31}$")
    private_key_file: str | None = None
    private_key_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    host_key: str
    connect_timeout: Duration = 10.0
    command_timeout: Duration = 60.0
    systemctl: str = Field(default="systemctl", pattern=r"^[a-zA-Z0-9/_.-]+$")
    units: list[str] = Field(default_factory=list)
    health_units: list[str] = Field(default_factory=list)
    commands: dict[str, SshCommand] = Field(default_factory=dict)
    playbook_dir: str | None = None
    ansible_python: str = Field(default="auto_silent", pattern=r"^[a-zA-Z0-9/_.-]+$")
    playbooks: list[str] = Field(default_factory=list)
    leak: LeakCheck | None = None

    @field_validator("host_key")
    @classmethod
    def _host_key(cls, value: str) -> str:
        key = " ".join(value.split()[:2])
        if not _HOST_KEY.match(key):
            raise ValueError("host_key: 'TYPE BASE64' as in the host's *.pub or known_hosts")
        return key

    @field_validator("units", "health_units")
    @classmethod
    def _units(cls, value: list[str]) -> list[str]:
        for unit in value:
            if not valid_unit(unit):
                raise ValueError(f"invalid unit name {unit!r}")
        return value

    @field_validator("commands")
    @classmethod
    def _command_names(cls, value: dict[str, SshCommand]) -> dict[str, SshCommand]:
        for name in value:
            if not NAME_RE.match(name):
                raise ValueError(f"invalid command name {name!r}")
        return value

    @field_validator("playbooks")
    @classmethod
    def _playbooks(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _PLAYBOOK_FILE.match(name):
                raise ValueError(f"playbook {name!r}: a .yml file name in the configuration dir")
        return value

    @model_validator(mode="after")
    def _key(self) -> SshHostTarget:
        if (self.private_key_file is None) == (self.private_key_env is None):
            raise ValueError("set exactly one of private_key_file and private_key_env")
        unlisted = sorted(set(self.health_units) - set(self.units))
        if unlisted:
            raise ValueError(f"health_units not in units: {', '.join(unlisted)}")
        if self.playbooks and (self.playbook_dir is None or not self.playbook_dir.startswith("/")):
            raise ValueError("playbooks need playbook_dir, an absolute directory")
        if self.leak is not None and self.leak.unit not in self.units:
            raise ValueError("leak.unit: one of the target's units")
        return self


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


WORKERS_PROCESS = (
    "The registered `process` target (its pidfile) the workers run as: `queue.restart_workers` "
    "restarts it as `process.restart` does (give this or `workers_container`, not both)."
)


class WorkersTargetBase(QueueTargetBase):
    """A queue target whose workers run in a registered container (``workers_container``) or
    as a registered process (``workers_process``): at most one of them."""

    workers_process: str | None = Field(
        default=None, pattern=NAME_RE.pattern, description=WORKERS_PROCESS
    )
    # The registered process target ``workers_process`` names, bound when the configuration is
    # validated (remediator/config/model.py); None when it names none or an unregistered one.
    _workers: ProcessTarget | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _one_route(self) -> WorkersTargetBase:
        if getattr(self, "workers_container", None) and self.workers_process:
            raise ValueError("give at most one of workers_container or workers_process")
        return self

    def bind_workers(self, targets: list[Target]) -> None:
        """Bind the registered ``process`` target named by ``workers_process`` (if any)."""
        name = self.workers_process
        found = [t for t in targets if name and t.name == name]
        self._workers = next((t for t in found if isinstance(t, ProcessTarget)), None)

    @property
    def workers(self) -> ProcessTarget | None:
        """The process target the workers run as (bound by :meth:`bind_workers`)."""
        return self._workers


class RqTarget(WorkersTargetBase):
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


class RabbitmqTarget(WorkersTargetBase):
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
    | SshHostTarget
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
    "ssh_host",
    "rq",
    "celery",
    "rabbitmq",
]
