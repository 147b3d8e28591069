"""Tracing: the narrow interface the service uses for OpenTelemetry spans.

The rest of the code asks for a :class:`Tracing` (built once, in the lifespan) and calls
:meth:`Tracing.span`; it never touches the SDK. Disabled tracing (the default) is the API's
no-op tracer: no exporter, no sampler, no span objects kept, so the webhook's hot path pays for
a context manager and nothing more.

A W3C ``traceparent`` (Alertmanager 0.30 and later sends one) is continued through the SDK's
propagator; a malformed one (garbage, oversize, unknown version, all-zero ids) is ignored and
the span starts a fresh trace. :meth:`Tracing.traceparent` writes the current span back as a
header value, so a span context can be persisted with a durable row and continued later.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:  # the SDK is imported only when tracing is enabled (see build)
    from opentelemetry.sdk.trace import SpanProcessor

MAX_TRACEPARENT = 55  # "00-" + 32 hex + "-" + 16 hex + "-" + 2 hex: version 00 is exactly this
INSTRUMENTATION = "remediator"
_PROPAGATOR = TraceContextTextMapPropagator()

Attribute = str | bool | int | float


@dataclass(frozen=True, slots=True)
class SpanIds:
    """The ids of one span as lowercase hex (what the JSON logs and exemplars carry)."""

    trace_id: str
    span_id: str


def parse_traceparent(header: str | None) -> trace.SpanContext | None:
    """The remote span context a valid ``traceparent`` names; None for anything else."""
    if not header or len(header) > MAX_TRACEPARENT or not header.startswith("00-"):
        return None
    context = _PROPAGATOR.extract({"traceparent": header})
    span_context = trace.get_current_span(context).get_span_context()
    return span_context if span_context.is_valid else None


class Tracing:
    """Starts spans on one tracer provider (the no-op API tracer when tracing is disabled)."""

    def __init__(self, provider: trace.TracerProvider | None = None) -> None:
        self._provider = provider
        self._tracer = (provider or trace.NoOpTracerProvider()).get_tracer(INSTRUMENTATION)

    @property
    def enabled(self) -> bool:
        return self._provider is not None

    @contextmanager
    def span(
        self,
        name: str,
        *,
        traceparent: str | None = None,
        attributes: Mapping[str, Attribute] | None = None,
    ) -> Iterator[trace.Span]:
        """A span named ``name``: the child of ``traceparent`` when it is valid, else of the
        current span (a fresh trace when there is none)."""
        if self._provider is None:  # disabled: no parsing, no context change
            yield trace.INVALID_SPAN
            return
        context = None
        remote = parse_traceparent(traceparent)
        if remote is not None:
            context = trace.set_span_in_context(trace.NonRecordingSpan(remote))
        with self._tracer.start_as_current_span(
            name, context=context, attributes=dict(attributes or {})
        ) as current:
            yield current

    @staticmethod
    def traceparent() -> str | None:
        """The current span as a ``traceparent`` value, None outside a sampled, valid span."""
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
        return carrier.get("traceparent")

    @staticmethod
    def current_ids() -> SpanIds | None:
        span_context = trace.get_current_span().get_span_context()
        if not span_context.is_valid:
            return None
        return SpanIds(
            trace_id=format(span_context.trace_id, "032x"),
            span_id=format(span_context.span_id, "016x"),
        )

    @staticmethod
    def exemplar() -> dict[str, str] | None:
        """The current span's trace id as a histogram exemplar (None outside a span)."""
        ids = Tracing.current_ids()
        return None if ids is None else {"trace_id": ids.trace_id}

    def shutdown(self) -> None:
        """Flush and stop the exporter (the lifespan's end); nothing when disabled."""
        shutdown = getattr(self._provider, "shutdown", None)
        if shutdown is not None:
            shutdown()


def build(
    *,
    enabled: bool,
    service_name: str,
    sample_ratio: float,
    otlp_endpoint: str | None,
    header_env: Mapping[str, str],
    processors: Sequence[SpanProcessor] = (),
) -> Tracing:
    """The service's :class:`Tracing`: disabled is the no-op tracer, enabled is an SDK provider
    exporting by OTLP/HTTP when ``otlp_endpoint`` is set (header values read from the
    environment variables ``header_env`` names) plus any extra ``processors`` (tests)."""
    if not enabled:
        return Tracing()
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}),
        sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
    )
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        headers = {name: os.environ.get(env, "") for name, env in header_env.items()}
        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint, headers=headers))
        )
    for processor in processors:
        provider.add_span_processor(processor)
    return Tracing(provider)
