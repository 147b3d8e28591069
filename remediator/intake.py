"""``POST /api/v1/recovery/alerts``: the Alertmanager webhook.

Parse, authorise, persist, answer; no remediation work. Alertmanager retries only 5xx and
connection errors, so every 4xx here is final and 503 means "try again": a 200 is sent only
after the alerts are committed to the store.
"""

from __future__ import annotations

import logging
import time

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from remediator.alerts import WebhookPayload
from remediator.config import field_path
from remediator.errors import (
    MalformedJSON,
    RequestError,
    SchemaViolation,
    StoreUnavailable,
    Unavailable,
)
from remediator.web import (
    error_response,
    internal_error,
    json_response,
    read_body,
    require,
    runtime,
)

log = logging.getLogger("remediator.intake")


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


async def receive(request: Request) -> Response:
    rt = runtime(request)
    started = time.perf_counter()
    response: Response
    try:
        if rt.draining:
            raise Unavailable("remediator is shutting down; retry")
        require(request, "intake")
        body = await read_body(request, rt.config.server.max_body_bytes)
        payload = parse_payload(body)
        try:
            result = await rt.store.ingest(
                list(payload.alerts),
                received_at=rt.clock.now(),
                receiver=payload.receiver,
                group_key=payload.group_key,
            )
        except StoreUnavailable:
            rt.metrics.store_write_failures.inc()
            raise
        for alert in payload.alerts:
            rt.metrics.alerts_received.labels(alert.status).inc()
        if result.duplicates:
            rt.metrics.alerts_duplicate.inc(result.duplicates)
        if result.new:
            rt.metrics.inbox_pending.inc(result.new)
            rt.worker.wake()
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
        response = json_response(
            {
                "received": result.received,
                "new": result.new,
                "duplicates": result.duplicates,
                "truncated": payload.truncated_alerts,
            }
        )
    except RequestError as exc:
        if exc.status >= 500:
            log.warning("intake refused", extra={"code": exc.code, "status": exc.status})
        response = error_response(exc)
    except Exception:
        log.exception("intake failed")
        response = internal_error()
    rt.metrics.webhook_requests.labels(str(response.status_code)).inc()
    rt.metrics.webhook_duration.observe(time.perf_counter() - started)
    return response
