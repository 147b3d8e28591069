"""remediator/tracing.py: spans with the SDK's in-memory exporter, traceparent continued or
ignored, ids in the JSON logs, disabled tracing records nothing."""

from __future__ import annotations

import json
import logging

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from remediator import tracing
from remediator.config.model import Config
from remediator.logs import JsonFormatter

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
