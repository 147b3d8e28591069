"""One meaning for "success rate": the Grafana panel, run on a real Prometheus scraping a served
remediator, and ``GET /api/v1/recovery/statistics`` give the same number after a run with
retries and a failure; step attempts are their own metric.

The scenario: ``restart-web`` restarts a real container and verifies it (two steps, one attempt:
a success); ``restart-ghost`` acts on a container that does not exist, three attempts (three
failed steps: a failure); ``dry-run-web`` only dry-runs (counted on neither side). Remediations:
1 succeeded, 1 failed -> 0.5. Step attempts: 2 succeeded, 3 failed -> 0.4, the number the panel
showed when it divided steps.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import httpx2 as httpx
import pytest

from tests.e2e.stack import Prometheus, Remediator
from tests.engine_harness import EngineHarness, Recorder, alert, restart_playbook, run
from tests.realservices import ContainerFactory, require
from tests.test_management import Mgmt, make_mgmt, mgmt
from tests.test_panels import JOB, load_generator, payload, prometheus, rfc3339, scraped_after
from tests.waiting import wait_for

# Fixtures: test_panels.py's Prometheus (scraping this module's remediator), test_management.py's
# in-process app.
__all__ = ["make_mgmt", "mgmt", "prometheus"]

PANEL: Final = "Remediation success rate"
STATISTICS_PATH: Final = "/api/v1/recovery/statistics"


@pytest.fixture
def remediator(
    tmp_path: Path, tokens: dict[str, str], container_factory: ContainerFactory
) -> Iterator[Remediator]:
    web = container_factory(("sleep", "3600"), init=True)
    ghost = f"remediator-test-ghost-{uuid.uuid4().hex[:12]}"  # never created
    restart = {"action": "docker.restart", "stop_timeout": 1}
    once = {"cooldown": "0s", "max_per_window": None}
    config: dict[str, Any] = {
        "targets": [
            {"name": "web", "type": "docker_container", "container": web.name},
            {"name": "ghost", "type": "docker_container", "container": ghost},
        ],
        "playbooks": [
            {
                "name": "restart-web",
                "match": ['alertname="WebMemoryHigh"'],
                "target": "web",
                "steps": [restart, {"action": "verify.health", "within": "10s", "interval": "200ms"}],
                "retry": {"max_attempts": 1},
                **once,
            },
            {
                "name": "restart-ghost",
                "match": ['alertname="GhostMemoryHigh"'],
                "target": "ghost",
                "steps": [restart],
                "retry": {"max_attempts": 3, "initial_delay": "100ms", "max_delay": "200ms"},
                **once,
            },
            {
                "name": "dry-run-web",
                "match": ['alertname="WebCacheStale"'],
                "target": "web",
                "steps": [restart],
                "dry_run": True,
                **once,
            },
        ],
    }  # fmt: skip
    served = Remediator(tmp_path, config, tokens, {"DOCKER_HOST": require("docker")})
    served.start()
    try:
        yield served
    finally:
        served.shutdown()


def _fire(remediator: Remediator, alertname: str) -> str:
    fingerprint = f"s{uuid.uuid4().hex[:12]}"
    item = {
        "status": "firing",
        "labels": {"alertname": alertname, "severity": "warning"},
        "annotations": {"summary": alertname},
        "startsAt": rfc3339(time.time()),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://127.0.0.1:9090/graph",
        "fingerprint": fingerprint,
    }
    remediator.post(payload(item))
    return fingerprint


def test_the_panel_and_statistics_give_the_same_success_rate_after_retries_and_a_failure(
    remediator: Remediator, prometheus: Prometheus
) -> None:
    wait_for(scraped_after(prometheus, 0), timeout=15, what="a first scrape of remediator")
    _fire(remediator, "WebMemoryHigh")
    _fire(remediator, "GhostMemoryHigh")
    _fire(remediator, "WebCacheStale")

    def finished() -> bool:
        kinds = [e["type"] for e in remediator.events()]
        done = kinds.count("recovery:succeeded") + kinds.count("recovery:failed")
        return done == 2 and "recovery:dry_run" in kinds

    wait_for(finished, timeout=60, what="two remediations and a dry run", every=0.5)
    steps = [e["outcome"] for e in remediator.events("recovery:action")]
    assert sorted(steps) == ["dry_run", "failure", "failure", "failure", "success", "success"]
    wait_for(scraped_after(prometheus, time.time() + 0.5), timeout=15, what="a scrape after")

    [expr] = [expr for title, expr in load_generator().panel_queries() if title == PANEL]
    panel = prometheus.value(expr)
    answer = httpx.get(
        remediator.url + STATISTICS_PATH,
        params={"window": "1h"},
        headers=remediator.headers("viewer"),
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    rate = answer.json()["success_rate"]
    assert (rate["succeeded"], rate["failed"], rate["overall"]) == (1, 1, 0.5)
    assert panel == pytest.approx(rate["overall"], abs=1e-9), expr
    # Step attempts are their own counter: every attempt of every step, dry runs apart.
    attempts = f'sum by (outcome) (remediator_action_attempts_total{{job="{JOB}"}})'
    counted = {s["metric"]["outcome"]: float(s["value"][1]) for s in prometheus.query(attempts)}
    assert counted == {"success": 2.0, "failure": 3.0, "dry_run": 1.0}


def test_a_retried_remediation_counts_once_and_each_of_its_step_attempts(tmp_path: Path) -> None:
    """On the injected clock: failure, failure, success is one successful remediation and
    three step attempts; a remediation that fails all its attempts is one failure."""
    recorder = Recorder()
    recorder.outcomes = [False, False, True, False, False, False]
    retry = {"max_attempts": 3, "initial_delay": "1s"}
    sections = {
        "targets": [{"name": "web", "type": "docker_container"}],
        "playbooks": [restart_playbook(retry=retry, max_per_window=None)],
    }

    async def body(h: EngineHarness) -> None:
        await h.send(alert("first", container="web"))
        await h.drain()
        await h.send(alert("second", container="web"))
        await h.drain()
        registry = h.rt.metrics.registry
        remediations = {
            outcome: registry.get_sample_value(
                "remediator_remediations_total", {"playbook": "restart", "outcome": outcome}
            )
            for outcome in ("success", "failure", "dry_run")
        }
        assert remediations == {"success": 1.0, "failure": 1.0, "dry_run": 0.0}
        attempts = {
            outcome: registry.get_sample_value(
                "remediator_action_attempts_total",
                {"playbook": "restart", "action": "docker.restart", "outcome": outcome},
            )
            for outcome in ("success", "failure")
        }
        assert attempts == {"success": 1.0, "failure": 5.0}

    run(tmp_path, sections, body, recorder)


def test_manual_runs_count_as_remediations_as_in_statistics(mgmt: Mgmt) -> None:
    mgmt.recorder.outcomes = [True, False]
    ran = mgmt.request("POST", "/trigger", json={"target": "web", "playbook": "restart-web"})
    failed = mgmt.request("POST", "/trigger", json={"target": "cache", "action": "redis.flushdb"})
    assert (ran.json()["state"], failed.json()["state"]) == ("succeeded", "failed")
    stats = mgmt.request("GET", "/statistics", "viewer", params={"window": "1h"}).json()
    assert stats["success_rate"]["overall"] == 0.5
    registry = mgmt.rt.metrics.registry
    counted = {
        (playbook, outcome): registry.get_sample_value(
            "remediator_remediations_total", {"playbook": playbook, "outcome": outcome}
        )
        for playbook, outcome in (
            ("restart-web", "success"),
            ("manual:redis.flushdb", "failure"),
        )
    }
    assert counted == {("restart-web", "success"): 1.0, ("manual:redis.flushdb", "failure"): 1.0}
