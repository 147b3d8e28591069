"""``POST /api/v1/recovery/alerts``: the Alertmanager webhook.

Parse, authorise, persist, answer; no remediation work. Alertmanager retries only 5xx and
connection errors, so every 4xx here is final and 503 means "try again": a 200 is sent only
after the alerts are committed to the store.

:func:`accept` is the one implementation, on plain values. Two thin adapters call it: the pure
ASGI fast path that serves the webhook in front of Starlette (remediator/http/intake.py), and
the Starlette route :func:`receive` (the route table documents the endpoint with it, and it
answers whatever the fast path hands over to Starlette).

The webhook's fast path: ``POST /api/v1/recovery/alerts`` answered in pure ASGI.

Alertmanager posts every notification here, so this path skips what a Starlette route costs per
request (the middleware stack, routing, Request and Response objects) and calls
:func:`remediator.http.intake.accept`, the one implementation of the webhook, with the header values
and the body read straight from ``receive``. Everything else — other methods on the same path
(Starlette's 405), other paths, the lifespan, a request before the runtime exists — goes to the
Starlette app unchanged, whose route for the path (the same ``accept``) stays in the route table
that also builds the OpenAPI document.

Tracing (remediator/tracing.py, docs/tracing.md): when it is enabled, the request is an
``intake`` span, the child of the webhook's ``traceparent`` (and ``tracestate``) when
:func:`~remediator.tracing.canonical_context` keeps them, else the root of a new trace for the
notification; its context is stored with each new alert, and the worker's ``decision`` span
continues it. Disabled, the headers are ignored (the fast path does not even read them) and
the column stays NULL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import NamedTuple

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from remediator.alerts import WebhookPayload
from remediator.config.problems import field_path
from remediator.errors import (
    Backlogged,
    MalformedJSON,
    RequestError,
    SchemaViolation,
    StoreUnavailable,
    Unavailable,
)
from remediator.http.web import (
    INTERNAL_ERROR,
    JSON,
    PREFIX,
    authorize,
    client_host,
    error_body,
    error_headers,
    read_capped,
    runtime,
)
from remediator.runtime import Runtime
from remediator.store.lanes import urgent
from remediator.store.records import IngestResult
from remediator.tracing import Tracing, canonical_context

log = logging.getLogger("remediator.intake")
# A larger body is a large notification (:func:`_accept_large`): parsed on a thread (thousands
# of alerts take tens of milliseconds to validate, which the event loop answering other webhooks
# and /health must not wait for), one at a time.
PARSE_ON_LOOP_BYTES = 64 * 1024
LARGE_WAIT = 1.0  # seconds a large notification waits for its turn before a 503
LARGE_RETRY_AFTER = 5  # seconds Alertmanager is asked to wait then
BACKLOG_RETRY_AFTER = 30  # seconds Alertmanager is asked to wait while the outbox is full
NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class Reply(NamedTuple):
    """The webhook's answer: a status, its JSON body, and headers beyond the content ones (the
    401 challenge)."""

    status: int
    body: bytes
    headers: Mapping[str, str] = NO_HEADERS


def parse_payload(body: bytes) -> WebhookPayload:
    """The payload, or 400 (not JSON) / 422 (not a version 4 payload, naming the field)."""
    try:
        return WebhookPayload.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors()
        if any(err["type"] == "json_invalid" for err in errors):
            raise MalformedJSON("the body is not valid JSON") from None
        if errors and errors[0]["type"] == "model_type" and not errors[0]["loc"]:
            raise SchemaViolation("the body must be a JSON object") from None
        problems = [f"{field_path(tuple(err['loc']))}: {err['msg']}" for err in errors[:5]]
        more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
        raise SchemaViolation("; ".join(problems) + more) from None


async def accept(
    rt: Runtime,
    authorization: str | None,
    declared: str | None,
    receive: Receive,
    *,
    client: str | None = None,
    traceparents: Sequence[str] = (),
    tracestates: Sequence[str] = (),
) -> Reply:
    """Answer one webhook request: its ``Authorization`` and ``Content-Length`` header values
    (or None); its body is read from the ASGI ``receive`` once the caller is authorised.
    ``client`` is the caller's address (failed authentication is throttled by it). With
    tracing enabled, the request is an ``intake`` span continuing its ``traceparents`` and
    ``tracestates`` header values when they are valid (see the module's docstring)."""
    tracing = rt.worker.tracing
    if not tracing.enabled:
        return await _accept(rt, authorization, declared, receive, client=client)
    parent = canonical_context(traceparents, tracestates)
    with tracing.span("intake", traceparent=parent) as span:
        reply = await _accept(
            rt, authorization, declared, receive, client=client, trace_context=tracing.context()
        )
        span.set_attribute("http.response.status_code", reply.status)
        return reply


async def _accept(
    rt: Runtime,
    authorization: str | None,
    declared: str | None,
    receive: Receive,
    *,
    client: str | None = None,
    trace_context: str | None = None,
) -> Reply:
    """:func:`accept`, with the trace context to keep with each new alert."""
    started = time.perf_counter()
    metrics = rt.metrics
    headers = NO_HEADERS
    try:
        if rt.draining:
            raise Unavailable("remediator is shutting down; retry")
        authorize(rt, authorization, "intake", client)
        if rt.outbox.pending >= rt.config.notifications.max_pending:
            metrics.intake_refused_outbox_full.inc()
            raise Backlogged(
                f"{rt.outbox.pending} notifications wait for delivery "
                f"(notifications.max_pending {rt.config.notifications.max_pending}); retry",
                retry_after=BACKLOG_RETRY_AFTER,
            )
        body = await read_capped(receive, declared, rt.config.server.max_body_bytes)
        if len(body) > PARSE_ON_LOOP_BYTES:
            payload, result = await _accept_large(rt, body, trace_context)
        else:
            payload = parse_payload(body)
            with urgent():  # ahead of the worker's and a storm's writes
                result = await _ingest(rt, payload, trace_context)
        if trace_context is not None:  # the intake span's counts
            Tracing.annotate(
                {"alerts": result.received, "new": result.new, "duplicates": result.duplicates}
            )
        by_status = metrics.alerts_received_by_status
        for alert in payload.alerts:
            by_status[alert.status].inc()
        if result.duplicates:
            metrics.alerts_duplicate.inc(result.duplicates)
        if result.new:
            metrics.inbox_pending.inc(result.new)
            rt.worker.wake()
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "alerts received",
                extra={
                    "receiver": payload.receiver,
                    "received": result.received,
                    "new": result.new,
                    "duplicates": result.duplicates,
                    "truncated": payload.truncated_alerts,
                },
            )
        status = 200
        # The answer's fields are ints: formatted directly, the same bytes as encode_json.
        answer = b'{"received":%d,"new":%d,"duplicates":%d,"truncated":%d}' % (
            result.received,
            result.new,
            result.duplicates,
            payload.truncated_alerts,
        )
    except RequestError as exc:
        if exc.status >= 500:
            log.warning("intake refused", extra={"code": exc.code, "status": exc.status})
        else:  # Alertmanager does not retry a 4xx: these alerts are lost
            metrics.webhook_rejected.labels(exc.code).inc()
        status, answer, headers = exc.status, error_body(exc), error_headers(exc)
    except Exception:
        log.exception("intake failed")
        status, answer = 500, INTERNAL_ERROR
    counter = metrics.webhook_requests_by_code.get(status)
    if counter is None:
        counter = metrics.webhook_requests.labels(str(status))
    counter.inc()
    metrics.webhook_duration.observe(time.perf_counter() - started)
    return Reply(status, answer, headers)


async def _ingest(
    rt: Runtime, payload: WebhookPayload, trace_context: str | None = None
) -> IngestResult:
    """Store the payload's alerts (the 200 follows only their commit)."""
    try:
        return await rt.store.ingest(
            list(payload.alerts),
            received_at=rt.clock.now(),
            receiver=payload.receiver,
            group_key=payload.group_key,
            duplicate_interval=rt.config.audit.duplicate_interval,
            trace_context=trace_context,
        )
    except StoreUnavailable:
        rt.metrics.store_write_failures.inc()
        raise


async def _accept_large(
    rt: Runtime, body: bytes, trace_context: str | None = None
) -> tuple[WebhookPayload, IngestResult]:
    """A large notification (a storm's: thousands of alerts): one at a time, parsed on a
    thread. Another one waits at most :data:`LARGE_WAIT` seconds for its turn, then is refused
    with 503 and ``Retry-After`` (Alertmanager retries), so a storm's notifications never queue
    up on the loop and the writer ahead of a small one."""
    slot = rt.large_intake
    try:
        await asyncio.wait_for(slot.acquire(), timeout=LARGE_WAIT)
    except TimeoutError:
        rt.metrics.intake_refused_busy.inc()
        raise Backlogged(
            "another large notification is being stored; retry", retry_after=LARGE_RETRY_AFTER
        ) from None
    try:
        payload = await asyncio.to_thread(parse_payload, body)
        return payload, await _ingest(rt, payload, trace_context)
    finally:
        slot.release()


async def receive(request: Request) -> Response:
    """The Starlette route for the webhook: :func:`accept` on Starlette's request."""
    reply = await accept(
        runtime(request),
        request.headers.get("authorization"),
        request.headers.get("content-length"),
        request.receive,
        client=client_host(request),
        traceparents=request.headers.getlist("traceparent"),
        tracestates=request.headers.getlist("tracestate"),
    )
    return Response(reply.body, reply.status, headers=reply.headers, media_type=JSON)


ALERTS_PATH = f"{PREFIX}/alerts"
_CONTENT_TYPE = (b"content-type", b"application/json")
_TRACE_HEADERS = (b"traceparent", b"tracestate")


class App(Starlette):
    """remediator's Starlette application, with the webhook served in front of it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == ALERTS_PATH
            and scope["method"] == "POST"
            and not scope.get("root_path")
        ):
            state = scope.get("state")
            rt: Runtime | None = state.get("runtime") if state is not None else None
            if rt is not None:
                await webhook(rt, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


async def webhook(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one webhook request (HTTP, ``POST`` on the path) for runtime ``rt``."""
    authorization: str | None = None
    declared: str | None = None
    traced = rt.worker.tracing.enabled  # the trace headers are read only then
    parents: list[str] = []
    states: list[str] = []
    # Header names are lower-case bytes in ASGI; as Starlette's ``headers.get``, the first wins.
    for name, value in scope["headers"]:
        if name == b"authorization":
            if authorization is None:
                authorization = value.decode("latin-1")
        elif name == b"content-length" and declared is None:
            declared = value.decode("latin-1")
        elif traced and name in _TRACE_HEADERS:
            (parents if name == b"traceparent" else states).append(value.decode("latin-1"))
    peer = scope.get("client")
    reply = await accept(
        rt,
        authorization,
        declared,
        receive,
        client=peer[0] if peer else None,
        traceparents=parents,
        tracestates=states,
    )
    headers = [(b"content-length", b"%d" % len(reply.body)), _CONTENT_TYPE]
    if reply.headers:  # first, as Starlette's Response puts them
        headers[:0] = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items()
        ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})
