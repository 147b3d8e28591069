"""Every Grafana panel query returns data from a real Prometheus scraping a real remediator.

A served remediator runs remediations that succeed (a real container restart), fail (a target
whose container does not exist, which also opens its circuit breaker: failure_threshold 1), run
dry, get blocked by guards (max_per_window, circuit_open, an unregistered target) and escalate
(unknown pattern, failure, guard blocks); resolved alerts give time-to-recovery observations;
the Slack stand-in receives the notifications. Prometheus scrapes it every second. The alerts
come in two rounds with scrapes in between, so every counter and histogram series exists before
it increases and every rate window sees an increase.

Then each ``(title, expr)`` of ``grafana/generate.py``'s :func:`panel_queries` is run as an
instant query. A query fails when Prometheus answers an error, an empty result ("No data" in
Grafana) or only NaN (a ratio of two zero rates, a quantile of no observations). Panels that
may legitimately show nothing must be listed in :data:`EXPECTED_EMPTY` with the reason; the
test fails as well when one of them starts returning data, so the list never goes stale.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, Protocol, cast

import pytest
import yaml

from tests.e2e.stack import Prometheus, Remediator
from tests.realservices import ContainerFactory, require
from tests.slackapi import SlackAPI
from tests.waiting import wait_for

ROOT: Final = Path(__file__).resolve().parent.parent
GENERATOR: Final = ROOT / "grafana" / "generate.py"
JOB: Final = "remediator"
SLACK_TOKEN_ENV: Final = "REMEDIATOR_PANELS_SLACK_TOKEN"
TERMINAL: Final = frozenset({"recovery:succeeded", "recovery:failed", "recovery:skipped"})

# Panel title -> why it shows nothing after the scenario below. Keep it empty unless a panel
# cannot have data in a healthy run; the test fails when a listed panel returns data.
EXPECTED_EMPTY: Final[dict[str, str]] = {
    # No playbook of this scenario asks for approval; tests/test_approvals.py reads the metrics.
    "Approvals by outcome": "no approval is requested in this scenario",
    "Approval wait (p90)": "no approval is requested in this scenario",
}


class Generator(Protocol):
    def panel_queries(self) -> list[tuple[str, str]]: ...


def load_generator() -> Generator:
    """``grafana/generate.py`` imported by path (``grafana/`` is not imported as a package)."""
    name = "remediator_grafana_generate_panels"
    spec = importlib.util.spec_from_file_location(name, GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return cast(Generator, module)


# ------------------------------------------------------------------------------------------------
# alerts
# ------------------------------------------------------------------------------------------------


def rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def alert(
    fingerprint: str,
    alertname: str,
    *,
    status: str = "firing",
    labels: dict[str, str] | None = None,
    starts: float,
    ends: float | None = None,
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": alertname, "severity": "warning", **(labels or {})},
        "annotations": {"summary": f"{alertname} in the panels test"},
        "startsAt": rfc3339(starts),
        "endsAt": rfc3339(ends) if ends is not None else "0001-01-01T00:00:00Z",
        "generatorURL": "http://127.0.0.1:9090/graph",
        "fingerprint": fingerprint,
    }


def payload(item: dict[str, Any]) -> dict[str, Any]:
    name = item["labels"]["alertname"]
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{name}"}}',
        "truncatedAlerts": 0,
        "status": item["status"],
        "receiver": "remediator",
        "groupLabels": {"alertname": name},
        "commonLabels": item["labels"],
        "commonAnnotations": item["annotations"],
        "externalURL": "http://127.0.0.1:9093",
        "alerts": [item],
    }


class Scenario:
    """Posts rounds of alerts and waits until remediator has handled each of them."""

    def __init__(self, remediator: Remediator) -> None:
        self.remediator = remediator
        self.round = 0

    def firing(self, alertname: str, **labels: str) -> str:
        fingerprint = f"p{self.round}{uuid.uuid4().hex[:12]}"
        self.remediator.post(payload(alert(fingerprint, alertname, labels=labels, starts=_now())))
        return fingerprint

    def resolved(self, alertname: str, *, lasted: float) -> str:
        """An episode that started ``lasted`` seconds ago and has just resolved."""
        fingerprint = f"p{self.round}{uuid.uuid4().hex[:12]}"
        now = _now()
        self.remediator.post(payload(alert(fingerprint, alertname, starts=now - lasted)))
        self.remediator.post(
            payload(alert(fingerprint, alertname, status="resolved", starts=now - lasted, ends=now))
        )
        return fingerprint

    def play(self) -> float:
        """One round; returns when every alert of it is handled (a Unix time)."""
        self.round += 1
        decided = [
            self.firing("WebMemoryHigh"),  # restart-web: restart + verify.health succeed
            self.firing("WebCacheStale"),  # dry-run-web: dry run
            self.firing("GhostMemoryHigh"),  # restart-ghost: fails, breaker opens (1st round)
            self.firing("ContainerMemoryHigh", container="not-registered"),  # refused
            self.firing("SomethingOdd"),  # unknown pattern: escalated
        ]
        if self.round > 1:  # the third restart of web in the hour: max_per_window
            decided.append(self.firing("WebMemoryHigh"))
        # A re-send of the first alert: counted as a duplicate, never run twice.
        self.remediator.post(payload(alert(decided[0], "WebMemoryHigh", starts=_now())))
        recovered = [
            self.resolved("WebMemoryHigh", lasted=40.0),
            self.resolved("WebCacheStale", lasted=20.0),
            self.resolved("GhostMemoryHigh", lasted=200.0),
        ]
        try:
            wait_for(
                lambda: not self._missing(decided, recovered),
                timeout=30,
                what="handling",
                every=0.25,  # the events API rate-limits each token
            )
        except AssertionError as exc:
            missing = self._missing(decided, recovered)
            seen = [(e["fingerprint"], e["type"], e["outcome"]) for e in self.remediator.events()]
            raise AssertionError(
                f"round {self.round}: {exc}; not handled: {missing}\nevents: {seen}\n"
                f"{self.remediator.log()}"
            ) from None
        return time.time()

    def _missing(self, decided: list[str], recovered: list[str]) -> list[str]:
        """Fingerprints not handled yet: no final event, or no service:recovered."""
        events = self.remediator.events()
        done = {e["fingerprint"] for e in events if final(e)}
        closed = {e["fingerprint"] for e in events if e["type"] == "service:recovered"}
        return [f for f in decided if f not in done] + [f for f in recovered if f not in closed]


def final(event: dict[str, Any]) -> bool:
    """The last event of a decided alert (a dry run records no event after its steps)."""
    dry_run = event["type"] == "recovery:action" and event["outcome"] == "dry_run"
    return dry_run or event["type"] in TERMINAL


def _now() -> float:
    return time.time()


# ------------------------------------------------------------------------------------------------
# the test
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def remediator(
    tmp_path: Path,
    tokens: dict[str, str],
    container_factory: ContainerFactory,
    slack_api: SlackAPI,
) -> Iterator[Remediator]:
    web = container_factory(("sleep", "3600"), init=True)
    ghost = f"remediator-test-ghost-{uuid.uuid4().hex[:12]}"  # never created
    restart = {"action": "docker.restart", "stop_timeout": 1}
    checked = {"check_interval": "1s"}  # remediator_target_up and check durations, every second
    config: dict[str, Any] = {
        "targets": [
            {"name": "web", "type": "docker_container", "container": web.name, **checked},
            {"name": "ghost", "type": "docker_container", "container": ghost, **checked},
            # the Queues row: an rq target's queue checks (database 13, as tests/queues/)
            {
                "name": "jobs",
                "type": "rq",
                "url": require("redis").rsplit("/", 1)[0] + "/13",
                "queues": ["panels"],
                **checked,
            },
        ],
        "circuit_breaker": {"failure_threshold": 1, "reset_timeout": "1h"},
        "playbooks": [
            {
                "name": "restart-web",
                "match": ['alertname="WebMemoryHigh"'],
                "target": "web",
                "steps": [
                    restart,
                    {"action": "verify.health", "within": "10s", "interval": "200ms"},
                ],
                "cooldown": "0s",
                "max_per_window": {"count": 2, "window": "1h"},
                "retry": {"max_attempts": 1},
            },
            {
                "name": "dry-run-web",
                "match": ['alertname="WebCacheStale"'],
                "target": "web",
                "steps": [restart],
                "dry_run": True,
                "cooldown": "0s",
                "max_per_window": None,
            },
            {
                "name": "restart-ghost",
                "match": ['alertname="GhostMemoryHigh"'],
                "target": "ghost",
                "steps": [restart],
                "cooldown": "0s",
                "max_per_window": None,
                "retry": {"max_attempts": 1},
            },
            {
                "name": "restart-by-label",
                "match": ['alertname="ContainerMemoryHigh"'],
                "target": "{{ labels.container }}",
                "steps": [restart],
            },
        ],
        "notifications": {
            "slack": {"api_url": slack_api.url, "token_env": SLACK_TOKEN_ENV, "pace": "0s"}
        },
    }
    env = {SLACK_TOKEN_ENV: slack_api.token, "DOCKER_HOST": require("docker")}
    served = Remediator(tmp_path, config, tokens, env)
    served.start()
    try:
        yield served
    finally:
        served.shutdown()


@pytest.fixture
def prometheus(tmp_path: Path, prometheus_bin: str, remediator: Remediator) -> Iterator[Prometheus]:
    server = Prometheus(
        prometheus_bin,
        tmp_path / "prometheus",
        [
            {
                "job_name": JOB,
                "static_configs": [{"targets": [remediator.url.removeprefix("http://")]}],
            }
        ],
        # The panels that read recording rules need them evaluated.
        rules=yaml.safe_load((ROOT / "rules" / "recording.rules.yml").read_text(encoding="utf-8")),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def scraped_after(prometheus: Prometheus, moment: float) -> Callable[[], bool]:
    """True once Prometheus has scraped remediator after ``moment``."""

    def check() -> bool:
        at = prometheus.value(f'timestamp(up{{job="{JOB}"}})')
        return at is not None and at > moment

    return check


def verdict(answer: dict[str, Any]) -> str | None:
    """None when the query has data, else why not."""
    if answer.get("status") != "success":
        return f"error: {answer.get('errorType')}: {answer.get('error')}"
    result = answer["data"]["result"]
    if answer["data"]["resultType"] == "scalar":
        result = [{"value": result}]
    if not result:
        return "no data"
    values = [float(series["value"][1]) for series in result]
    if not any(math.isfinite(v) for v in values):
        return f"only NaN/Inf ({len(values)} series)"
    return None


def test_every_panel_query_returns_data(
    remediator: Remediator, prometheus: Prometheus, slack_api: SlackAPI
) -> None:
    began = time.monotonic()
    wait_for(scraped_after(prometheus, 0), timeout=15, what="a first scrape of remediator")
    scenario = Scenario(remediator)
    first = scenario.play()
    wait_for(scraped_after(prometheus, first), timeout=10, what="a scrape after round 1")
    second = scenario.play()
    wait_for(lambda: slack_api.messages or None, timeout=15, what="a Slack notification")
    wait_for(scraped_after(prometheus, second + 1.0), timeout=10, what="a scrape after round 2")

    queries = load_generator().panel_queries()
    assert queries, "grafana/generate.py has no panel queries"
    failing: dict[str, list[str]] = {}
    for title, expr in queries:
        problem = verdict(prometheus.query_raw(expr))
        if problem is not None:
            failing.setdefault(title, []).append(f"{problem}: {expr}")
    print(f"\n{len(queries)} panel queries run {time.monotonic() - began:.1f}s after the start")

    unexpected = {t: p for t, p in failing.items() if t not in EXPECTED_EMPTY}
    report = "\n".join(f"- {title}:\n    " + "\n    ".join(p) for title, p in unexpected.items())
    assert not unexpected, f"{len(unexpected)} panel(s) show nothing:\n{report}"
    stale = sorted(set(EXPECTED_EMPTY) - set(failing))
    assert not stale, f"panels in EXPECTED_EMPTY now return data, remove them: {stale}"
