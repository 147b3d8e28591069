"""Configuration: one YAML file, validated by pydantic, with ``${ENV}`` expansion for secrets
and per-key ``REMEDIATOR_SECTION__KEY`` variables (remediator/config/environment.py).

Loading never half-succeeds: :func:`load` returns a complete :class:`Config` or raises
:class:`~remediator.errors.ConfigError` with one line per problem, each naming its field path
(``playbooks[2].steps[0].action: unknown action 'docker.restrat'``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from remediator.config.approvals import ApprovalsConfig, email_problems, steps_email_problems
from remediator.config.durations import Duration
from remediator.config.environment import attribute, expand_env, from_environment, overlay
from remediator.config.links import check_host
from remediator.config.patterns import PatternSpec
from remediator.config.playbooks import PlaybookSpec
from remediator.config.problems import format_errors
from remediator.config.selectors import TargetSelector
from remediator.config.silences import SilencesConfig, silence_problems
from remediator.config.targets import Target, WorkersTargetBase
from remediator.config.tracing import TracingConfig
from remediator.errors import ConfigError
from remediator.notifiers import CHANNELS
from remediator.notifiers.email import EmailConfig as EmailConfig
from remediator.notifiers.slack import SlackConfig as SlackConfig
from remediator.notifiers.webhook import WebhookConfig as WebhookConfig

Role = Literal["alertmanager", "viewer", "approver", "admin"]
DEFAULT_STORE_URL = "sqlite:///data/remediator.db"
ROLE_ENV = {
    "alertmanager": "REMEDIATOR_ALERTMANAGER_TOKEN",
    "viewer": "REMEDIATOR_VIEWER_TOKEN",
    "admin": "REMEDIATOR_ADMIN_TOKEN",
}


if TYPE_CHECKING:
    ChannelName = str
else:  # one of the registered notifiers' channel names (remediator/notifiers/__init__.py)
    ChannelName = Literal[CHANNELS]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=9095, ge=0, le=65535)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    drain_timeout: Duration = 10.0


class StoreConfig(_Section):
    DESTINATION: ClassVar[tuple[str, ...]] = ("url",)
    url: str = DEFAULT_STORE_URL

    @model_validator(mode="after")
    def _scheme(self) -> StoreConfig:
        if not self.url.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ValueError("store url must start with sqlite:// or postgresql://")
        return self


class TokenSpec(_Section):
    name: str = Field(pattern=r"^[a-zA-Z0-9_.-]{1,64}$")
    role: Role
    token_file: str | None = None
    token_env: str | None = None

    @model_validator(mode="after")
    def _source(self) -> TokenSpec:
        if (self.token_file is None) == (self.token_env is None):
            raise ValueError("give exactly one of token_file or token_env")
        return self


class AuthThrottleConfig(_Section):
    failures: int = Field(default=10, ge=1)
    window: Duration = Field(default=60.0, gt=0)


class AuthConfig(_Section):
    tokens: list[TokenSpec] = Field(default_factory=list)
    throttle: AuthThrottleConfig = Field(default_factory=AuthThrottleConfig)


class CircuitBreakerConfig(_Section):
    enabled: bool = True
    failure_threshold: int = Field(default=5, ge=1)
    reset_timeout: Duration = 60.0
    half_open_requests: int = Field(default=3, ge=1)


class SelfHealingConfig(_Section):
    """The seed's thresholds; rules/ carries the same numbers for Prometheus."""

    memory_threshold: float = Field(default=85, gt=0, le=100)
    disk_threshold: float = Field(default=90, gt=0, le=100)
    cpu_threshold: float = Field(default=80, gt=0, le=100)
    response_time_threshold: Duration = 5.0
    error_rate_threshold: float = Field(default=5, gt=0, le=100)
    check_interval: Duration = Field(default=30.0, gt=0)
    queue_interval: Duration = Field(
        default=60.0,
        gt=0,
        description="How often the queues of `rq`, `celery` and `rabbitmq` targets are checked "
        "(the seed's queue health interval).",
    )


class HealthConfig(_Section):
    """The seed's health check intervals, per kind of target."""

    enabled: bool = True
    system_interval: Duration = 30.0
    service_interval: Duration = 60.0
    external_interval: Duration = 120.0


# Keys that were removed: check-config names each with the reason instead of "extra inputs".


class SafetyConfig(_Section):
    dry_run: bool = False
    max_concurrent_actions: int = Field(default=4, ge=1)
    blast_radius: float = Field(default=0.4, gt=0, le=1)
    blast_radius_min_targets: int = Field(default=3, ge=1)


class AlertmanagerConfig(_Section):
    DESTINATION: ClassVar[tuple[str, ...]] = ("url",)
    url: str | None = None
    reconcile_interval: Duration = 60.0


class WorkerConfig(_Section):
    poll_interval: Duration = 1.0
    lease: Duration = 60.0
    batch: int = Field(default=100, ge=1)
    concurrency: int = Field(default=64, ge=1)
    max_attempts: int = Field(default=5, ge=1)


class RateLimitConfig(_Section):
    rate: float = Field(default=10.0, gt=0)  # requests per second per token, sustained
    burst: int = Field(default=20, ge=1)


class ApiConfig(_Section):
    """The management API (the Alertmanager intake is never rate limited)."""

    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)


class PrometheusBasicAuth(_Section):
    username: str = Field(min_length=1)
    password_env: str | None = None
    password_file: str | None = None

    @model_validator(mode="after")
    def _source(self) -> PrometheusBasicAuth:
        if (self.password_env is None) == (self.password_file is None):
            raise ValueError("give exactly one of password_env or password_file")
        return self


class PrometheusConfig(_Section):
    """The server ``verify.prometheus`` steps query (remediator/engine/prometheus.py)."""

    DESTINATION: ClassVar[tuple[str, ...]] = ("url", "ca_file", "insecure_skip_verify")

    url: str | None = None
    timeout: Duration = 10.0
    ca_file: str | None = None  # PEM bundle to trust instead of the system CAs
    insecure_skip_verify: bool = False
    bearer_token_env: str | None = None
    bearer_token_file: str | None = None
    basic_auth: PrometheusBasicAuth | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    max_concurrent_queries: int = Field(default=4, ge=1, le=64)

    @model_validator(mode="after")
    def _auth(self) -> PrometheusConfig:
        bearer = self.bearer_token_env is not None or self.bearer_token_file is not None
        if self.bearer_token_env is not None and self.bearer_token_file is not None:
            raise ValueError("give at most one of bearer_token_env or bearer_token_file")
        if bearer and self.basic_auth is not None:
            raise ValueError("give a bearer token or basic_auth, not both")
        if bearer and any(k.lower() == "authorization" for k in self.headers):
            raise ValueError("an Authorization header and a bearer token exclude each other")
        if self.insecure_skip_verify and self.ca_file is not None:
            raise ValueError("ca_file has no effect with insecure_skip_verify")
        return self


class NotificationsConfig(_Section):
    slack: SlackConfig | None = None
    email: EmailConfig | None = None
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    coalesce_window: Duration = Field(default=15.0, ge=0)
    max_alerts_per_message: int = Field(default=1000, ge=1)
    max_pending: int = Field(default=100_000, ge=1)

    link_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts whose links taken from an alert (its `runbook_url` annotation, its "
        "`generatorURL`) notifications show, e.g. `runbooks.example.com` or `*.example.com` "
        "(any subdomain); any other link is hidden. `[]`: no alert link is shown.",
    )

    @field_validator("link_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        return [check_host(host) for host in value]


class EscalationLevel(_Section):
    name: str
    when: list[
        Literal[
            "remediation_failed",
            "circuit_open",
            "no_recovery",
            "unknown_pattern",
            "blast_radius",
            "max_per_window",
            "critical",
            "target_refused",
            "notification_dead",
        ]
    ]
    after_failures: int = Field(default=1, ge=1)
    no_recovery_within: Duration = 600.0
    notify: list[ChannelName] = Field(min_length=1)


class EscalationConfig(_Section):
    levels: list[EscalationLevel] = Field(default_factory=list)


class AuditConfig(_Section):
    encryption_key_env: str | None = None
    retention: Duration = 90 * 86400.0
    duplicate_interval: Duration = 60.0
    signing_key_file: str | None = None
    checkpoint_every: int = Field(default=1000, ge=1)
    checkpoint_interval: Duration = 300.0
    verify_interval: Duration = Field(default=300.0, gt=0)


class RetentionConfig(_Section):
    """How long finished rows are kept (events: ``audit.retention``)."""

    inbox: Duration = 30 * 86400.0
    outbox: Duration = 30 * 86400.0
    episodes: Duration = 90 * 86400.0
    remediations: Duration = 90 * 86400.0

    @model_validator(mode="after")
    def _floor(self) -> RetentionConfig:
        short = [n for n, v in self.model_dump().items() if v < RETENTION_FLOOR]
        if short:
            raise ValueError(f"{', '.join(short)}: keep finished rows at least 1h")
        return self


RETENTION_FLOOR = 3600.0


class Config(_Section):
    server: ServerConfig = Field(default_factory=ServerConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    targets: list[Target] = Field(default_factory=list)
    builtin_patterns: bool = True
    patterns: list[PatternSpec] = Field(default_factory=list)
    playbooks: list[PlaybookSpec] = Field(default_factory=list)
    circuit_breaker: CircuitBreakerConfig = Field(default_factory=CircuitBreakerConfig)
    self_healing: SelfHealingConfig = Field(default_factory=SelfHealingConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    safety: SafetyConfig = Field(default_factory=SafetyConfig)
    alertmanager: AlertmanagerConfig = Field(default_factory=AlertmanagerConfig)
    prometheus: PrometheusConfig = Field(default_factory=PrometheusConfig)
    worker: WorkerConfig = Field(default_factory=WorkerConfig)
    notifications: NotificationsConfig = Field(default_factory=NotificationsConfig)
    escalation: EscalationConfig = Field(default_factory=EscalationConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    approvals: ApprovalsConfig = Field(
        default_factory=ApprovalsConfig,
        description="Approvals by Slack buttons: where the Slack signing secret comes from "
        "(playbooks ask for approval with their own `approval:`).",
    )
    silences: SilencesConfig = Field(default_factory=SilencesConfig)
    tracing: TracingConfig = Field(
        default_factory=TracingConfig,
        description="OpenTelemetry tracing and its OTLP/HTTP export (docs/tracing.md).",
    )

    @model_validator(mode="after")
    def _references(self) -> Config:
        problems: list[str] = []
        _unique(problems, "targets", [t.name for t in self.targets])
        for target in self.targets:  # a queue's workers_process: its registered process target
            if isinstance(target, WorkersTargetBase):
                target.bind_workers(self.targets)
        _unique(problems, "patterns", [p.id for p in self.patterns])
        _unique(problems, "playbooks", [p.name for p in self.playbooks])
        names = {t.name for t in self.targets}
        known = {p.id for p in self.patterns} | {p.category for p in self.patterns}
        if self.builtin_patterns:
            from remediator.config.patterns import DEFAULT_PATTERNS

            known |= {p.id for p in DEFAULT_PATTERNS} | {p.category for p in DEFAULT_PATTERNS}
        mail = {"email": self.notifications.email is not None,
                "links": self.approvals.link_secret_env is not None}  # fmt: skip
        for i, book in enumerate(self.playbooks):
            if book.pattern is not None and book.pattern not in known:
                problems.append(
                    f"playbooks[{i}].pattern: unknown pattern or category {book.pattern!r}"
                )
            if "{{" not in book.target and book.target not in names:
                problems.append(f"playbooks[{i}].target: unknown target {book.target!r}")
            problems += _selector_problems(self, f"playbooks[{i}]", book.target, book.targets)
            problems.extend(_queue_problems(i, book, self.targets))
            problems += email_problems(
                f"playbooks[{i}].approval.emails", book.approval,
                email=self.notifications.email is not None,
                links=self.approvals.link_secret_env is not None,
            )  # fmt: skip
            problems += steps_email_problems(f"playbooks[{i}].steps", book.steps, **mail)
            problems += silence_problems(i, book.silence, self.silences, self.alertmanager.url)
            window = book.max_per_window.window if book.max_per_window else 0.0
            if max(book.cooldown, window) > self.retention.remediations:
                problems.append(
                    f"playbooks[{i}]: its cooldown and max_per_window.window must not exceed "
                    "retention.remediations (the guards count the remediations kept)"
                )
        for i, pattern in enumerate(self.patterns):
            problems += _selector_problems(self, f"patterns[{i}]", pattern.target, pattern.targets)
            problems += steps_email_problems(f"patterns[{i}].recovery", pattern.recovery, **mail)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def target(self, name: str) -> Target | None:
        for target in self.targets:
            if target.name == name:
                return target
        return None


def _selector_problems(
    cfg: Config, where: str, target: str | None, selector: TargetSelector | None
) -> list[str]:
    """A selector naming unregistered targets, or a fixed target its own selector refuses."""
    if selector is None:
        return []
    problems = [
        f"{where}.targets.names: unknown target {name!r}"
        for name in selector.names
        if cfg.target(name) is None
    ]
    fixed = cfg.target(target) if target and "{{" not in target else None
    if fixed is not None and not selector.allows(fixed.name, fixed.labels):
        problems.append(f"{where}.targets: does not allow its own target {fixed.name!r}")
    return problems


def _unique(problems: list[str], section: str, names: list[str]) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            problems.append(f"{section}[{i}]: duplicate name {name!r}")
        seen.add(name)


def parse(data: Any, env: Mapping[str, str] | None = None) -> Config:
    """A :class:`Config` from already-parsed YAML data."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(["<root>: the configuration must be a mapping"])
    problems: list[str] = []
    environ = os.environ if env is None else env
    expanded = expand_env(data, environ, "", problems)
    if problems:
        raise ConfigError(problems)
    settings = from_environment(Config, environ)  # REMEDIATOR_SERVER__PORT=... wins per key
    try:
        return Config.model_validate(overlay(expanded, settings))
    except ValidationError as exc:
        raise ConfigError(attribute(format_errors(exc), settings)) from None


def load(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a configuration file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(
            [f"<root>: invalid YAML{where}: {getattr(exc, 'problem', exc)}"]
        ) from None
    return parse(data, env)


def warnings(cfg: Config) -> list[str]:
    """Valid but risky settings, one line each, for ``check-config`` to print."""
    found: list[str] = []
    if cfg.prometheus.insecure_skip_verify:
        found.append(
            "prometheus.insecure_skip_verify: TLS certificates of Prometheus are not verified; "
            "anyone on the path can answer verify.prometheus queries (prefer ca_file)"
        )
    found += _unlisted_templates(cfg)
    return found


def _unlisted_templates(cfg: Config) -> list[str]:
    """Playbooks (and patterns with recovery steps) whose templated target has no allow-list."""
    found: list[str] = []
    books = [
        (f"playbooks[{i}] ({b.name})", b.target, b.targets) for i, b in enumerate(cfg.playbooks)
    ]
    books += [
        (f"patterns[{i}] ({p.id})", p.target, p.targets)
        for i, p in enumerate(cfg.patterns)
        if p.recovery and p.target
    ]
    for where, target, selector in books:
        if target and "{{" in target and selector is None:
            found.append(
                f"{where}.targets: the target {target!r} comes from alert text and no "
                "allow-list limits it, so a forged label can make it act on any registered "
                "target; add targets: {names: [...]} or {labels: {...}}"
            )
    return found


# Sections the running process cannot change: they need a restart. What decides and guards
# remediations (targets, patterns, playbooks, circuit_breaker, safety, health, self_healing,
# builtin_patterns) changes at run time.
RESTART_ONLY = (
    "server",
    "api",
    "store",
    "auth",
    "worker",
    "alertmanager",
    "prometheus",
    "notifications",
    "escalation",
    "audit",
    "retention",
    "silences",
    "tracing",
)


def _queue_problems(index: int, book: PlaybookSpec, targets: list[Target]) -> list[str]:
    from remediator.actions.queue import playbook_problems  # the family checks its own steps

    return playbook_problems(index, book.target, book.steps, targets)
