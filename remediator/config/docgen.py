"""docs/configuration.md from the config models: ``python -m remediator.config.docgen [--check]``."""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, BeforeValidator

from remediator.config.durations import parse_duration
from remediator.config.model import RESTART_ONLY, ROLE_ENV, Config, parse
from remediator.config.problems import REMOVED
from remediator.config.steps import ACTION_TARGET_TYPES, Step, _Step
from remediator.config.targets import Target, _TargetBase
from remediator.errors import ConfigError
from remediator.notifiers import NOTIFIERS

OUTPUT = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"

# What each field means, one model per line; an entry for a base class covers its subclasses.
# fmt: off
_BY_MODEL: dict[str, dict[str, str]] = {
    "ApiConfig": {"rate_limit": "Per-token rate limit of the management endpoints (429 with Retry-After when exceeded); the Alertmanager intake is never rate limited."},
    "RateLimitConfig": {"rate": "Sustained requests per second allowed per token.", "burst": "Requests a token may make at once before the rate applies."},
    "Config": {'api': 'The management API: per-token rate limits.', 'server': "The HTTP listener: Alertmanager's webhook, the API and `/metrics`.", 'store': 'Where alerts, events, remediations, breaker states and the notification outbox are kept. Replicas that share one PostgreSQL store share all of it.', 'auth': 'API tokens. A token never appears in this file: it comes from a file or an environment variable, and has at least 16 characters. The `REMEDIATOR_*_TOKEN` variables add one token per role (see [Environment variables](#environment-variables)).', 'targets': 'The allow-list of everything remediator may touch: an action only ever acts on a target looked up here by its exact name ([playbooks.md](playbooks.md#targets)). Every target has these fields, plus those of its type:', 'builtin_patterns': 'Whether the built-in failure patterns ([playbooks.md](playbooks.md#failure-patterns)) are tried after yours.', 'patterns': 'Your failure patterns: regexes that classify an alert into a category and a severity. They are tried in order, before the built-in ones, and the first match wins ([playbooks.md](playbooks.md#failure-patterns)).', 'playbooks': 'Which alerts a playbook handles, the target it acts on and the steps it runs ([playbooks.md](playbooks.md#playbooks)).', 'circuit_breaker': 'One circuit breaker per target, counting failed attempts ([playbooks.md](playbooks.md#circuit-breakers)). Seed defaults: `enabled` true, `failure_threshold` 5, `reset_timeout` 60s, `half_open_requests` 3.', 'self_healing': "The seed's detection thresholds: memory 85 %, disk 90 %, CPU 80 %, response time 5 s, error rate 5 %, check interval 30 s. remediator does not evaluate metrics itself: Prometheus does, with the alerting rules that `remediator rules --config FILE --out DIR` writes from this section (`--check` writes nothing and exits 1 when a file in DIR differs). The repository's `rules/*.rules.yml` are the rules of the defaults (`rules/generate.py`). A change takes effect when the rules are written again and Prometheus reloads them; the running remediator does not use this section.", 'health': 'The health monitor: checks every target on its interval and probes open circuit breakers. Seed check intervals: 30s for system targets, 60s for services, 2m for external ones, 1m for queues (`rq`, `celery` and `rabbitmq` targets, [playbooks.md](playbooks.md#queue-recovery)).', 'safety': 'Global limits on what automation may do ([playbooks.md](playbooks.md#safety-guards)).', 'alertmanager': 'Reconciliation with Alertmanager, which recovers alerts and resolves whose notifications never arrived.', 'prometheus': 'The Prometheus server that `verify.prometheus` steps query.', 'worker': 'The background worker, which claims stored alerts from the inbox and processes them.', 'notifications': 'Where messages about remediations and escalations go; a channel is used only when it is configured here.', 'escalation': 'Which escalation reasons notify which channels.', 'audit': 'The hash-chained audit log of events.', 'retention': 'How long finished rows are kept, pruned hourly in bounded batches by the replica holding the retention lease (events: `audit.retention`). What open incidents, the guards and the audit chain need is never pruned; table sizes are exported as `remediator_store_rows` and `remediator_store_size_bytes` ([runbook.md](runbook.md#remediatorstoregrowing)).'},
    "ServerConfig": {"host": "Listen address (`serve --host` overrides it); `0.0.0.0` listens on every interface.", "port": "Listen port (`serve --port` overrides it).", "max_body_bytes": "Largest request body accepted; a larger one gets 413 `PAYLOAD_TOO_LARGE`.", "drain_timeout": "On shutdown, how long in-flight work and open requests may take to finish."},
    "StoreConfig": {"url": "`sqlite:///PATH` for one process, or `postgresql://USER:PASSWORD@HOST:PORT/DB` to share state between replicas (put the password in a `${VAR}`)."},
    "AuthConfig": {"tokens": "The API tokens, one per client.", "throttle": "Throttling of failed authentication per client address (429 with Retry-After); a valid `alertmanager` token is never throttled."},
    "AuthThrottleConfig": {"failures": "Wrong credentials an address may present within `window`; past them its requests with credentials are answered 429, whichever token they carry (but a valid `alertmanager` token), until the earliest of those failures is `window` old. Requests without credentials never count.", "window": "The sliding window the failures are counted in."},
    "TokenSpec": {"name": "The principal's name, recorded as the actor of what it does.", "role": "`alertmanager` may only post alerts, `viewer` may read, `admin` may do everything.", "token_file": "A file holding the token, read at start-up. Give exactly one of `token_file` and `token_env`.", "token_env": "The environment variable holding the token. Give exactly one of `token_file` and `token_env`."},
    "CircuitBreakerConfig": {"enabled": "`false`: breakers never block. Seed: `true`.", "half_open_requests": "Trials admitted at the same time while half-open. Seed: 3.", "failure_threshold": "Consecutive failed attempts that open a breaker; a success resets the count. Seed: 5.", "reset_timeout": "How long a breaker stays open before a trial is allowed (half-open). Seed: 60s."},
    "SelfHealingConfig": {"memory_threshold": "Memory usage (%) above which `HostMemoryHigh` (of the host's memory) and `ContainerMemoryHigh` (of the container's limit) fire. Seed: 85.", "disk_threshold": "Filesystem usage (%) above which `HostDiskUsageHigh` fires. Seed: 90.", "cpu_threshold": "CPU usage (%) above which `HostCpuHigh` (of all CPUs) and `ContainerCpuHigh` (of the container's quota) fire. Seed: 80.", "response_time_threshold": "p99 response time above which `ServiceLatencyHigh` fires. Seed: 5 s.", "error_rate_threshold": "Share of 5xx responses (%) above which `ServiceErrorRateHigh` fires. Seed: 5.", "check_interval": "How often Prometheus evaluates these thresholds: the `interval:` of the rule groups `host`, `container` and `service` (the other groups use Prometheus's `evaluation_interval`). Seed: 30 s."},
    "HealthConfig": {"enabled": "Run the health monitor (`service:degraded` / `service:recovered` events, breaker probes).", "system_interval": "Check interval of system (`process`, `ssh_host`) targets. Seed: 30s.", "external_interval": "Check interval of external (`http`) targets. Seed: 2m.", "service_interval": "Check interval of `docker_container`, `docker_service`, `redis` and `postgres` targets. Seed: 60s."},
    "SafetyConfig": {"dry_run": "Run every remediation as a dry run: decide, check the guards, record, touch nothing.", "max_concurrent_actions": "Actions running at the same time in one process.", "blast_radius": "Largest share (0 to 1) of the targets of one type that may be alerting at once; above it, remediations are blocked (`blast_radius`) and escalated.", "blast_radius_min_targets": "The blast radius applies only to types with at least this many targets."},
    "AlertmanagerConfig": {"url": "Alertmanager's base URL. When set, its alerts are read every `reconcile_interval` to ingest missed alerts and close missed resolves; unset, there is no reconciliation.", "reconcile_interval": "How often to reconcile with Alertmanager."},
    "WorkerConfig": {"poll_interval": "How often the worker looks at the inbox when the webhook has not woken it.", "lease": "How long a claimed alert stays claimed (renewed while it is processed); a dead worker's alerts are claimed again after it.", "batch": "Most alerts claimed at once.", "concurrency": "Most alerts processed at the same time.", "max_attempts": "Claims of one stored alert (each counted durably, so a process killed during it counts too) after which it is a poison item: quarantined with `alert:poisoned`, listed by `GET /api/v1/recovery/alerts/poisoned`, never claimed again."},
    "PrometheusConfig": {"url": "Prometheus's base URL; `verify.prometheus` steps fail without it.", "timeout": "Bound on one query: the HTTP connect and read timeout, and the `timeout` Prometheus itself applies to the evaluation. A query that has no answer after it (plus 1s) fails its step with `query timed out`.", "ca_file": "A PEM bundle of CAs to trust instead of the system's, for an `https://` URL. TLS certificates are always verified unless `insecure_skip_verify` is set.", "insecure_skip_verify": "Do not verify Prometheus's TLS certificate. `check-config` warns about it; prefer `ca_file`.", "bearer_token_env": "The environment variable holding a bearer token, sent as `Authorization: Bearer ...`. At most one of `bearer_token_env`, `bearer_token_file` and `basic_auth`.", "bearer_token_file": "A file holding a bearer token, read at start-up.", "basic_auth": "HTTP basic authentication.", "headers": "Extra headers sent with every query, e.g. `{X-Scope-OrgID: team-a}` for a multi-tenant Mimir, Cortex or Thanos. Their values are secrets: redacted from the audit log and shown as `***` in `GET /configuration`.", "max_concurrent_queries": "Threads of the querier's own pool: at most this many queries run at once, and a slow or hung Prometheus never takes the threads that store and Docker work run on."},
    "PrometheusBasicAuth": {"username": "The user name.", "password_env": "The environment variable holding the password. Give exactly one of `password_env` and `password_file`.", "password_file": "A file holding the password, read at start-up."},
    "SlackConfig": {"token_env": "The environment variable holding a bot token (`xoxb-...`). Give `token_env`, `token_file` or `webhook_url`.", "token_file": "A file holding a bot token.", "webhook_url": "An incoming-webhook URL, used when no token is given. Its path is a secret: use a `${VAR}`.", "api_url": "The Slack Web API's base URL.", "channel": "The channel when no severity or category rule applies.", "channels_by_severity": "Channel per severity, e.g. `{critical: \"#ops-pager\"}`; tried first.", "channels_by_category": "Channel per pattern category, e.g. `{database: \"#dba\"}`; tried second.", "pace": "Least time between two messages to one channel (Slack allows about one per second)."},
    "EmailConfig": {"host": "The SMTP server.", "port": "The SMTP port.", "sender": "The `From` address.", "to": "Recipients.", "timeout": "Bound on each SMTP step.", "tls": "`starttls` upgrades a plain connection, `implicit` speaks TLS from the first byte (port 465), `none` never encrypts.", "ca_file": "A PEM bundle of CAs to trust instead of the system's.", "username": "Login name; remediator logs in only when `password_env` is set too.", "password_env": "The environment variable holding the SMTP password, read at send time.", "to_by_severity": "Recipients per severity, instead of `to`."},
    "WebhookConfig": {"name": "The webhook's name, its destination in the outbox.", "url": "Where to POST; redirects are not followed. Its path and query are a secret: `GET /configuration` shows `scheme://host:port/***`; events and logs mask the whole URL and, from 8 characters, the path and query.", "secret_env": "The environment variable holding the HMAC-SHA256 key; when set, requests carry `X-Remediator-Signature`.", "standard_webhooks_secret_env": "The environment variable holding a [Standard Webhooks](https://www.standardwebhooks.com) secret (`whsec_` and the base64 of a key of at least 16 bytes); when set, requests also carry `webhook-id` (the notification id, the same on every retry), `webhook-timestamp` and `webhook-signature`, which any Standard Webhooks library verifies. Independent of `secret_env`: give either or both."},
    "EscalationConfig": {"levels": "Every level whose `when` matches fires, at most once per incident. Without levels, every escalation goes to every configured channel, once per incident and reason."},
    "EscalationLevel": {"name": "The level's name.", "when": "The escalation reasons it handles; `critical` matches any escalation of severity critical, and `target_refused` both refusals of a templated target (`target_not_registered`, `target_not_allowed`).", "after_failures": "For `remediation_failed`: only once the target has this many failed remediations.", "notify": "The channels it notifies (those configured).", "no_recovery_within": "For `no_recovery`: how long an alert may keep firing after a remediation finished before this level escalates it (once per remediation). Each level waits its own time: with levels of `1m` and `30m`, the first notifies a minute after the remediation and the second half an hour after, and an alert that resolves in between reaches only the first."},
    "RetentionConfig": {"inbox": "Age (since it was received) after which a decided alert (an inbox item marked done) of a closed episode is deleted; an open episode keeps its items (a repeat of its alert is still recognised).", "outbox": "Age (since it was queued) after which a delivered (sent) or given-up (dead) notification is deleted; pending ones are never deleted.", "episodes": "Age (since it resolved) after which a closed (resolved) episode is deleted, once none of its inbox items and remediations is left; an open episode is kept whatever its age. A copy of a deleted episode's alert arriving later starts a new episode.", "remediations": "Age (since it finished) after which a finished remediation (and its step intents) of a closed episode is deleted. Must be at least every playbook's `cooldown` and `max_per_window.window`, which count the remediations kept."},
    "AuditConfig": {"encryption_key_env": "The environment variable holding a Fernet key, or several separated by commas: the first encrypts, every one decrypts, so a key is rotated by putting a new one first and dropping the old one later ([architecture.md](architecture.md#encryption-at-rest)). When set, no alert text is stored readable: the inbox's alertname, labels, annotations, generator URL, receiver and group key, the episode's alertname, the event's message, details, alertname and actor, and the outbox's notification payload and last error are encrypted, and opened on read.", "retention": "Age after which events are pruned, hourly and behind a checkpoint, by the replica holding the retention lease (`remediator audit prune` does it by hand).", "duplicate_interval": "A repeat of an alert state (Alertmanager re-sends groups every group_interval, and every HA peer sends them too) is recorded as `alert:duplicate` at most once per this interval, with the state's repeats so far in `details.repeats`. Every repeat is still counted in the webhook's answer and in `remediator_alerts_duplicate_total`. `0s` records every repeat.", "signing_key_file": "An Ed25519 private key (PEM, mode 0600: refused when its group or others may access it), made with `remediator audit keygen FILE`. When set, the chain's head is signed into an `audit:signed_checkpoint` event every `checkpoint_every` events or `checkpoint_interval`, at start-up and at shutdown, and each checkpoint is exported (a log line, the `remediator_audit_checkpoint_*` metrics, the webhooks) so that `remediator audit verify --public-key FILE.pub --checkpoint SEQ:DIGEST` detects a chain rewritten by someone with write access to the database ([runbook.md](runbook.md#audit-chain-signing-key)). Unset: the chain is unkeyed and proves nothing against such a writer.", "checkpoint_every": "With `signing_key_file`: sign a checkpoint once the chain has grown by this many events since the last one.", "checkpoint_interval": "With `signing_key_file`: sign a checkpoint at least this often while the chain grows (records of checkpoints and notification deliveries alone do not count, so an idle chain is not signed again and again).", "verify_interval": "How often each replica verifies the records appended to the chain since its last check (the first check walks all of it, and so does a check after retention pruned past the last verified record); the console's Now page and `remediator_audit_chain_ok` show the result ([runbook.md](runbook.md#audit-chain-broken)). An edit to a record already verified is left to `remediator audit verify`."},
    "_TargetBase": {"name": "Unique; the only way an action finds the target. Letters, digits, `_`, `.`, `-`; starts with a letter or digit; at most 128 characters.", "check_interval": "How often the health monitor checks it. Default: the `health` interval of its kind.", "check_timeout": "Bound on one health check."},
    "DockerContainerTarget": {"type": "A Docker container. Health check: running, neither paused nor restarting, and `healthy` if it has a healthcheck.", "container": "The container's exact name on the engine; empty: the target's name.", "docker_host": "The engine, e.g. `unix:///run/other.sock`; default: `DOCKER_HOST`, else the local socket."},
    "DockerServiceTarget": {"type": "A Docker Compose service. Health check: at least `min_replicas` containers running.", "project": "The Compose project (label `com.docker.compose.project`).", "service": "The Compose service (label `com.docker.compose.service`).", "docker_host": "The engine; default: `DOCKER_HOST`, else the local socket.", "min_replicas": "`docker.scale` never goes below it.", "max_replicas": "`docker.scale` never goes above it."},
    "RedisTarget": {"type": "A Redis server. Health check: `PING` answers `PONG`.", "url": "`redis://[:PASSWORD@]HOST:PORT/DB`.", "replica_url": "The replica that `redis.failover` promotes."},
    "PostgresTarget": {"type": "A PostgreSQL database. Health check: `SELECT 1`.", "dsn": "`postgresql://USER[:PASSWORD]@HOST:PORT/DB`; actions stay within this database."},
    "HttpTarget": {"type": "An HTTP service. Health check: `GET base_url + health_path` answers one of `expected_status`.", "base_url": "The service's base URL.", "backup_url": "The standby that `http.failover` switches to (checks and steps follow it until `http.failback`).", "health_path": "Path of the health check.", "expected_status": "Statuses that count as healthy.", "headers": "Headers sent with every request (checks and `http.call`)."},
    "ProcessTarget": {"type": "A local process. Health check: the pid in the pidfile is alive and not a zombie (and, with `leak`, its RSS does not grow steadily).", "pidfile": "The file holding the process's pid.", "leak": "Memory leak detection: the health check flags the process when its RSS grows steadily over `window` ([playbooks.md](playbooks.md#memory-leak-detection))."},
    "MaintenanceWindow": {"name": "The window's name, in events.", "days": "Weekdays (`mon` ... `sun`) the window opens on; default: every day."},
    "LeakCheck": {"window": "The samples must span this window; one is taken per health check, so the window holds several check intervals.", "min_growth": "Least growth from the first sample to the last, in bytes or with a unit: `512k`, `64m`, `1g`.", "min_samples": "Least samples within the window.", "tolerance": "Largest drop between two samples (a ratio, 0.02 = 2 %) that still counts as steady growth.", "unit": "`ssh_host` only: the unit (one of `units`) whose main process is sampled."},
    "SshHostTarget": {"type": "A VM or bare host reached over SSH. Health check: a login with the pinned host key and a command run; every unit of `health_units` is active (`systemctl is-active`); with `leak`, the main process of `leak.unit` does not leak.", "host": "The host's address.", "port": "The SSH port.", "user": "The login user.", "private_key_file": "A file holding the private key (OpenSSH or PEM). Give exactly one of `private_key_file` and `private_key_env`.", "private_key_env": "The environment variable holding the private key's text.", "host_key": "The host's public key, `TYPE BASE64` as in its `/etc/ssh/ssh_host_*_key.pub`: the only key trusted. Another key refuses the connection (the step fails with `host key mismatch`); there is no trust on first use.", "connect_timeout": "Bound on connecting and logging in.", "command_timeout": "Bound on one command: it runs under `timeout` on the host, which kills it when this is over.", "systemctl": "The systemctl program on the host.", "units": "The systemd units the `systemd.*` actions and `process.restart` may act on, by exact name.", "health_units": "Units (of `units`) the health check requires active.", "commands": "Named commands `ssh.run` may run, each an argv with `{{ labels.NAME }}` placeholders checked by regex.", "playbook_dir": "An absolute directory holding the Ansible playbooks of `playbooks`.", "ansible_python": "The Python interpreter Ansible uses on the host (`ansible_python_interpreter`).", "playbooks": "Ansible playbook file names (in `playbook_dir`) that `ansible.playbook` may run.", "leak": "Memory leak detection on the main process of `leak.unit` ([playbooks.md](playbooks.md#memory-leak-detection))."},
    "PatternSpec": {"id": "Unique; one of yours with a built-in's id replaces it.", "pattern": "An RE2 regular expression ([playbooks.md](playbooks.md#regular-expressions)), searched for (not anchored).", "flags": "`i` ignore case, `m` multiline, `s` dot matches newline; `[]` is case-sensitive.", "fields": "Where to search, each `labels.NAME` or `annotations.NAME`.", "category": "The category it gives; `unknown` stops the search and leaves the alert unrecognised.", "severity": "The severity it gives.", "recovery": "Steps to run when it matches and no playbook applies.", "target": "The target template of `recovery` (the pattern acts only with both).", "cooldown": "The cooldown of the pattern's own plan."},
    "PlaybookSpec": {"name": "Unique; events and metrics carry it.", "match": "Alertmanager label matchers (`=`, `!=`, `=~`, `!~`); all must match, `[]` matches every alert.", "pattern": "Only alerts classified with this pattern id or category.", "target": "A target name, or a template such as `{{ labels.container }}` that must render to one.", "priority": "Playbooks are tried by priority, then in file order; the first that fits runs.", "steps": "The steps, run in order; the first failure ends the attempt.", "retry": "Attempts and backoff.", "cooldown": "Least time between two runs of this playbook on one target.", "dry_run": "Record what would happen, touch nothing.", "max_per_window": "Most remediations of the target (by any playbook) per window; `null` disables it."},
    "RetrySpec": {"max_attempts": "Attempts in all, the first included.", "initial_delay": "Backoff ceiling before the first retry.", "max_delay": "Largest ceiling.", "multiplier": "Growth of the ceiling per retry; each wait is uniform in `[0, ceiling]`."},
    "WindowLimit": {"count": "Remediations allowed per window.", "window": "The sliding window."},
    "StepModel": {"timeout": "Bound on the step; exceeding it fails the step."},
    "DockerRestart": {"action": "Restart the container; a stopped one is started.", "stop_timeout": "Seconds between SIGTERM and SIGKILL."},
    "DockerStop": {"action": "Stop the container.", "stop_timeout": "Seconds between SIGTERM and SIGKILL."},
    "DockerStart": {"action": "Start the container."},
    "DockerPause": {"action": "Freeze the container's processes."},
    "DockerKill": {"action": "Send a signal to the container.", "signal": "The signal, e.g. `SIGTERM` or `HUP`."},
    "DockerUnpause": {"action": "Resume a paused container."},
    "DockerScale": {"action": "Set the service's running containers, within `[min_replicas, max_replicas]`.", "replicas": "Wanted running containers (give this or `delta`).", "delta": "Change of the running count, e.g. `1`, `-2`."},
    "DockerUpdateLimits": {"action": "Change memory and/or CPU limits without a restart.", "memory": "Memory limit, e.g. `512m`, `2g`, bytes (give it and/or `cpus`).", "cpus": "CPU quota in CPUs, e.g. `1.5`."},
    "RedisFlushDb": {"action": "`FLUSHDB ASYNC`: **deletes every key** of the database.", "db": "The database; default: the URL's."},
    "RedisDeleteKeys": {"action": "`SCAN` and `UNLINK` the keys matching a glob.", "pattern": "The glob, e.g. `session:*`.", "batch": "`SCAN` count per round.", "max_keys": "Stop after deleting this many."},
    "RedisMemoryPurge": {"action": "`MEMORY PURGE`."},
    "RedisFailover": {"action": "Promote `replica_url` (`REPLICAOF NO ONE`)."},
    "RedisKillClients": {"action": "`CLIENT KILL` the clients selected by every filter given (at least one).", "client_type": "Only clients of this type.", "min_idle": "Only clients idle this long (`0s`: all).", "name": "Only clients of this name."},
    "_PgFilter": {"state": "Only backends in this state.", "min_duration": "Only backends this long in their query, or state when not active (`0s`: all).", "application_name": "Only backends of this application.", "usename": "Only backends of this user."},
    "PostgresTerminate": {"action": "`pg_terminate_backend` the backends selected by every filter given (at least one)."},
    "PostgresCancel": {"action": "`pg_cancel_backend` the backends selected by every filter given (at least one)."},
    "PostgresResetPool": {"action": "Drop remediator's own cached connection."},
    "HttpCall": {"action": "Request `base_url + path`.", "method": "The method.", "path": "Appended to `base_url`.", "headers": "Headers, overriding the target's. Every value is a secret, like the target's: `***` in `GET /configuration`, dry runs and `simulate`, masked in events and logs (from 4 characters).", "body": "A JSON body; none by default.", "expected_status": "Statuses that count as success."},
    "HttpFailover": {"action": "Switch to `backup_url` if it is healthy."},
    "HttpFailback": {"action": "Switch back to `base_url` if it is healthy."},
    "ProcessSignal": {"action": "Signal the pid in the pidfile.", "signal": "The signal, e.g. `SIGUSR1` or `TERM`."},
    "Quarantine": {"action": "Take the target out of automatic recovery, and escalate.", "pause": "Also pause a `docker_container` target."},
    "VerifyHealth": {"action": "Run the target's health check until it is healthy.", "within": "Keep checking this long.", "interval": "Time between checks."},
    "VerifyPrometheus": {"action": "Run a query until the condition holds.", "query": "A PromQL instant query. `{{ labels.NAME }}` inserts the alert's label, escaped, and may only stand inside a quoted string ([playbooks.md](playbooks.md#verification-steps)).", "expect": "Wait for at least one series, or for none.", "below": "With `non_empty`: every series' value must also be below this.", "above": "With `non_empty`: every series' value must also be above this.", "within": "Keep querying this long.", "interval": "Time between queries."},
    "Escalate": {"action": "Record an escalation of severity critical.", "reason": "The escalation reason."},
    "PluginStep": {"action": "Run an installed plugin action.", "plugin": "Its entry point name in the group `remediator.actions`.", "params": "Passed to the plugin as they are."},
}
_LIMITS = {"ge": "≥ {}", "gt": "> {}", "le": "≤ {}", "lt": "< {}", "pattern": "matching `{}`", "min_length": "length ≥ {}", "max_length": "length ≤ {}"}
# fmt: on
# Each channel describes its own section (remediator/notifiers/).
_BY_MODEL["NotificationsConfig"] = {kind.config_key: kind.summary for kind in NOTIFIERS}
_BY_MODEL["NotificationsConfig"].update(
    {
        "coalesce_window": "Escalations of alerts no pattern matched, or naming a target that is "
        "not registered, wait until the end of their window of this length and are delivered per "
        'channel as one summary ("8,000 alerts matched no pattern in the last 15s: top '
        'alertnames ..."), so an alert storm is a handful of messages. `0s`: sent at once (still '
        "one summary for those that are due together).",
        "max_alerts_per_message": "Most escalations one summary message stands for; a larger "
        "batch is sent as several summaries.",
        "max_pending": "Most notifications waiting for delivery: past it the webhook answers 503 "
        "with `Retry-After: 30` (code `BACKLOGGED`; Alertmanager retries) until the outbox "
        'drains, counted in `remediator_intake_refused_total{reason="outbox_full"}`.',
    }
)
_BY_MODEL["Config"]["silences"] = (
    "Alertmanager silences while remediator handles an alert: where they are made (playbooks "
    "opt in with their own `silence:`, [playbooks.md](playbooks.md#silences))."
)
DESCRIPTIONS: dict[str, str] = {f"{m}.{f}": t for m, fs in _BY_MODEL.items() for f, t in fs.items()}
EXAMPLE = """\
server: {host: 0.0.0.0, port: 9095}
auth:
  tokens: [{name: alertmanager, role: alertmanager, token_file: /run/secrets/alertmanager.token}]
targets: [{name: web, type: docker_container}, {name: cache, type: redis, url: "redis://cache:6379/0"}]
playbooks:
  - name: restart-web
    match: ['alertname="ContainerMemoryHigh"', 'container="web"']
    target: web
    steps: [{action: docker.restart, stop_timeout: 20}, {action: verify.health, within: 45s}]
notifications: {slack: {token_env: SLACK_TOKEN, channel: "#ops"}}
"""
BROKEN = "targets: [{name: web, type: docker_container}]\nserver: {port: 99999}\nplaybooks: [{name: a, target: web, steps: [{action: docker.restrat}]}]\n"
INTRO = """\
# Configuration reference

<!-- Generated by `python -m remediator.config.docgen` from the models; do not edit. tests/test_docgen.py checks it. -->

remediator reads one YAML file: `remediator serve --config FILE`, `remediator check-config FILE`, or the file named by `REMEDIATOR_CONFIG`. Every section ({toc}) is optional; without a file, `serve` runs on the defaults below. Unknown keys are errors; a key that was removed is named with the reason{removed}. Durations are written `250ms`, `30s`, `5m`, `1h30m`, `1d` or as a number of seconds. A running remediator applies a new configuration (SIGHUP re-reads the file) all at once or not at all; {restart} only change with a restart.

## Environment variables

Any string in the file may contain `${{NAME}}` (capital letters, digits and `_`), replaced by the variable's value before validation, so numbers can come from the environment too: `port: ${{PORT}}`, `url: postgresql://remediator:${{PG_PASSWORD}}@db/remediator`. A variable that is not set is a problem (`{unset}`); `${{NAME:-default}}` gives `default` instead when `NAME` is not set or empty. Keys are not expanded; there is no escape. Keys ending in `_env` (type *string (secret from env var)*) name a variable holding a secret; keys ending in `_file` name a file.


Every key can also be set on its own by a variable: `REMEDIATOR_` and the key's path with `__` between its parts, in any case, e.g. `REMEDIATOR_SERVER__PORT=9096`, `REMEDIATOR_STORE__URL=postgresql://...`, `REMEDIATOR_NOTIFICATIONS__SLACK__CHANNEL=#ops`; a top-level key may be given whole as JSON (`REMEDIATOR_TARGETS='[{{"name": "web", "type": "docker_container"}}]'`). Precedence, per key: such a variable, then the file (after `${{...}}` replacement), then the default. The value is validated like the file's, and a problem with it names the variable (`server.port: ... (from REMEDIATOR_SERVER__PORT)`). They apply with or without a file, and again on every reload.

| variable | meaning |
|---|---|
| `REMEDIATOR_CONFIG` | the configuration file, when a command is not given one |
{roles}

## Checking a configuration

`remediator check-config [FILE]` (default: `$REMEDIATOR_CONFIG`) validates a file without starting anything. A valid file: a summary on stdout, exit status 0. Otherwise one line per problem on stderr, each starting with the path of the field (`<root>` for the whole file), and exit status 1. No file given: exit status 2.

```console
$ remediator check-config remediator.yml
remediator.yml: valid ({counts[0]} targets, {counts[1]} patterns, {counts[2]} playbooks)
$ remediator check-config broken.yml
{problems}
```
"""
STEPS = "A step (in `playbooks[].steps` and `patterns[].recovery`) is a mapping with `action`, the action's parameters, `timeout` and `approval`. Full behaviour, result data and dry-run messages: [playbooks.md](playbooks.md#actions)."
ROLE = "| `{1}` | an API token with role `{0}` (principal `env-{0}`), besides `auth.tokens` |"
_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean"}
Model = type[BaseModel]
_UNION, _ESCAPE = (Union, types.UnionType), str.maketrans({"|": "\\|"})


def description(model: Model, name: str) -> str:
    """What ``model.name`` means: its ``description``, else :data:`DESCRIPTIONS`."""
    keys = [f"{cls.__name__}.{name}" for cls in model.__mro__]
    texts = [model.model_fields[name].description, *map(DESCRIPTIONS.get, keys)]
    if text := next(filter(None, texts), None):
        return text
    raise LookupError(f"{model.__name__}.{name} has no description: add it to {__name__}")


def _models(tp: Any) -> list[Model]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [model for arg in get_args(tp) for model in _models(arg)]


def is_duration(tp: Any, metadata: list[Any] | None = None) -> bool:
    meta = [*(metadata or []), *getattr(tp, "__metadata__", [])]
    found = any(isinstance(m, BeforeValidator) and m.func is parse_duration for m in meta)
    return found or (get_origin(tp) in _UNION and any(map(is_duration, get_args(tp))))


def _duration_field(model: Model, name: str) -> bool:
    return is_duration(model.model_fields[name].annotation, model.model_fields[name].metadata)


def _type(tp: Any, many: bool = False) -> str:
    s, origin, args = "s" if many else "", get_origin(tp), get_args(tp)
    if is_duration(tp):
        return "duration" + s
    if origin is Annotated or (origin in _UNION and type(None) in args):
        return _type(next(a for a in args if a is not type(None)), many)
    if origin in _UNION:
        return ("step" if "action" in args[0].model_fields else "target") + s + " (see below)"
    if origin is Literal:
        return " | ".join(f"`{arg}`" for arg in args)
    if origin in (list, dict):
        return ("list of " if origin is list else "map of string to ") + _type(args[-1], True)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "object" + s + " (see below)"
    return _SCALARS.get(tp, "JSON value") + s


def type_of(model: Model, name: str) -> str:
    """A field's type in words, with its constraints."""
    if name.endswith("_env"):
        return "string (secret from env var)"
    info = model.model_fields[name]
    out = ["duration" if _duration_field(model, name) else _type(info.annotation)]
    for a, text in _LIMITS.items():
        out += [text.format(v) for m in info.metadata if (v := getattr(m, a, None)) is not None]
    return ", ".join(out)


def duration(seconds: float) -> str:
    """``250ms``, ``30s``, ``60s``, ``2m``, ``1h``, ``90d``: short, and read back as written."""
    for unit, size, least in (("d", 86400, 86400), ("h", 3600, 3600), ("m", 60, 120)):
        if seconds >= least and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms" if 0 < seconds < 1 else f"{seconds:g}s"


def default_of(model: Model, name: str) -> str:
    """The default as written in YAML (durations like ``30s``), or ``required``."""
    info = model.model_fields[name]
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True, validated_data={})
    if isinstance(value, BaseModel):
        value = {k: duration(v) if _duration_field(type(value), k) else v for k, v in value}
    if isinstance(value, float | int) and _duration_field(model, name):
        value = duration(value)
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=999)
    text = text.removesuffix("...\n")
    return f"`{text.strip()}`"


def tables(model: Model, path: str, level: int, only: list[str] | None = None) -> list[str]:
    """A model's table (of the fields ``only``, or all), then one subsection per nested model."""
    out = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for n in only or model.model_fields:
        cells = [type_of(model, n), default_of(model, n), description(model, n)]
        out.append(f"| `{n}` | " + " | ".join(c.translate(_ESCAPE) for c in cells) + " |")
    for n, info in model.model_fields.items() if only is None else ():
        if len(subs := _models(info.annotation)) == 1:
            sub = f"{path}.{n}" + ("[]" if get_origin(info.annotation) is list else "")
            out += ["", f"{'#' * level} `{sub}`", "", *tables(subs[0], sub, level + 1)]
    return out


def _targets() -> list[str]:
    kinds = {get_args(m.model_fields["type"].annotation)[0]: m for m in _models(Target)}
    names = " | ".join(f"`{name}`" for name in kinds).translate(_ESCAPE)
    out = [*tables(_TargetBase, "", 3), f"| `type` | {names} | required | The kind, see below. |"]
    for name, kind in kinds.items():
        own = [n for n in kind.model_fields if n not in _TargetBase.model_fields and n != "type"]
        out += ["", f"### `{name}`", "", description(kind, "type"), "", *tables(kind, "", 4, own)]
        for n in own:  # a nested model of the kind (e.g. `leak`) gets its own table
            if len(subs := _models(kind.model_fields[n].annotation)) == 1:
                sub = f"targets[{name}].{n}"
                out += ["", f"#### `{sub}`", "", *tables(subs[0], sub, 5)]
    return out


def _steps() -> list[str]:
    common = tables(_Step, "", 4, ["timeout", "approval"])
    common = [line.replace("(see below)", "(as `playbooks[].approval`)") for line in common]
    out = ["", "### Steps", "", STEPS, "", *common, ""]
    out += ["| action | acts on | parameters | what it does |", "|---|---|---|---|"]
    for step in _models(Step):
        action = get_args(step.model_fields["action"].annotation)[0]
        names = [n for n in step.model_fields if n not in ("action", "timeout", "approval")]
        params = [
            f"`{n}` ({type_of(step, n)}; {default_of(step, n)}): " + description(step, n)
            for n in names
        ]
        fits = ", ".join(f"`{t}`" for t in sorted(ACTION_TARGET_TYPES.get(action, ()))) or "any"
        listed = "<br>".join(params).translate(_ESCAPE) or "none"
        out.append(f"| `{action}` | {fits} | {listed} | {description(step, 'action')} |")
    return out


def _problems(text: str) -> list[str]:
    try:
        parse(yaml.safe_load(text), env={})
    except ConfigError as exc:
        return exc.problems
    return []


def _setting(path: str) -> str:
    """YAML that sets the key at ``path`` (``health.system_interval``) to ``1m``."""
    section, key = path.split(".")
    return yaml.safe_dump({section: {key: "1m"}})


def render() -> str:
    """The whole of docs/configuration.md."""
    example = parse(yaml.safe_load(EXAMPLE), env={})
    facts = {
        "toc": ", ".join(f"[`{name}`](#{name})" for name in Config.model_fields),
        "restart": ", ".join(f"`{name}`" for name in RESTART_ONLY),
        "unset": _problems('store: {url: "postgresql://${PG_PASSWORD}@db/remediator"}')[0],
        "roles": "\n".join(ROLE.format(*item) for item in ROLE_ENV.items()),
        "counts": [len(example.targets), len(example.patterns), len(example.playbooks)],
        "problems": "\n".join(_problems(BROKEN)),
        "removed": "".join(
            f" (`{line}`)" for path in REMOVED for line in _problems(_setting(path))
        ),
    }
    out = [INTRO.format(**facts)]
    for name, info in Config.model_fields.items():
        intro = [] if name == "builtin_patterns" else [description(Config, name), ""]
        out += [f"## `{name}`", "", *intro]
        if name in ("targets", "builtin_patterns"):
            out += _targets() if name == "targets" else tables(Config, "", 3, [name])
        else:
            path = name + ("[]" if get_origin(info.annotation) is list else "")
            out += tables(_models(info.annotation)[0], path, 3)
        out += [*(_steps() if name == "playbooks" else []), ""]
    return "\n".join([*out, "## A complete minimal example", "", "```yaml", EXAMPLE + "```", ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m remediator.config.docgen", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 when the file is stale")
    text, check = render(), parser.parse_args(argv).check
    if not check:
        OUTPUT.write_text(text, encoding="utf-8")
    elif not OUTPUT.exists() or OUTPUT.read_text(encoding="utf-8") != text:
        print(f"{OUTPUT} is out of date: run `python -m remediator.config.docgen`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
