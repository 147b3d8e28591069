"""The spans of one remediation (docs/tracing.md), seen by the SDK's in-memory exporter: the
webhook's ``traceparent`` kept on the inbox row and continued by the decision, the tree of
intake, decision, guards, attempt, steps, verification and notification spans, one trace per
notification, and the episode on the JSON log lines of a step."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from starlette.testclient import TestClient

from remediator import tracing
from remediator.actions.base import Action, ActionContext, ActionResult
from remediator.config import model as config_mod
from remediator.config.auth import Authenticator
from remediator.http.app import create_app
from remediator.logs import JsonFormatter
from remediator.runtime import Runtime
from tests.conftest import ALERTS
from tests.engine_harness import EngineHarness, alert, restart_playbook
from tests.hookserver import Hook, serving
from tests.realservices import ContainerFactory
from tests.test_tracing import traced

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN}-01"


def use(rt: Runtime, tr: tracing.Tracing) -> None:
    """Every component of the runtime starts its spans on ``tr`` (as app.py wires them)."""
    rt.worker.tracing = rt.engine.tracing = rt.engine.runner.tracing = rt.outbox.tracing = tr


def hex_trace(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.trace_id, "032x")


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    found: int = span.context.span_id
    return found


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def payload(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "remediator",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": list(alerts),
    }


def firing(
    fingerprint: str, container: str, alertname: str = "ContainerMemoryHigh"
) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": {"alertname": alertname, "container": container, "severity": "warning"},
        "annotations": {"summary": f"memory high on {container}"},
        "startsAt": "2026-11-28T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://127.0.0.1:9090/graph",
        "fingerprint": fingerprint,
    }


@pytest.fixture
def hook() -> Iterator[Hook]:
    with serving() as found:
        yield found


@pytest.fixture
def app(
    tmp_path: Path, authenticator: Authenticator
) -> Iterator[Callable[[dict[str, Any]], tuple[TestClient, Runtime]]]:
    """``app(sections)``: an in-process remediator with tracing enabled, served in a
    TestClient (its worker and outbox run in the client's loop)."""
    opened: list[TestClient] = []

    def make(sections: dict[str, Any]) -> tuple[TestClient, Runtime]:
        data: dict[str, Any] = {
            "store": {"url": f"sqlite:///{tmp_path}/remediator.db"},
            "health": {"enabled": False},
            "tracing": {"enabled": True},
            **sections,
        }
        holder: list[Runtime] = []
        application = create_app(
            config_mod.parse(data, env={}), authenticator=authenticator, on_runtime=holder.append
        )
        client = TestClient(application, raise_server_exceptions=False)
        client.__enter__()
        opened.append(client)
        return client, holder[0]

    yield make
    for client in opened:
        client.__exit__(None, None, None)


def test_one_real_remediation_is_one_tree_in_the_webhooks_trace(
    app: Callable[[dict[str, Any]], tuple[TestClient, Runtime]],
    container_factory: ContainerFactory,
    hook: Hook,
    headers: Callable[[str], dict[str, str]],
    tmp_path: Path,
) -> None:
    web = container_factory(("sleep", "3600"), init=True)
    client, rt = app(
        {
            "targets": [{"name": "web", "type": "docker_container", "container": web.name}],
            "playbooks": [
                {
                    "name": "restart-container",
                    "match": ['alertname="ContainerMemoryHigh"'],
                    "target": "{{ labels.container }}",
                    "steps": [
                        {"action": "docker.restart", "stop_timeout": 1},
                        {"action": "verify.health", "within": "20s", "interval": "500ms"},
                    ],
                    "cooldown": "0s",
                    "retry": {"max_attempts": 1},
                }
            ],
            "notifications": {"webhooks": [{"name": "ops", "url": f"{hook.url}/hooks/ops"}]},
        }
    )
    tr, exporter = traced()
    use(rt, tr)

    def named(name: str) -> list[ReadableSpan]:
        return [s for s in exporter.get_finished_spans() if s.name == name]

    answer = client.post(
        ALERTS,
        json=payload(firing("tt01", "web")),
        headers={
            **headers("alertmanager"),
            "traceparent": TRACEPARENT,
            "tracestate": "vendor=abc, other=x y",
        },
    )
    assert answer.status_code == 200, answer.text
    wait_for(lambda: len(named("decision")) == 1, "the decision span")
    wait_for(lambda: any((s.attributes or {}).get("outcome") == "sent" for s in named("notification")),
             "a notification span")  # fmt: skip

    (intake,) = named("intake")
    (decision,) = named("decision")
    assert parent_of(intake) == int(PARENT_SPAN, 16)
    assert dict(intake.attributes or {}) == {
        "alerts": 1, "new": 1, "duplicates": 0, "http.response.status_code": 200,
    }  # fmt: skip
    kept = client.portal.call(rt.store.raw, "SELECT trace_context FROM inbox")  # type: ignore[union-attr]
    assert kept == [(f"00-{TRACE_ID}-{span_id(intake):016x}-01 vendor=abc,other=x y",)]
    assert parent_of(decision) == span_id(intake)
    assert decision.context is not None
    assert decision.context.trace_state.to_header() == "vendor=abc,other=x y"
    episode = (decision.attributes or {})["episode"]
    assert isinstance(episode, int)
    assert (decision.attributes or {})["alertname"] == "ContainerMemoryHigh"

    guards = named("guard")
    assert [(g.attributes or {})["guard"] for g in guards] == [
        "paused", "quarantined", "blast_radius", "cooldown", "max_per_window", "circuit_open",
    ]  # fmt: skip
    assert {(g.attributes or {})["verdict"] for g in guards} == {"pass"}
    assert {parent_of(g) for g in guards} == {span_id(decision)}

    (attempt,) = named("attempt")
    assert parent_of(attempt) == span_id(decision)
    assert dict(attempt.attributes or {}) == {
        "playbook": "restart-container", "target": "web", "attempt": 1, "episode": episode,
        "outcome": "success",
    }  # fmt: skip
    steps = sorted(named("step"), key=lambda s: s.start_time or 0)
    assert [((s.attributes or {})["action"], (s.attributes or {})["outcome"]) for s in steps] == [
        ("docker.restart", "success"), ("verify.health", "success"),
    ]  # fmt: skip
    assert {parent_of(s) for s in steps} == {span_id(attempt)}
    assert {(s.attributes or {})["target"] for s in steps} == {"web"}
    assert {(s.attributes or {})["attempt"] for s in steps} == {1}
    (verify,) = named("verify")
    assert parent_of(verify) == span_id(steps[1])
    assert (verify.attributes or {})["outcome"] == "success"

    notifications = [
        s for s in named("notification") if (s.attributes or {}).get("outcome") == "sent"
    ]
    assert notifications
    for note in notifications:
        assert parent_of(note) == span_id(decision)
        assert (note.attributes or {})["channel"] == "webhook"
        assert (note.attributes or {})["episode"] == episode
        assert (note.attributes or {})["phase"]

    everything = exporter.get_finished_spans()
    assert {hex_trace(s) for s in everything} == {TRACE_ID}
    web.reload()
    assert web.attrs["State"]["Running"]


def test_the_three_alerts_of_one_notification_are_three_decisions_in_its_trace(
    app: Callable[[dict[str, Any]], tuple[TestClient, Runtime]],
    headers: Callable[[str], dict[str, str]],
) -> None:
    client, rt = app({})
    tr, exporter = traced()
    use(rt, tr)
    body = payload(*(firing(f"nn0{i}", f"c{i}", alertname=f"Unknown{i}") for i in range(3)))
    answer = client.post(ALERTS, json=body, headers=headers("alertmanager"))  # no traceparent
    assert answer.status_code == 200, answer.text

    def decisions() -> list[ReadableSpan]:
        return [s for s in exporter.get_finished_spans() if s.name == "decision"]

    wait_for(lambda: len(decisions()) == 3, "three decision spans")
    (intake,) = [s for s in exporter.get_finished_spans() if s.name == "intake"]
    assert intake.parent is None  # a trace started for the notification
    assert (intake.attributes or {})["alerts"] == 3
    assert {hex_trace(s) for s in decisions()} == {hex_trace(intake)}
    assert {parent_of(s) for s in decisions()} == {span_id(intake)}
    assert len({(s.attributes or {})["episode"] for s in decisions()}) == 3
    rows = client.portal.call(rt.store.raw, "SELECT DISTINCT trace_context FROM inbox")  # type: ignore[union-attr]
    assert intake.context is not None
    flags = f"{intake.context.trace_flags:02x}"  # sampled (and random, as the SDK sets it)
    assert rows == [(f"00-{hex_trace(intake)}-{span_id(intake):016x}-{flags}",)]


def test_without_tracing_the_trace_headers_are_not_kept(
    harness: Any, headers: Callable[[str], dict[str, str]]
) -> None:
    answer = harness.client.post(
        ALERTS,
        json=payload(firing("off1", "c")),
        headers={**headers("alertmanager"), "traceparent": TRACEPARENT},
    )
    assert answer.status_code == 200
    rows = harness.client.portal.call(harness.runtime.store.raw, "SELECT trace_context FROM inbox")
    assert rows == [(None,)]


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict[str, Any]] = []
        self.formatter = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


class Raising:
    """An action whose every run raises: the runner logs it inside the step's span."""

    name: ClassVar[str] = "docker.restart"
    target_types: ClassVar[frozenset[str]] = frozenset({"docker_container"})

    async def run(self, ctx: ActionContext) -> ActionResult:
        raise RuntimeError("boom")


def test_log_lines_inside_a_step_carry_the_episode_beside_the_trace(tmp_path: Path) -> None:
    tr, exporter = traced()
    capture = Capture()
    logger = logging.getLogger("remediator.runner")
    logger.addHandler(capture)
    sections = {
        "targets": [{"name": "web", "type": "docker_container"}],
        "playbooks": [restart_playbook()],
    }
    actions: dict[str, Action] = {"docker.restart": Raising()}

    async def main() -> None:
        h = await EngineHarness.create(tmp_path, sections, actions=actions)
        try:
            use(h.rt, tr)
            await h.send(alert("lg01", container="web"))
            await h.drain()
        finally:
            await h.close()

    try:
        asyncio.run(main())
    finally:
        logger.removeHandler(capture)
    (line,) = [x for x in capture.lines if x["msg"] == "action raised"]
    (step,) = [s for s in exporter.get_finished_spans() if s.name == "step"]
    (decision,) = [s for s in exporter.get_finished_spans() if s.name == "decision"]
    assert line["episode"] == (decision.attributes or {})["episode"]
    assert line["trace_id"] == hex_trace(step)
    assert line["span_id"] == f"{span_id(step):016x}"
    assert (step.attributes or {})["outcome"] == "failure"
    assert (step.attributes or {})["detail"] == "action raised RuntimeError"


def test_alert_text_in_span_attributes_is_cut_and_its_secrets_masked(tmp_path: Path) -> None:
    tr, exporter = traced()
    hostile = "token=hunter2secret " + "A" * 10_000

    async def main() -> None:
        h = await EngineHarness.create(tmp_path, {})
        try:
            use(h.rt, tr)
            await h.send(alert("sx01", container="web", alertname=hostile))
            await h.drain()
        finally:
            await h.close()

    asyncio.run(main())
    (decision,) = [s for s in exporter.get_finished_spans() if s.name == "decision"]
    shown = str((decision.attributes or {})["alertname"])
    assert len(shown) == tracing.MAX_ATTRIBUTE
    assert "hunter2secret" not in shown and shown.startswith("token=")
