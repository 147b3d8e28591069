"""Alert → decision → real Docker action, through a real served remediator.

Restarts are counted from the Docker engine's own event stream ("start" events), not from
remediator's records.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import httpx2 as httpx
import pytest

from tests.dockerd import SecondDockerd
from tests.realservices import ContainerFactory
from tests.serving import Served
from tests.waiting import wait_for

ALERTS = "/api/v1/recovery/alerts"


def payload(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="ContainerMemoryHigh"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "remediator",
        "groupLabels": {"alertname": "ContainerMemoryHigh"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": list(alerts),
    }


def alert(
    fingerprint: str,
    container: str,
    *,
    status: str = "firing",
    starts: str | None = None,
    ends: str | None = None,
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {
            "alertname": "ContainerMemoryHigh",
            "container": container,
            "severity": "warning",
        },
        "annotations": {"summary": f"memory high on {container}"},
        "startsAt": starts or "2026-11-28T10:00:00Z",
        "endsAt": ends or "0001-01-01T00:00:00Z",
        "generatorURL": "http://127.0.0.1:9090/graph",
        "fingerprint": fingerprint,
    }


def config(targets: list[dict[str, Any]], **book: Any) -> dict[str, Any]:
    playbook: dict[str, Any] = {
        "name": "restart-container",
        "match": ['alertname="ContainerMemoryHigh"'],
        "target": "{{ labels.container }}",
        "steps": [{"action": "docker.restart", "stop_timeout": 1}],
        "cooldown": "0s",
        "retry": {"max_attempts": 1},
    }
    playbook.update(book)
    return {"targets": targets, "playbooks": [playbook], "health": {"enabled": False}}


class StartCounter:
    """Counts a container's "start" events from now on (the engine's own event stream)."""

    def __init__(self, client: docker.DockerClient, container_id: str) -> None:
        self.client = client
        self.container_id = container_id
        time.sleep(0.05)
        self.since = time.time() - 2
        self.baseline = starts(client, container_id, self.since)

    def count(self) -> int:
        return starts(self.client, self.container_id, self.since) - self.baseline


def starts(client: docker.DockerClient, container_id: str, since: float) -> int:
    found = client.events(
        since=int(since),
        until=int(time.time()) + 1,
        decode=True,
        filters={"container": container_id, "event": "start"},
    )
    return sum(1 for _ in found)


def events(served: Served, kind: str) -> list[dict[str, Any]]:
    answer = httpx.get(
        served.url + "/api/v1/recovery/events",
        params={"type": kind, "limit": 1000},
        headers=served.headers("viewer"),
    )
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["events"]
    return found


def post(served: Served, body: dict[str, Any]) -> None:
    answer = httpx.post(
        served.url + ALERTS, json=body, headers=served.headers("alertmanager"), timeout=10
    )
    assert answer.status_code == 200, answer.text


@pytest.fixture
def web(container_factory: ContainerFactory) -> Any:
    return container_factory(("sleep", "3600"), init=True)


@pytest.fixture
def serve(tmp_path: Path, tokens: dict[str, str]) -> Iterator[Callable[[dict[str, Any]], Served]]:
    started: list[Served] = []

    def make(cfg: dict[str, Any]) -> Served:
        workdir = tmp_path / f"r{len(started)}"
        workdir.mkdir()
        served = Served(workdir, cfg, tokens)
        served.start()
        started.append(served)
        return served

    yield make
    for served in started:
        served.stop()


def test_an_alert_restarts_the_container(
    serve: Callable[[dict[str, Any]], Served], web: Any, docker_client: docker.DockerClient
) -> None:
    before = web.attrs["State"]["StartedAt"]
    counter = StartCounter(docker_client, web.id)
    served = serve(
        config(
            [{"name": "web", "type": "docker_container", "container": web.name}],
            steps=[
                {"action": "docker.restart", "stop_timeout": 1},
                {"action": "verify.health", "within": "20s", "interval": "500ms"},
            ],
        )
    )
    post(served, payload(alert("aa01", "web")))
    wait_for(lambda: len(events(served, "recovery:action")) == 2, what="restart and verification")
    web.reload()
    assert web.attrs["State"]["StartedAt"] != before
    assert web.attrs["State"]["Running"]
    assert counter.count() == 1
    outcomes = [(e["action"], e["outcome"]) for e in reversed(events(served, "recovery:action"))]
    assert outcomes == [("docker.restart", "success"), ("verify.health", "success")]
    metrics = httpx.get(served.url + "/metrics").text
    assert (
        'remediator_action_attempts_total{action="docker.restart",outcome="success",playbook="restart-container"} 1.0'
        in metrics
    )
    assert (
        'remediator_remediations_total{outcome="success",playbook="restart-container"} 1.0'
        in metrics
    )


def test_the_same_notification_three_times_concurrently_restarts_once(
    serve: Callable[[dict[str, Any]], Served], web: Any, docker_client: docker.DockerClient
) -> None:
    counter = StartCounter(docker_client, web.id)
    served = serve(config([{"name": "web", "type": "docker_container", "container": web.name}]))
    body = payload(alert("bb02", "web"))
    threads = [threading.Thread(target=post, args=(served, body)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_for(lambda: len(events(served, "recovery:action")) >= 1, what="the restart")
    time.sleep(1.0)  # give a wrong second restart the time to happen
    post(served, body)  # and a late re-send, as after repeat_interval
    time.sleep(0.5)
    assert counter.count() == 1
    assert len(events(served, "recovery:action")) == 1
    # Three repeats counted; the first recorded, the others within audit.duplicate_interval.
    duplicates = events(served, "alert:duplicate")
    assert [e["details"]["repeats"] for e in duplicates] == [1]


def test_resolved_and_hostile_alerts_touch_nothing(
    serve: Callable[[dict[str, Any]], Served], web: Any, docker_client: docker.DockerClient
) -> None:
    counter = StartCounter(docker_client, web.id)
    served = serve(config([{"name": "web", "type": "docker_container", "container": web.name}]))
    hostile = [
        web.name,
        "web; docker rm -f web",
        "../web",
        "web\nweb",
        "$(reboot)",
        "web\x00",
        "web\u202e",
    ]
    post(
        served,
        payload(
            alert("cc00", "web", status="resolved", ends="2026-11-28T10:05:00Z"), status="resolved"
        ),
    )
    post(served, payload(*[alert(f"cc{i:02d}", label) for i, label in enumerate(hostile, start=1)]))
    wait_for(lambda: len(events(served, "recovery:skipped")) >= len(hostile), what="refusals")
    time.sleep(0.5)
    assert counter.count() == 0
    refused = [
        e for e in events(served, "recovery:skipped") if e["outcome"] == "target_not_registered"
    ]
    assert len(refused) == len(hostile)
    assert events(served, "recovery:action") == []


def test_a_crash_looping_container_is_restarted_at_most_max_per_window_then_escalated(
    serve: Callable[[dict[str, Any]], Served],
    container_factory: ContainerFactory,
    docker_client: docker.DockerClient,
) -> None:
    crashy = container_factory(("sh", "-c", "sleep 2; exit 1"), init=True)
    counter = StartCounter(docker_client, crashy.id)
    served = serve(
        config(
            [{"name": "crashy", "type": "docker_container", "container": crashy.name}],
            max_per_window={"count": 2, "window": "1h"},
        )
    )
    for episode in range(4):
        begin = datetime.fromtimestamp(time.time() + episode, tz=UTC).isoformat()
        post(served, payload(alert("dd01", "crashy", starts=begin)))
        decided = episode + 1

        def done(count: int = decided) -> bool:
            return (
                len(events(served, "recovery:action")) + len(events(served, "recovery:escalated"))
                >= count
            )

        wait_for(done, what=f"episode {episode} decided")
        end = datetime.fromtimestamp(time.time() + episode + 0.5, tz=UTC).isoformat()
        post(
            served,
            payload(
                alert("dd01", "crashy", status="resolved", starts=begin, ends=end),
                status="resolved",
            ),
        )
    assert counter.count() == 2
    escalated = [e["outcome"] for e in events(served, "recovery:escalated")]
    assert escalated == ["max_per_window", "max_per_window"]


def test_breaker_opens_when_dockerd_is_down_and_closes_when_it_is_back(
    serve: Callable[[dict[str, Any]], Served],
    tmp_path: Path,
    docker_client: docker.DockerClient,
    test_image: str,
) -> None:
    engine = SecondDockerd()
    try:
        engine.start()
        engine.load_image(docker_client, test_image)
        with contextlib.closing(engine.client()) as far_client:
            # create + start: unlike run(), create never tries to pull a missing image.
            far = far_client.containers.create(
                test_image,
                ["sleep", "3600"],
                network_mode="none",
                init=True,
                labels={"remediator.test": "1"},
                name=f"far-{int(time.time())}",
                restart_policy={"Name": "always"},
            )
            far.start()
        target = {
            "name": "far",
            "type": "docker_container",
            "container": far.name,
            "docker_host": engine.url,
        }
        cfg = config([target], max_per_window=None)
        cfg["circuit_breaker"] = {
            "failure_threshold": 5,
            "reset_timeout": "3s",
            "half_open_requests": 1,
        }
        served = serve(cfg)
        engine.stop()
        for i in range(5):
            post(served, payload(alert(f"ee{i:02d}", "far")))
        wait_for(lambda: len(events(served, "circuit:open")) == 1, what="the breaker to open")
        failures = [e for e in events(served, "recovery:action") if e["outcome"] == "failure"]
        assert len(failures) == 5
        post(served, payload(alert("ee05", "far")))
        wait_for(
            lambda: any(e["outcome"] == "circuit_open" for e in events(served, "recovery:skipped")),
            what="a rejection",
        )
        assert len(events(served, "recovery:action")) == 5  # rejected without touching Docker
        metrics = httpx.get(served.url + "/metrics").text
        assert 'remediator_circuit_breaker_state{target="far"} 2.0' in metrics
        # The open state survives a crash of remediator.
        served.kill9()
        served.start()
        metrics = httpx.get(served.url + "/metrics").text
        assert 'remediator_circuit_breaker_state{target="far"} 2.0' in metrics
        # dockerd comes back; after reset_timeout one trial is admitted, succeeds, and closes it.
        engine.start()
        time.sleep(3.2)
        post(served, payload(alert("ee06", "far")))
        wait_for(lambda: len(events(served, "circuit:closed")) == 1, what="the breaker to close")
        kinds = [
            e["type"]
            for e in reversed(
                events(served, "circuit:open")
                + events(served, "circuit:half-open")
                + events(served, "circuit:closed")
            )
        ]
        assert sorted(kinds) == ["circuit:closed", "circuit:half-open", "circuit:open"]
    finally:
        if engine.proc is None or engine.proc.poll() is not None:
            engine.start()
        engine.remove_test_containers()
        engine.stop()
