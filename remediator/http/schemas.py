"""Request and response models of the HTTP API.

The handlers validate requests and shape answers with these models, and ``remediator.http.openapi``
documents the API from the very same models, so the document cannot drift from the code.
Request models forbid unknown fields and are validated strictly (JSON types, no coercion).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from remediator.config.model import ChannelName, Config
from remediator.config.patterns import PatternSpec

BreakerStateName = Literal["closed", "half-open", "open"]
Status = Literal["up", "down", "unknown"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- errors ------------------------------------------------------------------------------------


class ErrorBody(_Answer):
    code: str = Field(description="Stable error code, e.g. CIRCUIT_OPEN")
    message: str = Field(description="What went wrong, for a human; never holds secrets")
    details: list[str] | None = Field(
        default=None, description="One line per problem, each starting with its field path"
    )


class ErrorResponse(_Answer):
    error: ErrorBody


# -- intake ------------------------------------------------------------------------------------


class IntakeResponse(_Answer):
    received: int = Field(description="Alerts in the notification")
    new: int = Field(description="Alert states stored for the first time")
    duplicates: int = Field(description="Alert states already stored (Alertmanager resends)")
    truncated: int = Field(description="Alerts Alertmanager left out (max_alerts)")


# -- health ------------------------------------------------------------------------------------


class TargetHealth(_Answer):
    target: str
    type: str
    status: Status = Field(description="The target's last health check; unknown before the first")
    detail: str = ""


class DockerEngineHealth(_Answer):
    host: str = Field(description="docker_host of the targets, or 'default'")
    status: Status = Field(description="up when a check of one of its targets reached it")
    targets: list[TargetHealth]


class StoreHealth(_Answer):
    status: Literal["up", "down"]
    backend: str
    schema_version: int | None = None


class NotifierHealth(_Answer):
    channel: ChannelName
    name: str


class WorkerHealth(_Answer):
    alive: bool
    inbox_pending: int | None = None


class BreakerSummary(_Answer):
    closed: int = 0
    half_open: int = 0
    open: int = 0


class HealthDetail(_Answer):
    version: str
    config_version: int
    paused: bool
    uptime_seconds: float
    store: StoreHealth
    docker: list[DockerEngineHealth]
    redis: list[TargetHealth]
    postgres: list[TargetHealth]
    http: list[TargetHealth]
    process: list[TargetHealth]
    ssh_host: list[TargetHealth]
    notifiers: list[NotifierHealth]
    workers: WorkerHealth
    breakers: BreakerSummary


class HealthResponse(_Answer):
    status: Literal["healthy", "unhealthy", "draining"]
    components: dict[str, Literal["up", "down"]]
    detail: HealthDetail | None = Field(
        default=None, description="Only with a viewer or admin token"
    )


# -- events ------------------------------------------------------------------------------------


class EventOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: int | None
    type: str
    time: str = Field(description="RFC 3339")
    ts: float = Field(description="Unix seconds")
    severity: str
    category: str
    target: str
    playbook: str
    action: str
    outcome: str
    duration: float | None
    fingerprint: str
    alertname: str
    status: str
    message: str
    actor: str = Field(description="remediator, health, or the name of the API token")
    config_version: int
    details: dict[str, Any]
    prev_hash: str
    hash: str


class EventsResponse(_Answer):
    events: list[EventOut]
    next_before: int | None = Field(description="Pass as `before` for the next (older) page")


# -- circuit breakers --------------------------------------------------------------------------


class BreakerOut(_Answer):
    target: str
    state: BreakerStateName
    failures: int = Field(description="Consecutive failures counted")
    opened_at: str | None = Field(description="RFC 3339, while open or half-open")
    next_half_open: str | None = Field(description="RFC 3339: when an open breaker may try again")
    half_open_trials: int


class BreakerSettings(_Answer):
    enabled: bool
    failure_threshold: int
    reset_timeout_seconds: float
    half_open_requests: int


class BreakersResponse(_Answer):
    breakers: list[BreakerOut]
    settings: BreakerSettings


class BreakerReset(_Answer):
    breaker: BreakerOut
    previous_state: BreakerStateName
    changed: bool


# -- quarantine and targets --------------------------------------------------------------------


class QuarantinedOut(_Answer):
    target: str
    quarantined_at: str = Field(description="RFC 3339")
    reason: str = Field(description="Why, e.g. `playbook isolate-web`")
    paused: bool = Field(description="The quarantine paused the container; lifting unpauses it")


class QuarantineResponse(_Answer):
    quarantined: list[QuarantinedOut]


class PoisonedOut(_Answer):
    id: int = Field(description="The inbox item")
    fingerprint: str
    episode: int
    status: str = Field(description="firing or resolved")
    alertname: str = Field(description="Escaped and cut to 120 characters")
    received_at: str = Field(description="RFC 3339")
    attempts: int = Field(description="Claims counted, the last one included")
    poisoned_at: str | None = Field(description="RFC 3339: when it was quarantined")


class PoisonedResponse(_Answer):
    poisoned: list[PoisonedOut]


class LiftRequest(_Request):
    reason: str = Field(min_length=1, max_length=1000, pattern=r"\S")


class QuarantineLifted(_Answer):
    target: str
    lifted: bool
    quarantined_at: str = Field(description="RFC 3339: when the lifted quarantine began")
    quarantine_reason: str
    unpaused: bool | None = Field(
        description="Whether the container the quarantine paused was unpaused; null: none was"
    )
    detail: str


class EndpointOut(_Answer):
    primary_url: str = Field(description="base_url (credentials redacted)")
    backup_url: str | None
    active_url: str = Field(description="The URL checks and steps use now")
    on_backup: bool


class TargetQuarantine(_Answer):
    quarantined: bool
    quarantined_at: str | None
    reason: str | None


class TargetStatus(_Answer):
    status: Status = Field(description="This replica's last health check; unknown before the first")
    detail: str


class TargetResponse(_Answer):
    target: str
    type: str
    health: TargetStatus
    breaker: BreakerOut
    quarantine: TargetQuarantine
    endpoint: EndpointOut | None = Field(description="HTTP targets only")


# -- statistics --------------------------------------------------------------------------------


class MttrSummary(BaseModel):
    model_config = ConfigDict(extra="allow")

    count: int
    mean: float | None
    p50: float | None
    p90: float | None


class MttrStatistics(MttrSummary):
    by_playbook: dict[str, MttrSummary]
    by_category: dict[str, MttrSummary]
    by_target: dict[str, MttrSummary] = Field(default_factory=dict)


class SuccessRates(BaseModel):
    model_config = ConfigDict(extra="allow")

    overall: float | None
    by_playbook: dict[str, float | None]
    by_action: dict[str, float | None]


class StatisticsResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    window_seconds: float
    mttr: MttrStatistics
    success_rate: SuccessRates
    availability: dict[str, float | None] = Field(description="Share of the window each was up")
    breaker_trips: dict[str, int]
    escalations: dict[str, int]
    actions_by_type: dict[str, int]


# -- manual runs and dry runs ------------------------------------------------------------------


class TriggerRequest(_Request):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"target": "web", "playbook": "restart-web"},
                {"target": "web", "action": "docker.restart", "params": {"stop_timeout": 5}},
                {"target": "web", "playbook": "restart-web", "force": True, "reason": "INC-1234"},
            ]
        },
    )

    target: str = Field(min_length=1, max_length=128, description="A registered target")
    playbook: str | None = Field(default=None, description="A playbook, or pattern:ID")
    action: str | None = Field(default=None, description="One action instead of a playbook")
    params: dict[str, Any] = Field(default_factory=dict, description="The action's parameters")
    force: bool = Field(default=False, description="Bypass the cooldown (only); needs a reason")
    reason: str = Field(default="", max_length=1000, description="Why; recorded in the audit")
    dry_run: bool = False


class StepOutcome(_Answer):
    action: str
    outcome: str = Field(description="success, failure or dry_run")
    duration: float | None
    message: str


class TriggerResponse(_Answer):
    remediation_id: int
    fingerprint: str = Field(description="Filter GET /events by it to see the run's events")
    target: str
    playbook: str
    state: Literal["succeeded", "failed", "dry_run"]
    ok: bool
    dry_run: bool
    forced: bool
    bypassed: list[str] = Field(description="Guards bypassed by force (only cooldown)")
    steps: list[StepOutcome]
    detail: str
    config_version: int


class DryRunRequest(_Request):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"target": "web", "playbook": "restart-web"}]},
    )

    target: str = Field(min_length=1, max_length=128)
    playbook: str | None = None
    action: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class GuardTrace(_Answer):
    allowed: bool
    reason: str | None = Field(description="The first guard that blocks, e.g. cooldown")
    detail: str


class Trace(BaseModel):
    model_config = ConfigDict(extra="allow")

    fingerprint: str
    alertname: str
    status: str
    pattern: str | None
    category: str
    severity: str
    playbook: str | None
    priority: str | None
    target: str | None
    target_type: str | None
    steps: list[dict[str, Any]]
    dry_run: bool
    runs: bool = Field(description="A playbook and a registered target were found")
    reason: str | None = Field(description="Why nothing would run, before the guards")
    rendered_target: str | None
    approval: dict[str, Any] | None = Field(
        default=None,
        description='The playbook asks for approval before it runs: `message` ("would ask for '
        'approval by ..."), approvers, slack_users, slack_usergroups, emails, ttl, on_expiry',
    )
    guards: GuardTrace | None = Field(description="The guards' verdict now, when it runs")
    breaker: BreakerOut | None
    would_run: bool = Field(description="runs, and the guards allow it now")


class DryRunResponse(_Answer):
    mode: Literal["alerts", "target"]
    traces: list[Trace]


# -- configuration and patterns ----------------------------------------------------------------


class ConfigurationResponse(_Answer):
    version: int
    configuration: Config = Field(description="Secrets are shown as ***")


class NamesDiff(_Answer):
    added: list[str]
    removed: list[str]
    changed: list[str]


class ConfigDiff(_Answer):
    sections: list[str]
    targets: NamesDiff
    playbooks: NamesDiff
    patterns: NamesDiff


class ConfigurationApplied(_Answer):
    version: int
    previous_version: int
    changed: bool
    diff: ConfigDiff


class PatternOut(PatternSpec):
    builtin: bool = Field(description="A built-in default, which cannot be deleted")
    source: Literal["file", "api", "builtin"] = Field(
        description="Where it comes from: the configuration (file, or PUT /configuration), "
        "POST /patterns (stored: kept across reloads and restarts), or the built-ins"
    )


class PatternsResponse(_Answer):
    version: int
    builtin_patterns: bool
    patterns: list[PatternOut] = Field(description="In matching order: the first match wins")


class PatternAdded(_Answer):
    version: int
    pattern: PatternOut


class PatternDeleted(_Answer):
    version: int
    deleted: str


# -- pause -------------------------------------------------------------------------------------


class PauseRequest(_Request):
    reason: str = Field(default="", max_length=1000)


class PauseState(_Answer):
    paused: bool
    changed: bool


# -- probes (GET /-/healthy, GET /-/ready) -----------------------------------------------------


class ProbeResponse(_Answer):
    status: Literal["healthy", "ready", "not ready"]
    reason: str | None = Field(
        default=None, description="Why not ready: starting, draining or store unavailable"
    )
