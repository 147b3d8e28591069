"""The Slack notifier against the local Slack stand-in (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from remediator.clock import FakeClock
from remediator.config.model import SlackConfig
from remediator.errors import ConfigError
from remediator.notifiers.base import Delivery, Notification, Thread
from remediator.notifiers.slack import SlackNotifier, route
from tests.serving import free_port
from tests.slackapi import SlackAPI

T = TypeVar("T")
FIELDS = {
    "alert": "HighMemoryUsage",
    "target": "api-1",
    "action": "docker.restart",
    "outcome": "pending",
    "duration": "3.2s",
}
LINKS = {
    "generator": "http://127.0.0.1:9090/graph?g0.expr=up&g0.tab=1",
    "runbook": "https://runbooks.example/memory",
}


@pytest.fixture
def slack_api() -> Iterator[SlackAPI]:
    with SlackAPI() as api:
        yield api


def note(phase: Any = "firing", *, destination: str = "#alerts", **kw: Any) -> Notification:
    values: dict[str, Any] = {
        "id": 1,
        "channel": "slack",
        "destination": destination,
        "incident": "fp1:1",
        "phase": phase,
        "title": "HighMemoryUsage on api-1",
        "fields": dict(FIELDS),
        "severity": "critical",
        "links": dict(LINKS),
    }
    values.update(kw)
    return Notification(**values)


def bot(api: SlackAPI, clock: FakeClock | None = None, **cfg: Any) -> SlackNotifier:
    config = SlackConfig(token_env="SLACK_TOKEN", api_url=api.url, **cfg)
    return SlackNotifier(config, clock=clock or FakeClock(), env={"SLACK_TOKEN": api.token})


def run(notifier: SlackNotifier, body: Callable[[SlackNotifier], Awaitable[T]]) -> T:
    async def main() -> T:
        try:
            return await body(notifier)
        finally:
            await notifier.aclose()

    return asyncio.run(main())


def flat(blocks: list[dict[str, Any]]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


def test_first_message_has_fields_links_and_fallback(slack_api: SlackAPI) -> None:
    got = run(bot(slack_api), lambda n: n.send(note()))
    assert got.ok, got
    [msg] = slack_api.messages
    assert got.thread == Thread(channel=msg.channel, ts=msg.ts)
    assert msg.method == "chat.postMessage"
    assert msg.channel == slack_api.channel_id("#alerts") and msg.thread_ts is None
    assert msg.text.startswith("🔥 [FIRING] HighMemoryUsage on api-1")
    [head, fields, context] = msg.blocks
    assert "🔥" in head["text"]["text"] and "HighMemoryUsage on api-1" in head["text"]["text"]
    labels = [f["text"].split("\n")[0] for f in fields["fields"]]
    assert labels == ["*Alert*", "*Target*", "*Action*", "*Outcome*", "*Duration*", "*Severity*"]
    assert fields["fields"][0]["text"] == "*Alert*\nHighMemoryUsage"
    assert fields["fields"][5]["text"] == "*Severity*\ncritical"
    links = context["elements"][0]["text"]
    assert "<http://127.0.0.1:9090/graph?g0.expr=up&amp;g0.tab=1|Source>" in links
    assert "<https://runbooks.example/memory|Runbook>" in links


def test_only_present_fields_and_links(slack_api: SlackAPI) -> None:
    bare = note(fields={"alert": "DiskFull"}, links={}, severity="warning")
    assert run(bot(slack_api), lambda n: n.send(bare)).ok
    [msg] = slack_api.messages
    assert [b["type"] for b in msg.blocks] == ["section", "section"]
    assert [f["text"] for f in msg.blocks[1]["fields"]] == [
        "*Alert*\nDiskFull",
        "*Severity*\nwarning",
    ]


def test_update_changes_the_same_message_and_detail_is_a_thread_reply(slack_api: SlackAPI) -> None:
    async def body(n: SlackNotifier) -> tuple[Delivery, Delivery, Delivery]:
        first = await n.send(note())
        assert first.thread is not None
        fixing = note("remediating", fields={**FIELDS, "outcome": "running"})
        second = await n.send(fixing, thread=first.thread)
        done = note(
            "recovered", fields={**FIELDS, "outcome": "success"}, detail="restarted in 3.2s"
        )
        return first, second, await n.send(done, thread=first.thread)

    first, second, third = run(bot(slack_api), body)
    assert first.ok and second.ok and third.ok
    assert first.thread is not None and second.thread == third.thread == first.thread
    post, upd1, upd2, reply = slack_api.messages
    assert [m.method for m in (post, upd1, upd2, reply)] == [
        "chat.postMessage",
        "chat.update",
        "chat.update",
        "chat.postMessage",
    ]
    assert post.ts == upd1.ts == upd2.ts == first.thread.ts
    assert "🔧" in upd1.blocks[0]["text"]["text"] and "running" in flat(upd1.blocks)
    assert "✅" in upd2.blocks[0]["text"]["text"] and "success" in flat(upd2.blocks)
    assert reply.thread_ts == post.ts and reply.ts != post.ts
    assert reply.text == "restarted in 3.2s"


def test_update_of_a_vanished_message_posts_a_new_one(slack_api: SlackAPI) -> None:
    gone = Thread(channel=slack_api.channel_id("#alerts"), ts="1700000000.000001")
    got = run(bot(slack_api), lambda n: n.send(note("failed"), thread=gone))
    assert got.ok and got.thread is not None and got.thread != gone
    [msg] = slack_api.messages
    assert msg.method == "chat.postMessage" and msg.ts == got.thread.ts
    assert ("chat.update", 200) in slack_api.requests


def test_a_429_is_waited_out_once(slack_api: SlackAPI) -> None:
    slack_api.fail_next(1, status=429, retry_after=1)
    start = time.monotonic()
    got = run(bot(slack_api), lambda n: n.send(note()))
    elapsed = time.monotonic() - start
    assert got.ok, got
    assert len(slack_api.messages) == 1
    assert slack_api.requests == [("chat.postMessage", 429), ("chat.postMessage", 200)]
    assert elapsed >= 0.95


def test_persistent_429_returns_retry_after(slack_api: SlackAPI) -> None:
    slack_api.fail_next(2, status=429, retry_after=1)
    got = run(bot(slack_api), lambda n: n.send(note()))
    assert not got.ok and not got.permanent
    assert got.retry_after == 1.0
    assert slack_api.messages == []


def test_a_long_retry_after_goes_back_to_the_outbox(slack_api: SlackAPI) -> None:
    slack_api.fail_next(1, status=429, retry_after=30)
    start = time.monotonic()
    got = run(bot(slack_api), lambda n: n.send(note()))
    assert time.monotonic() - start < 5
    assert not got.ok and got.retry_after == 30.0
    assert slack_api.requests == [("chat.postMessage", 429)]


@pytest.mark.parametrize("error", ["channel_not_found", "not_in_channel", "is_archived"])
def test_channel_errors_are_permanent(slack_api: SlackAPI, error: str) -> None:
    slack_api.error_next(1, error=error)
    got = run(bot(slack_api), lambda n: n.send(note()))
    assert not got.ok and got.permanent and got.retry_after is None
    assert error in got.detail


def test_unknown_channel_is_permanent(slack_api: SlackAPI) -> None:
    got = run(bot(slack_api), lambda n: n.send(note(destination="general")))
    assert not got.ok and got.permanent and "channel_not_found" in got.detail


def test_ratelimited_error_body_sets_retry_after(slack_api: SlackAPI) -> None:
    slack_api.error_next(1, error="ratelimited")
    got = run(bot(slack_api), lambda n: n.send(note()))
    assert not got.ok and not got.permanent and got.retry_after is not None


def test_other_api_errors_are_retryable(slack_api: SlackAPI) -> None:
    slack_api.error_next(1, error="internal_error")
    got = run(bot(slack_api), lambda n: n.send(note()))
    assert not got.ok and not got.permanent and got.retry_after is None


def test_server_down_is_retryable_then_recovers(slack_api: SlackAPI) -> None:
    slack_api.down()

    async def body(n: SlackNotifier) -> tuple[Delivery, Delivery]:
        failed = await n.send(note())
        slack_api.up()
        return failed, await n.send(note())

    failed, later = run(bot(slack_api), body)
    assert not failed.ok and not failed.permanent and "503" in failed.detail
    assert later.ok and len(slack_api.messages) == 1


def test_connection_refused_is_retryable() -> None:
    dead = f"http://127.0.0.1:{free_port()}/api/"
    config = SlackConfig(token_env="T", api_url=dead)
    notifier = SlackNotifier(config, clock=FakeClock(), env={"T": "xoxb-secret-token-123"})
    got = run(notifier, lambda n: n.send(note()))
    assert not got.ok and not got.permanent
    assert "connection failed" in got.detail and "xoxb" not in got.detail


def test_wrong_token_is_permanent_and_never_in_details(slack_api: SlackAPI) -> None:
    secret = "xoxb-wrong-0123456789abcdef"
    config = SlackConfig(token_env="SLACK_TOKEN", api_url=slack_api.url)
    notifier = SlackNotifier(config, clock=FakeClock(), env={"SLACK_TOKEN": secret})
    got = run(notifier, lambda n: n.send(note()))
    assert not got.ok and got.permanent and "invalid_auth" in got.detail
    slack_api.down()
    results = [got, run(bot(slack_api), lambda n: n.send(note()))]
    for delivery in results:
        assert secret not in delivery.detail and slack_api.token not in delivery.detail


def test_token_from_file(slack_api: SlackAPI, tmp_path: Path) -> None:
    path = tmp_path / "slack-token"
    path.write_text(slack_api.token + "\n")
    path.chmod(0o600)  # a secret file others may read is refused
    config = SlackConfig(token_file=str(path), api_url=slack_api.url)
    assert run(SlackNotifier(config, clock=FakeClock()), lambda n: n.send(note())).ok


def test_missing_token_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SLACK_TOKEN is not set"):
        SlackNotifier(SlackConfig(token_env="SLACK_TOKEN"), clock=FakeClock(), env={})
    with pytest.raises(ConfigError, match="token_file: cannot read"):
        SlackNotifier(SlackConfig(token_file=str(tmp_path / "nope")), clock=FakeClock())
    with pytest.raises(ConfigError, match="webhook_url"):
        SlackNotifier(SlackConfig(), clock=FakeClock(), env={})


def test_pacing_one_message_per_second_per_channel(slack_api: SlackAPI) -> None:
    clock = FakeClock()

    async def body(n: SlackNotifier) -> list[float]:
        marks = []
        for dest in ("#alerts", "#ops", "#alerts", slack_api.channel_id("#alerts")):
            assert (await n.send(note(destination=dest))).ok
            marks.append(clock.monotonic())
        return marks

    marks = run(bot(slack_api, clock), body)
    # #ops is another channel: no wait; #alerts again: 1 s after its first; and its id is the
    # same channel as "#alerts": another second.
    assert marks == [0.0, 0.0, 1.0, 2.0]
    assert len(slack_api.messages) == 4


def test_update_and_reply_are_paced(slack_api: SlackAPI) -> None:
    clock = FakeClock()

    async def body(n: SlackNotifier) -> None:
        first = await n.send(note())
        await n.send(note("recovered", detail="done"), thread=first.thread)

    run(bot(slack_api, clock), body)
    assert clock.monotonic() == 2.0  # post, then update at +1 s, then the reply at +2 s


def test_webhook_mode_posts_each_phase(slack_api: SlackAPI) -> None:
    config = SlackConfig(webhook_url=slack_api.webhook_url)
    notifier = SlackNotifier(config, clock=FakeClock(), env={})

    async def body(n: SlackNotifier) -> list[Delivery]:
        first = await n.send(note())
        return [
            first,
            await n.send(note("recovered", detail="back <b>up</b>"), thread=first.thread),
        ]

    first, second = run(notifier, body)
    assert first.ok and second.ok and first.thread is None
    one, two = slack_api.messages
    assert one.method == two.method == "webhook" and one.ts != two.ts
    assert "🔥" in one.text and "✅" in two.text
    assert "back &lt;b&gt;up&lt;/b&gt;" in flat(two.blocks)


def test_webhook_errors(slack_api: SlackAPI) -> None:
    notifier = SlackNotifier(SlackConfig(webhook_url=slack_api.webhook_url), clock=FakeClock())

    async def body(n: SlackNotifier) -> list[Delivery]:
        slack_api.error_next(1, error="channel_not_found")
        gone = await n.send(note())
        slack_api.fail_next(2, status=429, retry_after=1)
        limited = await n.send(note())
        slack_api.down()
        return [gone, limited, await n.send(note())]

    gone, limited, down = run(notifier, body)
    assert not gone.ok and gone.permanent and "channel_not_found" in gone.detail
    assert not limited.ok and limited.retry_after == 1.0
    assert not down.ok and not down.permanent
    for d in (gone, limited, down):
        assert slack_api.webhook_url not in d.detail and "B0000TEST" not in d.detail


def test_alert_text_is_escaped(slack_api: SlackAPI) -> None:
    evil = note(
        title="<!channel> disk full & <https://evil.example|click>",
        fields={"alert": "<!here>", "target": "a>b"},
        links={"runbook": "javascript:alert(1)", "generator": "https://x.example/a|b>c"},
    )
    assert run(bot(slack_api), lambda n: n.send(evil)).ok
    [msg] = slack_api.messages
    everything = msg.text + flat(msg.blocks)
    for raw in ("<!channel>", "<!here>", "<https://evil", "a>b", "javascript:"):
        assert raw not in everything
    assert "&lt;!channel&gt; disk full &amp; &lt;https://evil.example|click&gt;" in msg.text
    assert msg.blocks[1]["fields"][0]["text"] == "*Alert*\n&lt;!here&gt;"
    assert "<https://x.example/a%7Cb&gt;c|Source>" in flat(msg.blocks)


def test_long_and_many_fields_stay_within_slack_limits(slack_api: SlackAPI) -> None:
    many = {f"extra_{i}": "x" * 5000 for i in range(15)}
    big = note(title="&" * 5000, fields={**FIELDS, **many}, detail="<" * 10_000)

    async def body(n: SlackNotifier) -> Delivery:
        first = await n.send(big)
        return await n.send(big, thread=first.thread)

    assert run(bot(slack_api), body).ok  # the stand-in refuses blocks over Slack's limits
    post = slack_api.messages[0]
    assert len(post.blocks[1]["fields"]) == 10
    assert all(len(f["text"]) <= 2000 for f in post.blocks[1]["fields"])
    assert post.blocks[0]["text"]["text"].endswith("&amp;…")  # cut between entities


def test_route() -> None:
    config = SlackConfig(
        channel="#alerts",
        channels_by_severity={"critical": "#pager"},
        channels_by_category={"database": "#dba", "memory": "#infra"},
    )
    assert route(config, severity="critical", category="database") == "#pager"
    assert route(config, severity="warning", category="database") == "#dba"
    assert route(config, severity="warning", category="memory") == "#infra"
    assert route(config, severity="info", category="network") == "#alerts"
