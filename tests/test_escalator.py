"""No recovery within T after the action: escalated once per remediation, not when resolved."""

from __future__ import annotations

import asyncio
from pathlib import Path

from remediator.engine.escalator import Escalator
from tests.engine_harness import EngineHarness, alert

SECTIONS = {
    "targets": [{"name": "web", "type": "docker_container"}],
    "playbooks": [
        {"name": "restart", "match": ['alertname="ContainerMemoryHigh"'], "target": "{{ labels.container }}",
         "steps": [{"action": "docker.restart"}], "cooldown": "0s", "max_per_window": None}
    ],
    "escalation": {"levels": [{"name": "stuck", "when": ["no_recovery"], "no_recovery_within": "10m", "notify": ["slack"]}]},
}  # fmt: skip


def test_a_remediation_whose_alert_keeps_firing_escalates_once(tmp_path: Path) -> None:
    async def main() -> None:
        h = await EngineHarness.create(tmp_path, SECTIONS)
        escalator = Escalator(
            config=h.rt.config, store=h.rt.store, clock=h.clock, metrics=h.rt.metrics
        )
        await h.send(alert("still", container="web"), alert("fixed", container="web"))
        await h.drain()
        start = h.clock.now()
        await h.send(alert("fixed", container="web", status="resolved", ends=start + 5))
        await h.drain()
        h.clock.advance(300)
        assert await escalator.run_once() == 0  # not yet: 5 of 10 minutes
        h.clock.advance(301)
        assert await escalator.run_once() == 1
        assert await escalator.run_once() == 0  # once per remediation
        [event] = await h.events("recovery:escalated")
        assert (event.outcome, event.fingerprint, event.target) == ("no_recovery", "still", "web")
        await h.close()

    asyncio.run(main())


def test_without_a_no_recovery_level_nothing_is_checked(tmp_path: Path) -> None:
    async def main() -> None:
        sections = {**SECTIONS, "escalation": {"levels": []}}
        h = await EngineHarness.create(tmp_path, sections)
        escalator = Escalator(
            config=h.rt.config, store=h.rt.store, clock=h.clock, metrics=h.rt.metrics
        )
        assert escalator.window() is None and await escalator.run_once() == 0
        await h.close()

    asyncio.run(main())
