"""remediator/tracing.py: spans with the SDK's in-memory exporter, traceparent continued or
ignored, ids in the JSON logs, disabled tracing records nothing."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import generate_latest
from prometheus_client.exposition import choose_encoder

from remediator import tracing
from remediator.config.model import Config
from remediator.logs import JsonFormatter
from tests.conftest import AppHarness
from tests.engine_harness import EngineHarness, alert, restart_playbook, run

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
HOSTILE = [
    "garbage",
    "00-" + "a" * 32 + "-" + "b" * 16 + "-01" + "x" * 10_000,  # oversize
    f"ff-{TRACE_ID}-00f067aa0ba902b7-01",  # version ff is forbidden
    f"01-{TRACE_ID}-00f067aa0ba902b7-01",  # a version this service does not know
    "00-" + "0" * 32 + "-00f067aa0ba902b7-01",  # all-zero trace id
    f"00-{TRACE_ID}-" + "0" * 16 + "-01",  # all-zero span id
    "",
]


def traced() -> tuple[tracing.Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    built = tracing.build(
        enabled=True,
        service_name="remediator-test",
        sample_ratio=1.0,
        otlp_endpoint=None,
        header_env={},
        processors=[SimpleSpanProcessor(exporter)],
    )
    return built, exporter


def test_a_valid_traceparent_is_continued_and_children_share_its_trace() -> None:
    tr, exporter = traced()
    with tr.span("intake", traceparent=PARENT, attributes={"receiver": "r"}):
        stored = tr.traceparent()
    assert stored is not None and stored.startswith(f"00-{TRACE_ID}-")
    with tr.span("decision", traceparent=stored), tr.span("guard"):
        pass
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"intake", "decision", "guard"}
    assert {format(s.context.trace_id, "032x") for s in spans.values()} == {TRACE_ID}
    assert (
        spans["intake"].parent is not None and spans["intake"].parent.span_id == 0x00F067AA0BA902B7
    )
    assert spans["decision"].parent is not None
    assert spans["decision"].parent.span_id == spans["intake"].context.span_id
    assert spans["guard"].parent is not None
    assert spans["guard"].parent.span_id == spans["decision"].context.span_id
    assert spans["intake"].resource.attributes["service.name"] == "remediator-test"


@pytest.mark.parametrize("header", HOSTILE, ids=range(len(HOSTILE)))
def test_a_malformed_traceparent_starts_a_fresh_trace(header: str) -> None:
    assert tracing.parse_traceparent(header) is None
    tr, exporter = traced()
    with tr.span("intake", traceparent=header):
        pass
    (span,) = exporter.get_finished_spans()
    assert span.parent is None
    assert format(span.context.trace_id, "032x") != TRACE_ID
    assert span.context.trace_id != 0


def test_disabled_tracing_records_nothing_and_writes_no_traceparent() -> None:
    tr = tracing.build(
        enabled=False, service_name="x", sample_ratio=1.0, otlp_endpoint=None, header_env={}
    )
    assert not tr.enabled
    with tr.span("intake", traceparent=PARENT):
        assert tr.current_ids() is None
    assert Config().tracing.enabled is False


def test_json_log_lines_inside_a_span_carry_its_trace_and_span_ids() -> None:
    tr, _ = traced()
    record = logging.makeLogRecord({"msg": "step done", "episode": "ep-1"})
    assert "trace_id" not in json.loads(JsonFormatter().format(record))
    with tr.span("step", traceparent=PARENT) as span:
        line = json.loads(JsonFormatter().format(record))
    assert line["trace_id"] == TRACE_ID
    assert line["span_id"] == format(span.get_span_context().span_id, "016x")
    assert line["episode"] == "ep-1"


def test_exporter_headers_name_environment_variables_not_values() -> None:
    from remediator.config.tracing import TracingConfig

    with pytest.raises(ValueError, match="not an environment variable name"):
        TracingConfig(headers_env={"Authorization": "Bearer s3cret"})
    assert TracingConfig(headers_env={"Authorization": "OTLP_TOKEN"}).headers_env


def test_action_duration_and_time_to_recovery_carry_the_trace_as_an_openmetrics_exemplar(
    tmp_path: Path,
) -> None:
    tr, _ = traced()
    sections = {
        "targets": [{"name": "web", "type": "docker_container"}],
        "playbooks": [restart_playbook()],
    }

    async def body(h: EngineHarness) -> None:
        await h.send(alert("a1", container="web"))
        with tr.span("decision", traceparent=PARENT):
            await h.drain()
        assert h.recorder.count() == 1
        await h.send(alert("a1", container="web", status="resolved", ends=1_800_000_090.0))
        with tr.span("decision", traceparent=PARENT):
            await h.drain()
        encode, content_type = choose_encoder("application/openmetrics-text; version=1.0.0")
        assert content_type.startswith("application/openmetrics-text")
        text = encode(h.rt.metrics.registry).decode()
        for name in ("remediator_action_duration_seconds", "remediator_time_to_recovery_seconds"):
            lines = [x for x in text.splitlines() if x.startswith(f"{name}_bucket")]
            assert any(f'# {{trace_id="{TRACE_ID}"' in x for x in lines), name
        plain = generate_latest(h.rt.metrics.registry).decode()
        assert "trace_id" not in plain  # the classic text format has no exemplars

    run(tmp_path, sections, body)


def test_metrics_answer_openmetrics_only_when_the_scraper_asks(harness: AppHarness) -> None:
    open_metrics = harness.client.get(
        "/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert open_metrics.status_code == 200
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
    assert open_metrics.text.endswith("# EOF\n")
    assert "# TYPE remediator_action_duration_seconds histogram" in open_metrics.text
    classic = harness.client.get("/metrics")
    assert classic.headers["content-type"].startswith("text/plain")
    assert "# EOF" not in classic.text


def test_the_worker_decides_each_item_in_a_span_that_the_actions_exemplar_names(
    tmp_path: Path,
) -> None:
    tr, exporter = traced()
    sections = {
        "targets": [{"name": "web", "type": "docker_container"}],
        "playbooks": [restart_playbook()],
    }

    async def body(h: EngineHarness) -> None:
        h.rt.worker.tracing = tr
        await h.send(alert("a1", container="web"))
        await h.drain()
        assert h.recorder.count() == 1
        (decision,) = [s for s in exporter.get_finished_spans() if s.name == "decision"]
        assert decision.attributes is not None
        episode = decision.attributes["episode"]
        assert isinstance(episode, int) and episode >= 1
        trace_id = format(decision.context.trace_id, "032x")
        encode, _ = choose_encoder("application/openmetrics-text")
        text = encode(h.rt.metrics.registry).decode()
        assert 'remediator_action_duration_seconds_bucket{action="docker.restart"' in text
        assert f'# {{episode="{episode}",trace_id="{trace_id}"}}' in text

    run(tmp_path, sections, body)
