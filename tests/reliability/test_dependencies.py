"""A dependency goes down under a storm of alerts, then comes back.

For Redis, PostgreSQL and a Docker engine of its own, with ``failure_threshold: 3`` and
retries: eight incidents arrive while the dependency is down. Expected:

* the breaker opens once, and the actions tried against the dead dependency are exactly
  ``failure_threshold`` (no restart storm: the retries and the later incidents are rejected);
* every incident is escalated exactly once (one escalation level, delivered to a webhook);
* when the dependency is back and ``reset_timeout`` has passed, one half-open trial runs, has
  its real effect (a key flushed, a backend terminated, a container restarted) and closes the
  breaker.

"Down" is real: Redis is a throwaway server that is stopped (the target points at a port the test
owns, a small TCP proxy, so that the new server started afterwards is reached at the same
address); PostgreSQL is reached through such a proxy, which is stopped (connections cut, new
ones refused) and started again; the Docker engine is a second dockerd, stopped and started
(tests/dockerd.py). ``tests/test_engine_docker.py`` covers one engine outage with as many alerts
as the threshold; this adds the storm beyond it, retries and the escalations.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import docker
import psycopg
import pytest
import redis

from tests.dockerd import SecondDockerd
from tests.realservices import RedisServerFactory
from tests.reliability.conftest import Figures, Serve
from tests.reliability.support import Proxy, WebhookSink, alert, payload, webhook_sink
from tests.test_engine_docker import StartCounter
from tests.waiting import wait_for

THRESHOLD = 3
INCIDENTS = 8


class Dependency(Protocol):
    name: str

    def target(self) -> dict[str, Any]: ...
    def step(self) -> dict[str, Any]: ...
    def down(self) -> None: ...
    def up(self) -> None: ...
    def arm(self) -> None:
        """Prepare something the trial's real effect will change."""

    def effect(self) -> bool:
        """Did the real effect happen since :meth:`arm`?"""


class RedisDependency:
    name = "redis"

    def __init__(self, factory: RedisServerFactory) -> None:
        self.factory = factory
        self.server = factory()
        self.proxy = Proxy(_port(self.server))
        self.proxy.start()

    def target(self) -> dict[str, Any]:
        return {"name": "cache", "type": "redis", "url": f"redis://127.0.0.1:{self.proxy.port}/0"}

    def step(self) -> dict[str, Any]:
        return {"action": "redis.flushdb", "timeout": "2s"}

    def down(self) -> None:
        self.proxy.stop()
        self.factory.stop(self.server)  # the server really dies

    def up(self) -> None:
        self.server = self.factory()  # a new server, reached at the same address
        self.proxy.backend = _port(self.server)
        self.proxy.start()

    def arm(self) -> None:
        with redis.Redis.from_url(self.server) as client:
            client.set("stale", "1")

    def effect(self) -> bool:
        with redis.Redis.from_url(self.server) as client:
            return bool(client.exists("stale") == 0)

    def close(self) -> None:
        self.proxy.close()


class PostgresDependency:
    name = "postgres"
    victim_name = "reliability-victim"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.proxy = Proxy(_port(dsn))
        self.proxy.start()
        self.victim: psycopg.Connection[Any] | None = None

    def target(self) -> dict[str, Any]:
        parts = urlsplit(self.dsn)
        via = parts._replace(netloc=parts.netloc.rsplit(":", 1)[0] + f":{self.proxy.port}")
        return {"name": "db", "type": "postgres", "dsn": urlunsplit(via)}

    def step(self) -> dict[str, Any]:
        return {
            "action": "postgres.terminate_backends",
            "application_name": self.victim_name,
            "timeout": "3s",
        }

    def down(self) -> None:
        self.proxy.stop()

    def up(self) -> None:
        self.proxy.start()

    def arm(self) -> None:
        self.victim = psycopg.connect(self.dsn, application_name=self.victim_name, autocommit=True)
        self.victim.execute("SELECT 1")

    def effect(self) -> bool:
        assert self.victim is not None
        try:
            self.victim.execute("SELECT 1")
        except psycopg.OperationalError:
            return True
        return False

    def close(self) -> None:
        if self.victim is not None:
            self.victim.close()
        self.proxy.close()


class DockerDependency:
    name = "docker"

    def __init__(self, source: docker.DockerClient, image: str) -> None:
        # Its own state dir: tests/test_engine_docker.py's engine ("docker2") may be started
        # and stopped by another run at the same time.
        self.engine = SecondDockerd("docker-reliability")
        self.engine.start()
        self.engine.load_image(source, image)
        self.client = self.engine.client()
        container = self.client.containers.create(
            image,
            ["sleep", "3600"],
            network_mode="none",
            init=True,
            labels={"remediator.test": "1"},
            name=f"far-{int(time.time() * 1000)}",
            restart_policy={"Name": "always"},
        )
        container.start()
        self.container_name = container.name
        self.container_id = container.id
        self.counter: StartCounter | None = None

    def target(self) -> dict[str, Any]:
        return {
            "name": "far",
            "type": "docker_container",
            "container": self.container_name,
            "docker_host": self.engine.url,
        }

    def step(self) -> dict[str, Any]:
        return {"action": "docker.restart", "stop_timeout": 1, "timeout": "20s"}

    def down(self) -> None:
        self.engine.stop()

    def up(self) -> None:
        self.engine.start()
        self.client.close()
        self.client = self.engine.client()

        def running() -> bool:
            found = self.client.containers.get(self.container_id)
            return bool(found.attrs["State"]["Running"])

        wait_for(running, timeout=30, what="the container to be running again")

    def arm(self) -> None:
        self.counter = StartCounter(self.client, self.container_id)

    def effect(self) -> bool:
        assert self.counter is not None
        return self.counter.count() == 1

    def close(self) -> None:
        if self.engine.proc is None or self.engine.proc.poll() is not None:
            self.engine.start()
        self.engine.remove_test_containers()
        self.client.close()
        self.engine.stop()


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


@pytest.fixture(params=["redis", "postgres", "docker"])
def dependency(request: pytest.FixtureRequest) -> Iterator[Dependency]:
    made: RedisDependency | PostgresDependency | DockerDependency
    if request.param == "redis":
        made = RedisDependency(request.getfixturevalue("redis_server_factory"))
    elif request.param == "postgres":
        made = PostgresDependency(request.getfixturevalue("pg_database"))
    else:
        made = DockerDependency(
            request.getfixturevalue("docker_client"), request.getfixturevalue("test_image")
        )
    try:
        yield made
    finally:
        made.close()


def config(dep: Dependency, sink: WebhookSink) -> dict[str, Any]:
    target = dep.target()
    return {
        "health": {"enabled": False},
        "worker": {"poll_interval": "200ms"},
        "targets": [target],
        "playbooks": [
            {
                "name": "fix",
                "match": ['alertname="DependencyTrouble"'],
                "target": target["name"],
                "steps": [dep.step()],
                "cooldown": "0s",
                "max_per_window": None,
                "retry": {"max_attempts": 2, "initial_delay": "100ms", "max_delay": "200ms"},
            }
        ],
        "circuit_breaker": {
            "failure_threshold": THRESHOLD,
            "reset_timeout": "2s",
            "half_open_requests": 1,
        },
        "notifications": {"webhooks": [{"name": "oncall", "url": sink.url}]},
        "escalation": {
            "levels": [
                {
                    "name": "oncall",
                    "when": ["remediation_failed", "circuit_open"],
                    "notify": ["webhook"],
                }
            ]
        },
    }


def test_dependency_down_opens_the_breaker_escalates_once_and_recovers(
    dependency: Dependency, serve: Serve, figures: Figures
) -> None:
    dep = dependency
    with webhook_sink() as sink:
        served = serve(config(dep, sink))
        dep.down()
        storm = [alert(f"{dep.name[:2]}{i:014x}", "DependencyTrouble") for i in range(INCIDENTS)]
        assert served.post(payload(storm)) == 200

        def incidents() -> Counter[str]:
            return Counter(b["incident"] for b in sink.phases("escalated"))

        wait_for(
            lambda: len(incidents()) == INCIDENTS, timeout=60, what="every incident to be escalated"
        )
        opened_before = time.monotonic()  # the breaker opened before the escalations went out
        time.sleep(1.5)  # the outbox polls every second: a second escalation would arrive now
        escalated = incidents()
        assert sorted(escalated.values()) == [1] * INCIDENTS
        attempts = [e for e in served.events("recovery:action")]
        assert [e["outcome"] for e in attempts] == ["failure"] * THRESHOLD
        assert len(served.events("circuit:open")) == 1
        rejected = [e for e in served.events("recovery:skipped") if e["outcome"] == "circuit_open"]
        assert len(rejected) == INCIDENTS - 1  # one retry stopped, six incidents not tried
        escalation_events = Counter(e["fingerprint"] for e in served.events("recovery:escalated"))

        dep.up()
        dep.arm()
        time.sleep(max(0.0, 2.1 - (time.monotonic() - opened_before)))
        assert served.post(payload([alert(f"{dep.name[:2]}{99:014x}", "DependencyTrouble")])) == 200
        wait_for(
            lambda: len(served.events("circuit:closed")) == 1,
            timeout=60,
            what="the breaker to close",
        )
        assert len(served.events("circuit:half-open")) == 1
        outcomes = [e["outcome"] for e in reversed(served.events("recovery:action"))]
        assert outcomes == ["failure"] * THRESHOLD + ["success"]
        wait_for(dep.effect, timeout=10, what="the trial's real effect")
        assert (
            served.metric("remediator_circuit_breaker_state", f'target="{dep.target()["name"]}"')
            == 0
        )
    figures(
        incidents=INCIDENTS,
        actions_while_down=THRESHOLD,
        escalation_notifications_per_incident=sorted(set(escalated.values())),
        escalation_events=sum(escalation_events.values()),
    )
