"""Tracing: the narrow interface the service uses for OpenTelemetry spans.

The rest of the code asks for a :class:`Tracing` (built once, in the lifespan) and calls
:meth:`Tracing.span`; it never touches the SDK. Disabled tracing (the default) is the API's
no-op tracer: no exporter, no sampler, no span objects kept, so the webhook's hot path pays for
a context manager and nothing more.

A W3C ``traceparent`` (Alertmanager 0.30 and later sends one) is continued through the SDK's
propagator; a malformed one (garbage, oversize, unknown version, all-zero ids) is ignored and
the span starts a fresh trace. :meth:`Tracing.traceparent` writes the current span back as a
header value, so a span context can be persisted with a durable row and continued later.

What a row keeps is a *trace context*: a canonical ``traceparent``, then (if there is one) a
space and the canonical ``tracestate`` (:func:`canonical_context`, :meth:`Tracing.context`).
Headers that come from outside (the webhook's) pass :func:`canonical_context` first: exactly one
lowercase version-00 ``traceparent`` with non-zero ids, and a ``tracestate`` of at most
:data:`MAX_TRACESTATE_MEMBERS` well-formed members and :data:`MAX_TRACESTATE` characters
(anything else is dropped, never an error). A span whose attributes name an ``episode`` makes
it the current episode: JSON log lines written inside it carry it (:meth:`Tracing.current_ids`).
The context of each episode's latest ``decision`` span is kept in memory (bounded,
:meth:`Tracing.note_decision`) so that the outbox's notification spans join its trace.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from remediator.redaction import redact_text

if TYPE_CHECKING:  # the SDK is imported only when tracing is enabled (see build)
    from opentelemetry.sdk.trace import SpanProcessor

MAX_TRACEPARENT = 55  # "00-" + 32 hex + "-" + 16 hex + "-" + 2 hex: version 00 is exactly this
INSTRUMENTATION = "remediator"
_PROPAGATOR = TraceContextTextMapPropagator()
MAX_TRACESTATE = 512  # characters of a kept tracestate (W3C: propagate at least 512)
MAX_TRACESTATE_MEMBERS = 32  # W3C's limit
MAX_TRACE_HEADER = 8192  # characters of the tracestate headers read at all
MAX_ATTRIBUTE = 200  # characters of alert text a span attribute carries (:func:`bounded`)
MAX_DECISIONS = 4096  # episodes whose latest decision span the notifications can join
_TRACEPARENT = re.compile(r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")
_KEY = r"(?:[a-z][_0-9a-z*/-]{0,255}|[a-z0-9][_0-9a-z*/-]{0,240}@[a-z][_0-9a-z*/-]{0,13})"
_VALUE = r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
_MEMBER = re.compile(f"({_KEY})={_VALUE}")
_EPISODE: ContextVar[int | None] = ContextVar("remediator_episode", default=None)

Attribute = str | bool | int | float


@dataclass(frozen=True, slots=True)
class SpanIds:
    """The ids of one span as lowercase hex (what the JSON logs and exemplars carry)."""

    trace_id: str
    span_id: str
    episode: int | None = None  # the episode of the decision or step the span is part of


def canonical_tracestate(headers: Sequence[str]) -> str:
    """The ``tracestate`` headers as one canonical value (members comma-separated, no blanks);
    empty if any member is malformed or repeated, or the whole is over the limits."""
    if sum(len(header) for header in headers) > MAX_TRACE_HEADER:
        return ""
    members: list[str] = []
    keys: set[str] = set()
    for header in headers:
        for member in header.split(","):
            member = member.strip(" \t")
            if not member:
                continue
            match = _MEMBER.fullmatch(member)
            if match is None or match.group(1) in keys:
                return ""
            keys.add(match.group(1))
            members.append(member)
    value = ",".join(members)
    if len(members) > MAX_TRACESTATE_MEMBERS or len(value) > MAX_TRACESTATE:
        return ""
    return value


def canonical_context(traceparents: Sequence[str], tracestates: Sequence[str] = ()) -> str | None:
    """The trace context to keep for these header values: exactly one valid ``traceparent``
    (version 00, lowercase hex, non-zero ids; surrounding blanks dropped), a space and the
    canonical ``tracestate`` if any is valid; None for anything else."""
    if len(traceparents) != 1:
        return None
    parent = traceparents[0].strip(" \t")
    if len(parent) != MAX_TRACEPARENT or _TRACEPARENT.fullmatch(parent) is None:
        return None
    state = canonical_tracestate(tracestates)
    return f"{parent} {state}" if state else parent


def bounded(text: str, limit: int = MAX_ATTRIBUTE) -> str:
    """Alert text as a span attribute: secrets masked (remediator/redaction.py), then cut."""
    return redact_text(text)[:limit]


def _remote(value: str | None) -> trace.SpanContext | None:
    """The remote span context of a kept trace context (or a bare ``traceparent``)."""
    if not value:
        return None
    parent, _, state = value.partition(" ")
    kept = canonical_context([parent], [state] if state else ())
    if kept is None:
        return None
    parent, _, state = kept.partition(" ")
    context = _PROPAGATOR.extract({"traceparent": parent, "tracestate": state})
    span_context = trace.get_current_span(context).get_span_context()
    return span_context if span_context.is_valid else None


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
        self._decisions: OrderedDict[int, str] = OrderedDict()

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
        """A span named ``name``: the child of ``traceparent`` (a bare header value or a kept
        trace context, :func:`canonical_context`) when it is valid, else of the current span
        (a fresh trace when there is none). An ``episode`` attribute makes it the current
        episode (in the JSON logs) until the span ends."""
        if self._provider is None:  # disabled: no parsing, no context change
            yield trace.INVALID_SPAN
            return
        context = None
        remote = _remote(traceparent)
        if remote is not None:
            context = trace.set_span_in_context(trace.NonRecordingSpan(remote))
        episode = attributes.get("episode") if attributes else None
        token = _EPISODE.set(episode) if isinstance(episode, int) else None
        try:
            with self._tracer.start_as_current_span(
                name, context=context, attributes=dict(attributes or {})
            ) as current:
                yield current
        finally:
            if token is not None:
                _EPISODE.reset(token)

    @staticmethod
    def context() -> str | None:
        """The current span as a trace context to keep (:func:`canonical_context`), None
        outside a valid span."""
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
        parent = carrier.get("traceparent")
        if parent is None:
            return None
        state = carrier.get("tracestate")
        return canonical_context([parent], [state] if state else ())

    def note_decision(self, episode: int) -> None:
        """Keep the current span's context as ``episode``'s latest decision (the last
        :data:`MAX_DECISIONS` episodes): the notifications its run causes join that trace."""
        if self._provider is None:
            return
        kept = self.context()
        if kept is None:
            return
        self._decisions[episode] = kept
        self._decisions.move_to_end(episode)
        while len(self._decisions) > MAX_DECISIONS:
            self._decisions.popitem(last=False)

    def decision_context(self, episode: object) -> str | None:
        """The kept context of ``episode``'s latest decision in this process, if any."""
        if not isinstance(episode, int) or isinstance(episode, bool):
            return None
        return self._decisions.get(episode)

    @staticmethod
    def traceparent() -> str | None:
        """The current span as a ``traceparent`` value, None outside a sampled, valid span."""
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
        return carrier.get("traceparent")

    @staticmethod
    def annotate(attributes: Mapping[str, Attribute]) -> None:
        """Set attributes on the current span (nothing outside a recording one)."""
        trace.get_current_span().set_attributes(dict(attributes))

    @staticmethod
    def current_ids() -> SpanIds | None:
        span_context = trace.get_current_span().get_span_context()
        if not span_context.is_valid:
            return None
        return SpanIds(
            trace_id=format(span_context.trace_id, "032x"),
            span_id=format(span_context.span_id, "016x"),
            episode=_EPISODE.get(),
        )

    @staticmethod
    def exemplar() -> dict[str, str] | None:
        """The current span's trace id, and its episode when it has one, as a histogram
        exemplar (None outside a span)."""
        ids = Tracing.current_ids()
        if ids is None:
            return None
        labels = {"trace_id": ids.trace_id}
        if ids.episode is not None:
            labels["episode"] = str(ids.episode)
        return labels

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
