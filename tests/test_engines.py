"""Targets on several Docker engines: one client, breaker and health per engine's targets;
an engine that is down affects only its own targets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker
import httpx2 as httpx

from tests.dockerd import SecondDockerd, run_sleepers
from tests.realservices import ContainerFactory
from tests.serving import Served
from tests.test_engine_docker import StartCounter, alert, config, events, payload, post
from tests.waiting import wait_for


def test_an_engine_that_is_down_affects_only_its_own_targets(
    tmp_path: Path,
    tokens: dict[str, str],
    far_engine: SecondDockerd,
    container_factory: ContainerFactory,
    docker_client: docker.DockerClient,
    test_image: str,
) -> None:
    near = [container_factory(("sleep", "3600"), init=True) for _ in range(2)]
    far = run_sleepers(far_engine, test_image, 2)
    targets: list[dict[str, Any]] = [
        {"name": f"near-{i}", "type": "docker_container", "container": c.name}
        for i, c in enumerate(near)
    ] + [
        {
            "name": f"far-{i}",
            "type": "docker_container",
            "container": c.name,
            "docker_host": far_engine.url,
        }
        for i, c in enumerate(far)
    ]
    cfg = config(targets, max_per_window=None)
    cfg["circuit_breaker"] = {"failure_threshold": 2, "reset_timeout": "1h"}
    cfg["safety"] = {"blast_radius": 1.0}
    cfg["health"] = {"enabled": True, "service_interval": "1s"}
    counters = [StartCounter(docker_client, c.id) for c in near]
    served = Served(tmp_path, cfg, tokens)
    served.start()
    try:
        far_engine.stop()
        for round_ in range(2):
            post(served, payload(*[alert(f"r{round_}{t['name']}", t["name"]) for t in targets]))
            expected = 4 * (round_ + 1)

            def acted(count: int = expected) -> bool:
                return len(events(served, "recovery:action")) >= count

            wait_for(acted, timeout=60, what=f"round {round_}")
        opened = sorted(e["target"] for e in events(served, "circuit:open"))
        assert opened == ["far-0", "far-1"]
        assert [c.count() for c in counters] == [2, 2]  # the near engine kept working
        metrics = httpx.get(served.url + "/metrics").text
        for i in range(2):
            assert f'remediator_circuit_breaker_state{{target="near-{i}"}} 0.0' in metrics
            assert f'remediator_circuit_breaker_state{{target="far-{i}"}} 2.0' in metrics
        wait_for(
            lambda: (
                'remediator_target_up{target="far-0"} 0.0'
                in httpx.get(served.url + "/metrics").text
            ),
            timeout=15,
            what="far down",
        )
        metrics = httpx.get(served.url + "/metrics").text
        assert 'remediator_target_up{target="near-0"} 1.0' in metrics
    finally:
        served.stop()
