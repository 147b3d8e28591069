"""Escalation levels each wait their own ``no_recovery_within`` (1m, 5m, 30m), on the injected
clock, through the outbox to a real SMTP server: each level notifies once per incident at its
own time, and an alert that resolves before a level's time stops that level."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from remediator.engine.escalator import Escalator
from tests.engine_harness import EngineHarness, alert, restart_playbook
from tests.smtpserver import SMTPServer
from tests.test_outbox import deliver, smtp

__all__ = ["smtp"]  # the fixture

LEVELS = [
    {"name": "oncall", "when": ["no_recovery"], "no_recovery_within": "1m", "notify": ["email"]},
    {"name": "team", "when": ["no_recovery"], "no_recovery_within": "5m", "notify": ["email"]},
    {"name": "manager", "when": ["no_recovery"], "no_recovery_within": "30m", "notify": ["email"]},
]  # fmt: skip
Runs = tuple[EngineHarness, Escalator]
STEP = 10.0  # seconds between escalator rounds (production: 15s)


def _sections(server: SMTPServer) -> dict[str, Any]:
    return {
        "targets": [
            {"name": "web", "type": "docker_container"},
            {"name": "api", "type": "docker_container"},
        ],
        "playbooks": [restart_playbook(max_per_window=None)],
        "notifications": {
            "email": server.email_config(to=["oncall@example.test"]).model_dump(mode="json")
        },
        "escalation": {"levels": LEVELS},
    }


@asynccontextmanager
async def _escalating(tmp_path: Path, server: SMTPServer) -> AsyncIterator[Runs]:
    """A harness with the three levels and an escalator on its clock; one alert on web firing
    and remediated, its notifications delivered."""
    h = await EngineHarness.create(tmp_path, _sections(server))
    escalator = Escalator(config=h.rt.config, store=h.rt.store, clock=h.clock, metrics=h.rt.metrics)
    try:
        await h.send(alert("still", container="web"))
        await h.drain()
        await deliver(h)
        yield h, escalator
    finally:
        await h.rt.outbox.stop()
        await h.close()


def _body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def _escalations(server: SMTPServer, seen: int) -> list[tuple[str, str]]:
    """(target, level) of every escalation email after the first ``seen`` messages."""
    found = []
    for received in server.messages[seen:]:
        if not received.message["Subject"].startswith("[ESCALATED]"):
            continue
        text = _body(received.message)
        target = "web" if "on web;" in text else "api"
        _, named, rest = text.partition("(escalation level ")
        level = rest.split(")", 1)[0] if named else "(no level named)"
        found.append((target, level))
    return found


def test_each_level_waits_its_own_time_and_notifies_once_per_incident(
    tmp_path: Path, smtp: SMTPServer
) -> None:
    async def main() -> None:
        async with _escalating(tmp_path, smtp) as (h, escalator):
            await h.send(alert("fixed", container="api"))
            await h.drain()
            await deliver(h)
            finished = h.clock.now()  # the fake actions take no time
            first: dict[tuple[str, str], float] = {}
            counts: dict[tuple[str, str], int] = {}
            resolved = False
            while h.clock.now() - finished < 40 * 60:
                h.clock.advance(STEP)
                elapsed = h.clock.now() - finished
                if not resolved and elapsed >= 180:  # api recovers between 1m and 5m
                    ends = h.clock.now()
                    await h.send(alert("fixed", container="api", status="resolved", ends=ends))
                    await h.drain()
                    resolved = True
                seen = len(smtp.messages)
                await escalator.run_once()
                await h.rt.bus.drain()
                await deliver(h)
                for key in _escalations(smtp, seen):
                    first.setdefault(key, elapsed)
                    counts[key] = counts.get(key, 0) + 1
            assert first == {
                ("web", "oncall"): 60.0,
                ("web", "team"): 300.0,
                ("web", "manager"): 1800.0,
                ("api", "oncall"): 60.0,  # before it recovered; team and manager never
            }
            assert set(counts.values()) == {1}, counts
            events = await h.events("recovery:escalated")
            assert sorted((e.target, e.details["level"]) for e in events) == sorted(first)
            assert {e.outcome for e in events} == {"no_recovery"}

    asyncio.run(main())


def test_a_level_is_not_notified_early_by_another_levels_escalation(
    tmp_path: Path, smtp: SMTPServer
) -> None:
    """At 1m only the 1m level notifies: the 5m and 30m levels stay quiet until their time."""

    async def main() -> None:
        async with _escalating(tmp_path, smtp) as (h, escalator):
            h.clock.advance(61)
            assert await escalator.run_once() == 1
            await h.rt.bus.drain()
            await deliver(h)
            assert _escalations(smtp, 0) == [("web", "oncall")]
            assert await escalator.run_once() == 0  # once per remediation and level

    asyncio.run(main())


def test_a_level_for_target_refused_hears_of_unregistered_and_disallowed_targets(
    tmp_path: Path, smtp: SMTPServer
) -> None:
    """``when: [target_refused]`` covers both refusals of a templated target: a target that is
    not registered and one outside the playbook's allow-list (warning alerts, so ``critical``
    plays no part)."""

    async def main() -> None:
        sections = _sections(smtp)
        sections["targets"][0]["labels"] = {"role": "web"}
        sections["playbooks"] = [restart_playbook(targets={"labels": {"role": "web"}})]
        sections["escalation"] = {
            "levels": [{"name": "owners", "when": ["target_refused"], "notify": ["email"]}]
        }
        h = await EngineHarness.create(tmp_path, sections)
        try:
            await h.send(alert("ghost", container="nowhere"))  # not registered
            await h.send(alert("forged", container="api"))  # registered, not allowed
            await h.drain()
            await deliver(h)
            subjects = sorted(m.message["Subject"] for m in smtp.messages)
            escalated = [s for s in subjects if s.startswith("[ESCALATED]")]
            assert len(escalated) == 2, subjects
            events = await h.events("recovery:escalated")
            assert sorted(e.outcome for e in events) == [
                "target_not_allowed",
                "target_not_registered",
            ]
        finally:
            await h.rt.outbox.stop()
            await h.close()

    asyncio.run(main())
