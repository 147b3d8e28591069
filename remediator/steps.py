"""Playbook steps: one pydantic model per action, a discriminated union on ``action``.

This module is the catalog of action names and their parameters; the implementations live in
``remediator/actions/``. Parameters come only from configuration, never from alert text.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from remediator.durations import Duration
from remediator.promql import compile_query

Signal = Annotated[str, Field(pattern=r"^(SIG)?[A-Z0-9]{2,8}$")]


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout: Duration = 60.0


class DockerRestart(_Step):
    action: Literal["docker.restart"]
    stop_timeout: int = Field(default=10, ge=0, le=600)


class DockerStop(_Step):
    action: Literal["docker.stop"]
    stop_timeout: int = Field(default=10, ge=0, le=600)


class DockerStart(_Step):
    action: Literal["docker.start"]


class DockerKill(_Step):
    action: Literal["docker.kill"]
    signal: Signal = "SIGKILL"


class DockerPause(_Step):
    action: Literal["docker.pause"]


class DockerUnpause(_Step):
    action: Literal["docker.unpause"]


class DockerScale(_Step):
    action: Literal["docker.scale"]
    replicas: int | None = Field(default=None, ge=0)
    delta: int | None = None

    @model_validator(mode="after")
    def _one(self) -> DockerScale:
        if (self.replicas is None) == (self.delta is None):
            raise ValueError("give exactly one of 'replicas' or 'delta'")
        return self


class DockerUpdateLimits(_Step):
    action: Literal["docker.update_limits"]
    memory: str | None = Field(default=None, pattern=r"^\d+[bkmg]?$")
    cpus: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _some(self) -> DockerUpdateLimits:
        if self.memory is None and self.cpus is None:
            raise ValueError("give 'memory' and/or 'cpus'")
        return self


class RedisFlushDb(_Step):
    action: Literal["redis.flushdb"]
    db: int | None = Field(default=None, ge=0, le=15)


class RedisDeleteKeys(_Step):
    action: Literal["redis.delete_keys"]
    pattern: str = Field(min_length=1)
    batch: int = Field(default=500, ge=1, le=10_000)
    max_keys: int = Field(default=1_000_000, ge=1)


class RedisMemoryPurge(_Step):
    action: Literal["redis.memory_purge"]


class RedisKillClients(_Step):
    action: Literal["redis.kill_clients"]
    client_type: Literal["normal", "pubsub", "replica", "master"] | None = None
    min_idle: Duration | None = None
    name: str | None = None


class RedisFailover(_Step):
    action: Literal["redis.failover"]


PgState = Literal["active", "idle", "idle in transaction", "idle in transaction (aborted)"]


class _PgFilter(_Step):
    state: PgState | None = None
    min_duration: Duration | None = None
    application_name: str | None = None
    usename: str | None = None


class PostgresTerminate(_PgFilter):
    action: Literal["postgres.terminate_backends"]


class PostgresCancel(_PgFilter):
    action: Literal["postgres.cancel_queries"]


class PostgresResetPool(_Step):
    action: Literal["postgres.reset_pool"]


class HttpCall(_Step):
    action: Literal["http.call"]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    path: str = Field(pattern=r"^/")
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = None
    expected_status: list[int] = Field(default_factory=lambda: [200, 201, 202, 204])


class HttpFailover(_Step):
    action: Literal["http.failover"]


class HttpFailback(_Step):
    action: Literal["http.failback"]


class ProcessSignal(_Step):
    action: Literal["process.signal"]
    signal: Signal = "SIGHUP"


class Quarantine(_Step):
    action: Literal["quarantine"]
    pause: bool = True


class VerifyHealth(_Step):
    action: Literal["verify.health"]
    within: Duration = 30.0
    interval: Duration = 2.0


class VerifyPrometheus(_Step):
    action: Literal["verify.prometheus"]
    query: str = Field(min_length=1)
    expect: Literal["non_empty", "empty"] = "non_empty"
    below: float | None = None
    above: float | None = None
    within: Duration = 60.0
    interval: Duration = 5.0

    @model_validator(mode="after")
    def _check(self) -> VerifyPrometheus:
        compile_query(self.query)  # placeholders only inside string literals
        if self.expect == "empty" and (self.below is not None or self.above is not None):
            raise ValueError("'below' and 'above' need expect: non_empty")
        return self

    def holds(self, values: tuple[float, ...]) -> bool:
        """Is the condition met by a query's values (one per series)?"""
        if self.expect == "empty":
            return not values
        return bool(values) and all(
            (self.below is None or value < self.below)
            and (self.above is None or value > self.above)
            for value in values
        )

    def condition(self) -> str:
        """The condition in words, for the step's event."""
        if self.expect == "empty":
            return "no series"
        bounds = [] if self.below is None else [f"below {self.below:g}"]
        bounds += [] if self.above is None else [f"above {self.above:g}"]
        said = " and ".join(bounds)
        return f"every series {said}" if said else "some series"


class Escalate(_Step):
    action: Literal["escalate"]
    reason: str = "playbook"


class PluginStep(_Step):
    """A custom action from an installed plugin (entry point group ``remediator.actions``)."""

    action: Literal["plugin"]
    plugin: str = Field(pattern=r"^[a-zA-Z0-9_.-]+$")
    params: dict[str, Any] = Field(default_factory=dict)


Step = Annotated[
    DockerRestart
    | DockerStop
    | DockerStart
    | DockerKill
    | DockerPause
    | DockerUnpause
    | DockerScale
    | DockerUpdateLimits
    | RedisFlushDb
    | RedisDeleteKeys
    | RedisMemoryPurge
    | RedisKillClients
    | RedisFailover
    | PostgresTerminate
    | PostgresCancel
    | PostgresResetPool
    | HttpCall
    | HttpFailover
    | HttpFailback
    | ProcessSignal
    | Quarantine
    | VerifyHealth
    | VerifyPrometheus
    | Escalate
    | PluginStep,
    Field(discriminator="action"),
]

VERIFY_ACTIONS = frozenset({"verify.health", "verify.prometheus"})
STATE_CHANGING = frozenset(
    name
    for name in [
        "docker.restart",
        "docker.stop",
        "docker.start",
        "docker.kill",
        "docker.pause",
        "docker.unpause",
        "docker.scale",
        "docker.update_limits",
        "redis.flushdb",
        "redis.delete_keys",
        "redis.memory_purge",
        "redis.kill_clients",
        "redis.failover",
        "postgres.terminate_backends",
        "postgres.cancel_queries",
        "postgres.reset_pool",
        "http.call",
        "http.failover",
        "http.failback",
        "process.signal",
        "quarantine",
        "plugin",
    ]
)


def action_names() -> list[str]:
    """Every built-in action name, from the union itself."""
    names: list[str] = []
    for model in Step.__origin__.__args__:  # type: ignore[attr-defined]
        names.append(model.model_fields["action"].annotation.__args__[0])
    return sorted(names)


# Which target types each action can act on. Verification and escalation steps fit any target.
ACTION_TARGET_TYPES: dict[str, frozenset[str]] = {
    **{
        name: frozenset({"docker_container"})
        for name in [
            "docker.restart",
            "docker.stop",
            "docker.start",
            "docker.kill",
            "docker.pause",
            "docker.unpause",
            "docker.update_limits",
        ]
    },
    "docker.scale": frozenset({"docker_service"}),
    **{
        name: frozenset({"redis"})
        for name in [
            "redis.flushdb",
            "redis.delete_keys",
            "redis.memory_purge",
            "redis.kill_clients",
            "redis.failover",
        ]
    },
    **{
        name: frozenset({"postgres"})
        for name in [
            "postgres.terminate_backends",
            "postgres.cancel_queries",
            "postgres.reset_pool",
        ]
    },
    "http.call": frozenset({"http"}),
    "http.failover": frozenset({"http"}),
    "http.failback": frozenset({"http"}),
    "process.signal": frozenset({"process"}),
}


def fits(action: str, target_type: str) -> bool:
    """Can ``action`` act on a target of ``target_type``? (Unlisted actions fit any target.)"""
    allowed = ACTION_TARGET_TYPES.get(action)
    return allowed is None or target_type in allowed
