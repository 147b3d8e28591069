"""Read endpoints: health, events, metrics."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from remediator.clock import iso
from remediator.errors import RequestError, SchemaViolation, StoreUnavailable
from remediator.events import Event
from remediator.store import EventQuery
from remediator.web import error_response, json_response, require, runtime

log = logging.getLogger("remediator.api")
MAX_LIMIT = 1000


async def health(request: Request) -> Response:
    rt = runtime(request)
    components: dict[str, str] = {}
    try:
        await rt.store.ping()
        components["store"] = "up"
    except StoreUnavailable:
        components["store"] = "down"
    components["worker"] = "up" if rt.worker.alive else "down"
    healthy = all(v == "up" for v in components.values()) and not rt.draining
    status = "draining" if rt.draining else ("healthy" if healthy else "unhealthy")
    return json_response({"status": status, "components": components}, 200 if healthy else 503)


def _time_param(name: str, raw: str | None) -> float | None:
    if raw is None or raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise SchemaViolation(f"{name}: not a time (RFC 3339 or Unix seconds): {raw!r}") from None


def _int_param(
    name: str, raw: str | None, *, default: int | None, low: int, high: int
) -> int | None:
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise SchemaViolation(f"{name}: must be an integer from {low} to {high}")
    return int(raw)


def event_json(event: Event) -> dict[str, Any]:
    data = event.as_dict()
    data["ts"] = data.pop("time")
    data["time"] = iso(event.time)
    return data


async def events(request: Request) -> Response:
    rt = runtime(request)
    try:
        require(request, "read")
        q = request.query_params
        limit = _int_param("limit", q.get("limit"), default=100, low=1, high=MAX_LIMIT)
        query = EventQuery(
            type=q.get("type") or None,
            target=q.get("target") or None,
            severity=q.get("severity") or None,
            fingerprint=q.get("fingerprint") or None,
            since=_time_param("since", q.get("since")),
            until=_time_param("until", q.get("until")),
            before_id=_int_param("before", q.get("before"), default=None, low=1, high=2**62),
            limit=limit or 100,
        )
        found = await rt.store.events(query)
    except RequestError as exc:
        return error_response(exc)
    next_before = found[-1].id if len(found) == query.limit else None
    return json_response({"events": [event_json(e) for e in found], "next_before": next_before})


async def metrics(request: Request) -> Response:
    rt = runtime(request)
    return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)
