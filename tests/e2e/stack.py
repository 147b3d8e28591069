"""The whole chain on 127.0.0.1, started and stopped as one: :class:`Stack`.

* a container from the local busybox test image (``network_mode="host"``, label
  ``remediator.test=1``) whose busybox ``httpd`` serves a Prometheus text metric from a CGI
  script: ``leak_bytes`` climbs every second from the container's start time towards the fixed
  ``leak_limit_bytes``, like a memory leak, and falls back when the container restarts (the
  start time changes);
* a real remediator (``python -m remediator serve``, tokens from the environment) with the
  container registered as a ``docker_container`` target and a playbook ``docker.restart`` then
  ``verify.health``;
* a real Alertmanager routing every alert to remediator's webhook with the ``alertmanager``
  token from a ``credentials_file`` (send_resolved, group_wait/group_interval 1s);
* a real Prometheus (scrape and evaluation every 1s) scraping the container and remediator's
  ``/metrics`` (job ``remediator``), alerting to that Alertmanager, with a rule file mirroring
  ``rules/container.rules.yml``'s ContainerMemoryHigh on the leak metric (``for: 2s``).

Nothing listens beyond loopback; every process is stopped by the PID of the ``Popen`` that
started it, and the one container is removed by its id. :meth:`Stack.follow_chain` waits for
each link of the chain in turn (breach, firing, webhook, restart, verification, metric drop,
resolution, recovery) and returns what it saw as a :class:`ChainResult`; the e2e test asserts
on it and ``python -m tests.e2e.demo`` prints it.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import secrets
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

import docker
import docker.errors
import httpx2 as httpx
import yaml

from tests.alertmanager import Alertmanager
from tests.realservices import ContainerFactory, free_port
from tests.serving import Served
from tests.waiting import wait_for

ROOT: Final = Path(__file__).resolve().parents[2]
PROJECT_RULES: Final = ROOT / "rules" / "container.rules.yml"
ALERTNAME: Final = "ContainerMemoryHigh"
ALERTS_PATH: Final = "/api/v1/recovery/alerts"
EVENTS_PATH: Final = "/api/v1/recovery/events"
LEAK_JOB: Final = "leaky"
REMEDIATOR_JOB: Final = "remediator"
PLAYBOOK: Final = "restart-leaky-container"
RULE_FOR_SECONDS: Final = 2
RULE_FOR: Final = f"{RULE_FOR_SECONDS}s"
# cAdvisor's series in the project rule, and the leak metric that stands in for each.
CADVISOR_USAGE: Final = "container_memory_working_set_bytes"
CADVISOR_LIMIT: Final = "container_spec_memory_limit_bytes"
LEAK_USAGE: Final = "leak_bytes"
LEAK_LIMIT: Final = "leak_limit_bytes"
USAGE_SERIES: Final = f'{LEAK_USAGE}{{job="{LEAK_JOB}"}}'
LIMIT_SERIES: Final = f'{LEAK_LIMIT}{{job="{LEAK_JOB}"}}'
POLL: Final = 0.2  # seconds between looks; remediator's API rate-limits each token (10/s)
SYSTEM_DOCKER_SOCKETS: Final = frozenset({"/var/run/docker.sock", "/run/docker.sock"})

T = TypeVar("T")
Progress = Callable[[str], None]


# ------------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------------

_FRACTION = re.compile(r"\.(\d+)")


def parse_time(text: str) -> float:
    """RFC 3339 (Prometheus, Alertmanager and Docker write nanoseconds) as Unix seconds."""
    text = text.strip().replace("Z", "+00:00")
    text = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], text, count=1)
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM the process this module started, SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return f"(no log at {path})"


def _check_docker_host(docker_host: str) -> None:
    if not docker_host.startswith("unix://"):
        raise ValueError(f"DOCKER_HOST {docker_host!r} is not a unix:// socket")
    path = docker_host.removeprefix("unix://")
    if path in SYSTEM_DOCKER_SOCKETS or os.path.realpath(path) in SYSTEM_DOCKER_SOCKETS:
        raise ValueError(f"DOCKER_HOST {docker_host!r} is the system Docker socket")


def docker_starts(client: docker.DockerClient, container_id: str, since: float) -> int:
    """How many "start" events the engine reported for the container since ``since``."""
    found = client.events(
        since=int(since),
        until=int(time.time()) + 1,
        decode=True,
        filters={"container": container_id, "event": "start"},
    )
    return sum(1 for _ in found)


# ------------------------------------------------------------------------------------------------
# the leaking container
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Leak:
    """``leak_bytes = base + rate * seconds since start``; above ``threshold`` after
    ``breach_after`` seconds."""

    breach_after: float = 10.0
    threshold: float = 0.85
    limit_bytes: int = 256 * 1024 * 1024
    base_bytes: int = 64 * 1024 * 1024

    @property
    def rate(self) -> int:
        """Bytes per second; the ratio exceeds the threshold at ``breach_after`` seconds."""
        return (
            math.floor((self.threshold * self.limit_bytes - self.base_bytes) / self.breach_after)
            + 1
        )

    def script(self, port: int) -> str:
        """The container's shell: write the CGI script and the start time, exec httpd."""
        return f"""set -eu
mkdir -p /www/cgi-bin
date +%s > /www/started
cat > /www/cgi-bin/metrics <<'CGI'
#!/bin/sh
now=$(date +%s)
started=$(cat /www/started)
printf 'Content-Type: text/plain; version=0.0.4\\r\\n\\r\\n'
echo '# HELP {LEAK_USAGE} Memory the leaky app holds; it grows every second.'
echo '# TYPE {LEAK_USAGE} gauge'
echo "{LEAK_USAGE} $(( {self.base_bytes} + (now - started) * {self.rate} ))"
echo '# HELP {LEAK_LIMIT} Memory limit of the leaky app.'
echo '# TYPE {LEAK_LIMIT} gauge'
echo '{LEAK_LIMIT} {self.limit_bytes}'
echo '# HELP leak_start_time_seconds When the leaky app started.'
echo '# TYPE leak_start_time_seconds gauge'
echo "leak_start_time_seconds $started"
CGI
chmod 755 /www/cgi-bin/metrics
exec httpd -f -p 127.0.0.1:{port} -h /www
"""


# ------------------------------------------------------------------------------------------------
# Prometheus
# ------------------------------------------------------------------------------------------------


def leak_rule() -> tuple[dict[str, Any], float]:
    """The project's ContainerMemoryHigh rule, on the leak metric instead of cAdvisor's, as a
    rule file; and its threshold.

    Same expression (usage / limit > threshold, the ``name`` label copied to ``container``),
    same labels and annotations; only ``for`` is shortened to 2s.
    """
    groups = yaml.safe_load(PROJECT_RULES.read_text(encoding="utf-8"))["groups"]
    rules = [r for g in groups for r in g["rules"] if r.get("alert") == ALERTNAME]
    if len(rules) != 1:
        raise AssertionError(f"{PROJECT_RULES} has {len(rules)} {ALERTNAME} rules, expected 1")
    rule: dict[str, Any] = dict(rules[0])
    expr = str(rule["expr"])
    for series in (CADVISOR_USAGE, CADVISOR_LIMIT):
        if series not in expr:
            raise AssertionError(f"{ALERTNAME} no longer reads {series}: update tests/e2e/stack.py")
    rule["expr"] = expr.replace(CADVISOR_USAGE, LEAK_USAGE).replace(CADVISOR_LIMIT, LEAK_LIMIT)
    project_for = str(rule["for"])
    rule["for"] = RULE_FOR
    annotations = dict(rule.get("annotations", {}))
    if "description" in annotations:
        annotations["description"] = str(annotations["description"]).replace(
            f"for more than {project_for}", f"for more than {RULE_FOR}"
        )
    rule["annotations"] = annotations
    return {"groups": [{"name": "e2e", "rules": [rule]}]}, rule_threshold(expr)


def rule_threshold(expr: str) -> float:
    """The literal threshold at the end of a rule expression (``... > 0.85``)."""
    match = re.search(r">\s*([0-9.]+)\s*$", expr.strip())
    if match is None:
        raise AssertionError(f"no trailing '> threshold' in {expr!r}")
    return float(match.group(1))


class Prometheus:
    """A real Prometheus on 127.0.0.1 (scrape and evaluation every second), stopped by PID."""

    def __init__(
        self,
        binary: str,
        workdir: Path,
        scrape_configs: list[dict[str, Any]],
        *,
        rules: Mapping[str, Any] | None = None,
        alertmanager: str | None = None,
        port: int | None = None,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "scrape_configs": scrape_configs,
        }
        if rules is not None:
            rule_file = workdir / "e2e.rules.yml"
            rule_file.write_text(yaml.safe_dump(dict(rules), sort_keys=False))
            config["rule_files"] = [str(rule_file)]
        if alertmanager is not None:
            target = alertmanager.removeprefix("http://")
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [target]}]}]}
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_path = workdir / "prometheus.log"
        self.binary = binary
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Prometheus:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("prometheus did not start:\n" + self.log())

    def log(self) -> str:
        return _tail(self.log_path)

    def stop(self) -> None:
        if self.proc is not None:
            _stop_process(self.proc)

    def query_raw(self, expr: str, at: float | None = None) -> dict[str, Any]:
        """The JSON answer of an instant query (``status`` is ``success`` or ``error``)."""
        params: dict[str, str] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        answer = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=10)
        data: dict[str, Any] = answer.json()
        return data

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """The result vector of an instant query (an error raises AssertionError)."""
        data = self.query_raw(expr, at)
        if data.get("status") != "success":
            raise AssertionError(f"query {expr!r} failed: {data.get('error')}")
        result: list[dict[str, Any]] = data["data"]["result"]
        return result

    def value(self, expr: str, at: float | None = None) -> float | None:
        """The value of a one-series result, None when empty."""
        result = self.query(expr, at)
        if not result:
            return None
        if len(result) != 1:
            raise AssertionError(f"query {expr!r} returned {len(result)} series, expected 1")
        return float(result[0]["value"][1])

    def samples(self, selector: str, window: str = "5m") -> list[tuple[float, float]]:
        """The raw samples of a one-series selector over the last ``window``, oldest first."""
        result = self.query(f"{selector}[{window}]")
        if not result:
            return []
        if len(result) != 1:
            raise AssertionError(f"{selector!r} selects {len(result)} series, expected 1")
        return [(float(t), float(v)) for t, v in result[0]["values"]]

    def alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts (``/api/v1/alerts``)."""
        answer = httpx.get(f"{self.url}/api/v1/alerts", timeout=5)
        found: list[dict[str, Any]] = answer.json()["data"]["alerts"]
        return found

    def targets_up(self) -> dict[str, bool]:
        """Scrape pool -> health of its (single) target."""
        answer = httpx.get(f"{self.url}/api/v1/targets", timeout=5)
        active = answer.json()["data"]["activeTargets"]
        return {t["scrapePool"]: t["health"] == "up" for t in active}


# ------------------------------------------------------------------------------------------------
# remediator
# ------------------------------------------------------------------------------------------------


class Remediator(Served):
    """:class:`Served` with extra environment variables (a Slack token, DOCKER_HOST...)."""

    def __init__(
        self,
        workdir: Path,
        config: dict[str, Any],
        tokens: dict[str, str],
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(workdir, config, tokens)
        self.extra_env = dict(extra_env or {})

    def env(self) -> dict[str, str]:
        return {**super().env(), **self.extra_env}

    def shutdown(self) -> None:
        """SIGTERM by PID (graceful drain), SIGKILL if it does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.terminate(timeout=10)
        except subprocess.TimeoutExpired:
            self.stop()

    def events(self, kind: str | None = None, **params: str) -> list[dict[str, Any]]:
        """Recorded events, oldest first (viewer token)."""
        query: dict[str, str | int] = {"limit": 1000, **params}
        if kind is not None:
            query["type"] = kind
        deadline = time.monotonic() + 15
        while True:
            answer = httpx.get(
                self.url + EVENTS_PATH, params=query, headers=self.headers("viewer"), timeout=10
            )
            if answer.status_code != 429 or time.monotonic() > deadline:
                break
            # The API rate-limits each token: wait as told, as a polite client does.
            time.sleep(float(answer.headers.get("Retry-After") or 1))
        if answer.status_code != 200:
            raise AssertionError(f"GET {EVENTS_PATH} answered {answer.status_code}: {answer.text}")
        found: list[dict[str, Any]] = answer.json()["events"]
        return list(reversed(found))

    def metrics(self) -> str:
        return httpx.get(self.url + "/metrics", timeout=10).text

    def post(self, body: Mapping[str, Any]) -> None:
        """POST a webhook payload as Alertmanager would (alertmanager token)."""
        answer = httpx.post(
            self.url + ALERTS_PATH,
            json=dict(body),
            headers=self.headers("alertmanager"),
            timeout=10,
        )
        if answer.status_code != 200:
            raise AssertionError(f"POST {ALERTS_PATH} answered {answer.status_code}: {answer.text}")


# ------------------------------------------------------------------------------------------------
# the chain
# ------------------------------------------------------------------------------------------------


@dataclass
class ChainResult:
    """What :meth:`Stack.follow_chain` saw, each link with its evidence."""

    target: str
    container_id: str
    threshold: float
    leak_started: float  # the container's first StartedAt
    prometheus_alert: dict[str, Any]  # as /api/v1/alerts showed it while firing
    breach: float  # the alert's activeAt in Prometheus: first evaluation above the threshold
    # (Prometheus sends activeAt + for, when it fired, as startsAt: see ChainResult.starts_at)
    firing_seen: float  # when /api/v1/alerts first showed it firing
    received: dict[str, Any]  # the alert:received event
    restart: dict[str, Any]  # the recovery:action event of docker.restart
    verified: dict[str, Any]  # the recovery:action event of verify.health
    restarted_at: float  # the container's new StartedAt
    ratio_peak: float  # usage/limit before the restart (max over time)
    ratio_after: float  # usage/limit in the first sample scraped after the restart
    ratio_after_at: float  # that sample's timestamp
    resolved: dict[str, Any]  # the alert:resolved event
    recovered: dict[str, Any]  # the service:recovered event
    restarts: int  # Docker "start" events of the container since it was first started
    started_at_before: str
    started_at_after: str
    timeline: list[tuple[float, str]] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        return str(self.received["fingerprint"])

    @property
    def starts_at(self) -> float:
        """startsAt as Alertmanager sent it (from the stored alert:received event)."""
        return float(self.received["details"]["starts_at"])

    @property
    def ends_at(self) -> float:
        """endsAt as Alertmanager sent it (from the stored alert:resolved event)."""
        return float(self.resolved["details"]["ends_at"])

    @property
    def mttr(self) -> float:
        return float(self.recovered["duration"])

    def format_timeline(self) -> str:
        """One line per moment, in order, in seconds relative to the breach."""
        lines = [f"timeline of {self.target} (t=0: breach, the first evaluation above threshold)"]
        for at, label in sorted(self.timeline):
            lines.append(f"  {at - self.breach:+7.2f}s  {label}")
        return "\n".join(lines)


class Stack:
    """The whole chain; ``with Stack(...) as stack:`` or ``start()``/``stop()``."""

    def __init__(
        self,
        *,
        workdir: Path,
        docker_host: str,
        image: str,
        prometheus_bin: str,
        alertmanager_bin: str,
        leak: Leak | None = None,
        tokens: Mapping[str, str] | None = None,
        playbook: Mapping[str, Any] | None = None,
        notifications: Mapping[str, Any] | None = None,
        extra_env: Mapping[str, str] | None = None,
        name_prefix: str = "remediator-e2e-leaky",
    ) -> None:
        _check_docker_host(docker_host)
        self.workdir = workdir
        self.docker_host = docker_host
        self.image = image
        self.prometheus_bin = prometheus_bin
        self.alertmanager_bin = alertmanager_bin
        self.leak = leak or Leak()
        self.tokens = dict(tokens) if tokens else _new_tokens()
        self.playbook_overrides = dict(playbook or {})
        self.notifications = dict(notifications) if notifications else None
        self.extra_env = dict(extra_env or {})
        self.name_prefix = name_prefix
        self.leak_port = free_port()
        self.rules, self.threshold = leak_rule()
        if not math.isclose(self.threshold, self.leak.threshold):
            raise AssertionError(
                f"the project rule's threshold is {self.threshold}, the leak assumes "
                f"{self.leak.threshold}: pass Leak(threshold={self.threshold})"
            )
        self._exit = contextlib.ExitStack()
        self._client: docker.DockerClient | None = None
        self._container: Any = None
        self._remediator: Remediator | None = None
        self._alertmanager: Alertmanager | None = None
        self._prometheus: Prometheus | None = None
        self._starts_since = 0.0
        self._starts_baseline = 0

    # -- parts ---------------------------------------------------------------------------------

    @property
    def client(self) -> docker.DockerClient:
        assert self._client is not None, "stack not started"
        return self._client

    @property
    def container(self) -> Any:
        assert self._container is not None, "stack not started"
        return self._container

    @property
    def remediator(self) -> Remediator:
        assert self._remediator is not None, "stack not started"
        return self._remediator

    @property
    def alertmanager(self) -> Alertmanager:
        assert self._alertmanager is not None, "stack not started"
        return self._alertmanager

    @property
    def prometheus(self) -> Prometheus:
        assert self._prometheus is not None, "stack not started"
        return self._prometheus

    @property
    def target(self) -> str:
        """The registered target name: the container's name, as cAdvisor's ``name`` label."""
        return str(self.container.name)

    @property
    def leak_url(self) -> str:
        return f"http://127.0.0.1:{self.leak_port}/cgi-bin/metrics"

    def remediator_config(self) -> dict[str, Any]:
        playbook: dict[str, Any] = {
            "name": PLAYBOOK,
            "match": [f'alertname="{ALERTNAME}"'],
            "target": "{{ labels.container }}",
            "steps": [
                {"action": "docker.restart", "stop_timeout": 1},
                {"action": "verify.health", "within": "20s", "interval": "500ms"},
            ],
            "retry": {"max_attempts": 1},
            **self.playbook_overrides,
        }
        config: dict[str, Any] = {
            "targets": [
                {"name": self.target, "type": "docker_container", "container": self.target}
            ],
            "playbooks": [playbook],
        }
        if self.notifications is not None:
            config["notifications"] = self.notifications
        return config

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, progress: Progress | None = None) -> Stack:
        say = progress or (lambda _line: None)
        try:
            self._start(say)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, say: Progress) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._client = docker.DockerClient(base_url=self.docker_host, timeout=60)
        self._exit.callback(self._client.close)
        factory = ContainerFactory(self._client, self.image)
        self._exit.callback(factory.close)
        port = self.leak_port
        self._starts_since = time.time() - 2
        self._container = factory(
            ("sh", "-c", self.leak.script(port)),
            network_mode="host",
            name_prefix=self.name_prefix,
            init=True,
            healthcheck={
                "test": ["CMD", "wget", "-q", "-O", "/dev/null", self.leak_url],
                "interval": 1_000_000_000,
                "timeout": 1_000_000_000,
                "retries": 3,
            },
        )
        wait_for(self._leak_answers, timeout=10, what=f"the leaky container on {self.leak_url}")
        self._starts_baseline = docker_starts(self._client, self._container.id, self._starts_since)
        say(
            f"container {self.target} leaks {self.leak.rate / 2**20:.1f} MiB/s towards "
            f"{self.leak.limit_bytes / 2**20:.0f} MiB; metrics on {self.leak_url}"
        )

        (self.workdir / "remediator").mkdir(exist_ok=True)
        remediator = Remediator(
            self.workdir / "remediator",
            self.remediator_config(),
            dict(self.tokens),
            {"DOCKER_HOST": self.docker_host, **self.extra_env},
        )
        self._remediator = remediator
        self._exit.callback(remediator.shutdown)
        remediator.start()
        say(f"remediator on {remediator.url} (config {remediator.config_path})")

        alertmanager = Alertmanager(
            self.alertmanager_bin,
            self.workdir / "alertmanager",
            webhook_url=remediator.url + ALERTS_PATH,
            token=self.tokens["alertmanager"],
        )
        self._alertmanager = alertmanager
        self._exit.callback(alertmanager.stop)
        say(f"Alertmanager on {alertmanager.url}, posting to remediator with a bearer token")

        prometheus = Prometheus(
            self.prometheus_bin,
            self.workdir / "prometheus",
            [
                {
                    "job_name": LEAK_JOB,
                    "metrics_path": "/cgi-bin/metrics",
                    "static_configs": [
                        {
                            "targets": [f"127.0.0.1:{port}"],
                            # What cAdvisor calls the container: its name.
                            "labels": {"name": self.target},
                        }
                    ],
                },
                {
                    "job_name": REMEDIATOR_JOB,
                    "static_configs": [{"targets": [remediator.url.removeprefix("http://")]}],
                },
            ],
            rules=self.rules,
            alertmanager=alertmanager.url,
        )
        self._prometheus = prometheus
        self._exit.callback(prometheus.stop)
        prometheus.start()
        say(f"Prometheus on {prometheus.url}, rule {ALERTNAME}: usage/limit > {self.threshold}")

    def stop(self) -> None:
        """Stop Prometheus, Alertmanager and remediator by PID; remove the container."""
        self._exit.close()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def restarts(self) -> int:
        """Docker "start" events of the container since its first start (the engine's count)."""
        count = docker_starts(self.client, self.container.id, self._starts_since)
        return count - self._starts_baseline

    def _leak_answers(self) -> bool:
        try:
            return httpx.get(self.leak_url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def diagnostics(self) -> str:
        """Log tails of every process, for a failure message."""
        parts = []
        if self._remediator is not None:
            parts.append("--- remediator log\n" + self._remediator.log())
        if self._alertmanager is not None:
            parts.append("--- alertmanager log\n" + _tail(self._alertmanager.log_path))
        if self._prometheus is not None:
            parts.append("--- prometheus log\n" + self._prometheus.log())
        if self._container is not None:
            with contextlib.suppress(docker.errors.DockerException):
                logs = self._container.logs(tail=30).decode(errors="replace")
                parts.append("--- container log\n" + logs)
        return "\n".join(parts)

    # -- the chain -----------------------------------------------------------------------------

    def prometheus_alert(self, state: str) -> dict[str, Any] | None:
        """Our alert in Prometheus, if it is in ``state`` (or firing, when ``pending`` asked)."""
        wanted = {"pending", "firing"} if state == "pending" else {state}
        for alert in self.prometheus.alerts():
            if alert["labels"].get("alertname") == ALERTNAME and alert["state"] in wanted:
                return alert
        return None

    def _event(self, kind: str, fingerprint: str, **match: str) -> dict[str, Any] | None:
        for event in self.remediator.events(kind, fingerprint=fingerprint):
            if all(event.get(k) == v for k, v in match.items()):
                return event
        return None

    def _received(self) -> dict[str, Any] | None:
        for event in self.remediator.events("alert:received"):
            if event["alertname"] == ALERTNAME:
                return event
        return None

    def _started_at(self) -> str:
        self.container.reload()
        return str(self.container.attrs["State"]["StartedAt"])

    def follow_chain(
        self,
        on_step: Callable[[str, float], None] | None = None,
        *,
        step_timeout: float = 20.0,
    ) -> ChainResult:
        """Wait for each link in turn; AssertionError names the first one that did not happen.

        ``on_step(label, unix_time)`` is called as each link is seen.
        """
        timeline: list[tuple[float, str]] = []

        def step(label: str, at: float) -> None:
            timeline.append((at, label))
            if on_step is not None:
                on_step(label, at)

        def link(what: str, check: Callable[[], T | None], timeout: float = step_timeout) -> T:
            try:
                return wait_for(check, timeout=timeout, what=what, every=POLL)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{self.diagnostics()}") from None

        started_before = self._started_at()
        leak_started = parse_time(started_before)
        timeline.append((leak_started, "leak starts (container started)"))

        pending = link(
            f"{ALERTNAME} pending in Prometheus (usage/limit > {self.threshold})",
            lambda: self.prometheus_alert("pending"),
            timeout=self.leak.breach_after + step_timeout,
        )
        breach = parse_time(pending["activeAt"])
        step(f"breach: usage/limit > {self.threshold}, {ALERTNAME} pending", breach)

        firing = link(f"{ALERTNAME} firing in Prometheus", lambda: self.prometheus_alert("firing"))
        firing_seen = time.time()
        step(f"{ALERTNAME} seen firing in Prometheus (for: {RULE_FOR})", firing_seen)

        received = link("alert:received (Alertmanager's webhook)", self._received)
        fingerprint = str(received["fingerprint"])
        # Prometheus sends the time the alert started firing as startsAt (activeAt + for).
        timeline.append((float(received["details"]["starts_at"]), "startsAt: the alert fires"))
        step(f"webhook: remediator stored the alert ({received['actor']})", float(received["ts"]))

        restart = link(
            "recovery:action docker.restart",
            lambda: self._event("recovery:action", fingerprint, action="docker.restart"),
        )
        step(f"action: docker.restart {restart['outcome']}", float(restart["ts"]))

        started_after = link(
            "a new StartedAt", lambda: _changed(self._started_at(), started_before)
        )
        restarted_at = parse_time(started_after)
        step("container started again (Docker StartedAt)", restarted_at)

        limit = link("leak_limit_bytes in Prometheus", lambda: self.prometheus.value(LIMIT_SERIES))

        def dropped() -> tuple[float, float] | None:
            after = [(t, v) for t, v in self.prometheus.samples(USAGE_SERIES) if t > restarted_at]
            if not after or after[0][1] / limit >= self.threshold:
                return None
            return after[0][1] / limit, after[0][0]

        ratio_after, ratio_after_at = link("the leak metric to drop after the restart", dropped)
        before = [v for t, v in self.prometheus.samples(USAGE_SERIES) if t < restarted_at]
        peak = max(before) / limit if before else math.nan
        step(
            f"metric dropped: first sample after the restart at {ratio_after:.0%} of the limit "
            f"(peak {peak:.0%})",
            ratio_after_at,
        )
        for at, up in self.prometheus.samples(f'up{{job="{LEAK_JOB}"}}'):
            if up == 0 and at >= leak_started:
                step("a scrape of the leaky container failed (up=0) while it restarted", at)

        resolved = link(
            "alert:resolved (Alertmanager's resolved webhook)",
            lambda: self._event("alert:resolved", fingerprint),
        )
        ends_at = float(resolved["details"]["ends_at"])
        step("alert resolved in Prometheus (endsAt)", ends_at)
        step("webhook: remediator stored the resolved alert", float(resolved["ts"]))

        recovered = link(
            "service:recovered",
            lambda: self._event("service:recovered", fingerprint, outcome="recovered"),
        )
        step(f"service:recovered, MTTR {float(recovered['duration']):.2f}s", float(recovered["ts"]))

        verified = link(
            "recovery:action verify.health",
            lambda: self._event("recovery:action", fingerprint, action="verify.health"),
        )
        step(f"action: verify.health {verified['outcome']}", float(verified["ts"]))

        return ChainResult(
            target=self.target,
            container_id=str(self.container.id),
            threshold=self.threshold,
            leak_started=leak_started,
            prometheus_alert=firing,
            breach=breach,
            firing_seen=firing_seen,
            received=received,
            restart=restart,
            verified=verified,
            restarted_at=restarted_at,
            ratio_peak=peak,
            ratio_after=ratio_after,
            ratio_after_at=ratio_after_at,
            resolved=resolved,
            recovered=recovered,
            restarts=self.restarts(),
            started_at_before=started_before,
            started_at_after=started_after,
            timeline=timeline,
        )


def _changed(value: str, before: str) -> str | None:
    return value if value != before else None


def _new_tokens() -> dict[str, str]:
    return {role: secrets.token_urlsafe(24) for role in ("alertmanager", "viewer", "admin")}
