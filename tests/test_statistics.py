"""Statistics from recorded events: MTTR equals what the alerts said, success rates, availability."""

from __future__ import annotations

import asyncio
from pathlib import Path

from remediator.audit.events import Event
from remediator.engine import statistics
from tests.engine_harness import EngineHarness, Recorder, alert

WEB = {"name": "web", "type": "docker_container"}
BOOK = {
    "name": "restart",
    "match": ['alertname="ContainerMemoryHigh"'],
    "target": "{{ labels.container }}",
    "steps": [{"action": "docker.restart"}],
    "cooldown": "0s",
    "max_per_window": None,
    "retry": {"max_attempts": 1},
}


def test_mttr_equals_startsat_to_resolved_and_success_rate_counts(tmp_path: Path) -> None:
    recorder = Recorder()
    recorder.outcomes = [True, True, False, True]
    durations = [30.0, 90.0, 45.0, 600.0]

    async def main() -> None:
        h = await EngineHarness.create(
            tmp_path, {"targets": [WEB], "playbooks": [BOOK]}, recorder=recorder
        )
        for i, took in enumerate(durations):
            start = h.clock.now()
            await h.send(alert(f"m{i}", container="web", starts=start))
            await h.drain()
            h.clock.advance(took + 5)
            await h.send(
                alert(f"m{i}", container="web", status="resolved", starts=start, ends=start + took)
            )
            await h.drain()
        stats = await statistics.compute(
            h.rt.store, now=h.clock.now() + 1, window=86400, targets=["web"]
        )
        mttr = stats["mttr"]
        assert mttr["count"] == 4
        assert mttr["mean"] == sum(durations) / 4
        assert mttr["p50"] == 45.0 and mttr["p90"] == 600.0
        assert mttr["by_playbook"]["restart"]["mean"] == sum(durations) / 4
        assert stats["success_rate"]["overall"] == 0.75
        assert stats["success_rate"]["by_action"]["docker.restart"] == 0.75
        assert stats["escalations"] == {"remediation_failed": 1}
        assert stats["actions_by_type"] == {"docker.restart": 4}
        assert stats["availability"] == {"web": 1.0}
        await h.close()

    asyncio.run(main())


def test_availability_from_health_transitions() -> None:
    def ev(kind: str, t: float) -> Event:
        return Event(type=kind, time=t, target="db", actor="health")

    health = [
        ev("service:degraded", 100.0),
        ev("service:recovered", 130.0),
        ev("service:degraded", 190.0),
    ]
    ratios = statistics.availability(health, ["db", "web"], start=0.0, end=200.0)
    assert ratios["db"] == 1 - (30 + 10) / 200
    assert ratios["web"] == 1.0
    # Down when the window began.
    assert statistics.availability(
        [ev("service:recovered", 50.0)], ["db"], start=0.0, end=100.0
    ) == {"db": 0.5}
