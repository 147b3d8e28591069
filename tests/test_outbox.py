"""Notifications end to end inside one process: engine → events → outbox → real Slack Web API
stand-in and a real SMTP server (aiosmtpd), with an injected clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engine_harness import EngineHarness, Recorder, alert
from tests.slackapi import SlackAPI
from tests.smtpserver import NO_SUCH_USER, SMTPServer

SLACK_TOKEN_ENV = "REMEDIATOR_TEST_SLACK_TOKEN"
WEB = {"name": "web", "type": "docker_container"}


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlackAPI]:
    with SlackAPI() as api:
        monkeypatch.setenv(SLACK_TOKEN_ENV, api.token)
        yield api


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    with SMTPServer() as server:
        yield server


def sections(slack: SlackAPI, smtp: SMTPServer, **extra: Any) -> dict[str, Any]:
    book = {
        "name": "restart",
        "match": ['alertname="ContainerMemoryHigh"'],
        "target": "{{ labels.container }}",
        "steps": [{"action": "docker.restart"}],
        "cooldown": "0s",
        "retry": {"max_attempts": 1},
        "max_per_window": None,
    }
    book.update(extra.pop("playbook", {}))
    data: dict[str, Any] = {
        "targets": [WEB],
        "playbooks": [book],
        "notifications": {
            "slack": {
                "api_url": slack.url,
                "token_env": SLACK_TOKEN_ENV,
                "channel": "#ops",
                "pace": "0s",
            },
            "email": smtp.email_config(to=["oncall@example.test"]).model_dump(mode="json"),
        },
    }
    data.update(extra)
    return data


async def deliver(h: EngineHarness, rounds: int = 50) -> None:
    """Run the outbox until nothing is due (advancing the fake clock over retry waits)."""
    for _ in range(rounds):
        handled = await h.rt.outbox.run_once()
        if handled == 0:
            if await h.rt.store.outbox_pending() == 0:
                return
            h.clock.advance(5)
    raise AssertionError("outbox did not drain")


def run(
    tmp_path: Path,
    data: dict[str, Any],
    body: Callable[[EngineHarness], Awaitable[None]],
    recorder: Recorder | None = None,
) -> None:
    async def main() -> None:
        h = await EngineHarness.create(tmp_path, data, recorder=recorder)
        try:
            await body(h)
        finally:
            await h.rt.outbox.stop()
            await h.close()

    asyncio.run(main())


def top_level(slack: SlackAPI) -> list[Any]:
    return [m for m in slack.messages if m.method == "chat.postMessage" and not m.thread_ts]


def test_a_remediation_is_one_slack_message_updated_with_the_outcome_and_one_email(
    tmp_path: Path, slack: SlackAPI, smtp: SMTPServer
) -> None:
    async def body(h: EngineHarness) -> None:
        await h.send(alert("a1", container="web"))
        await h.drain()
        await deliver(h)
        [first] = top_level(slack)
        updates = [m for m in slack.messages if m.method == "chat.update"]
        assert updates and all(m.ts == first.ts for m in updates)
        assert "RECOVERED" in updates[-1].text.upper()
        replies = [m for m in slack.messages if m.thread_ts == first.ts]
        assert any(
            "docker.restart" in (m.text or "") or "fake ok" in (m.text or "") for m in replies
        )
        [mail] = smtp.messages
        assert "[RECOVERED]" in mail.message["Subject"]
        assert mail.message["Message-ID"]
        sent = await h.events("notification:sent")
        assert {e.action for e in sent} == {"slack", "email"}
        metrics = h.rt.metrics.registry.get_sample_value
        assert (
            metrics("remediator_notifications_total", {"channel": "email", "outcome": "sent"}) == 1
        )

    run(tmp_path, sections(slack, smtp), body)


def test_a_slack_429_is_waited_out_and_delivered_once(
    tmp_path: Path, slack: SlackAPI, smtp: SMTPServer
) -> None:
    async def body(h: EngineHarness) -> None:
        slack.fail_next(1, status=429, retry_after=1)
        await h.send(alert("a1", container="web"))
        await h.drain()
        await deliver(h)
        assert len(top_level(slack)) == 1
        assert ("chat.postMessage", 429) in slack.requests

    run(tmp_path, sections(slack, smtp), body)


def test_an_smtp_550_is_dead_lettered_and_escalated_through_slack(
    tmp_path: Path, slack: SlackAPI, smtp: SMTPServer
) -> None:
    smtp.refuse("oncall@example.test", reply=NO_SUCH_USER)

    async def body(h: EngineHarness) -> None:
        await h.send(alert("a1", container="web"))
        await h.drain()
        await deliver(h)
        assert smtp.messages == []
        [dead] = await h.events("notification:dead")
        assert dead.action == "email" and "550" in dead.message
        [escalated] = await h.events("recovery:escalated")
        assert escalated.outcome == "notification_dead"
        texts = " ".join(m.text or "" for m in slack.messages).upper()
        assert "ESCALATED" in texts
        states = await h.rt.store.outbox_states()
        assert states.get("dead") == 1 and states.get("pending", 0) == 0

    run(tmp_path, sections(slack, smtp), body)


def test_escalation_levels_fire_once_each_per_incident(
    tmp_path: Path, slack: SlackAPI, smtp: SMTPServer
) -> None:
    recorder = Recorder()
    recorder.outcomes = [False] * 10
    data = sections(
        slack,
        smtp,
        playbook={"retry": {"max_attempts": 3, "initial_delay": "1s"}},
        circuit_breaker={"failure_threshold": 1, "reset_timeout": "1h"},
        escalation={
            "levels": [
                {
                    "name": "team",
                    "when": ["remediation_failed", "circuit_open"],
                    "notify": ["slack"],
                },
                {"name": "manager", "when": ["circuit_open"], "notify": ["email"]},
            ]
        },
    )

    async def body(h: EngineHarness) -> None:
        await h.send(alert("a1", container="web"))
        await h.drain()
        await deliver(h)
        reasons = sorted(e.outcome for e in await h.events("recovery:escalated"))
        assert reasons == ["circuit_open", "remediation_failed"]
        escalations = [
            m
            for m in slack.messages
            if "ESCALATED" in (m.text or "").upper() and m.method == "chat.update"
        ]
        assert len(escalations) == 1  # level "team": once, although two reasons matched
        manager = [m for m in smtp.messages if "[ESCALATED]" in m.message["Subject"]]
        assert len(manager) == 1
        # The same alert again (Alertmanager's repeat): no new escalation messages.
        await h.send(alert("a1", container="web"))
        await h.drain()
        await deliver(h)
        assert len([m for m in smtp.messages if "[ESCALATED]" in m.message["Subject"]]) == 1

    run(tmp_path, data, body, recorder)


def test_an_outage_of_both_providers_loses_nothing_and_sends_once(
    tmp_path: Path, slack: SlackAPI, smtp: SMTPServer
) -> None:
    async def body(h: EngineHarness) -> None:
        slack.down()
        smtp.down()
        for i in range(5):
            await h.send(alert(f"f{i}", container="web"))
            await h.drain()
        for _ in range(3):
            await h.rt.outbox.run_once()
            h.clock.advance(10)
        assert slack.messages == [] and smtp.messages == []
        assert await h.rt.store.outbox_pending() > 0
        slack.up()
        smtp.up()
        await deliver(h)
        assert len(top_level(slack)) == 5
        assert len(smtp.messages) == 5
        assert len({m.message["Message-ID"] for m in smtp.messages}) == 5
        retries = h.rt.metrics.registry.get_sample_value(
            "remediator_notifications_total", {"channel": "slack", "outcome": "retry"}
        )
        assert retries is not None and retries > 0

    run(tmp_path, sections(slack, smtp), body)
