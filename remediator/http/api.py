"""Read endpoints: health, events, metrics."""

from __future__ import annotations

import logging
import math
from datetime import datetime
from typing import Any

from prometheus_client.exposition import choose_encoder
from starlette.requests import Request
from starlette.responses import Response

from remediator.audit.events import Event
from remediator.clock import iso
from remediator.engine import quarantine
from remediator.errors import RequestError, SchemaViolation, StoreUnavailable
from remediator.http.management import health_detail
from remediator.http.web import error_response, json_response, principal, require, runtime
from remediator.store import EventQuery
from remediator.store.lanes import urgent

log = logging.getLogger("remediator.api")
MAX_LIMIT = 1000


async def health(request: Request) -> Response:
    """Public and minimal; with a viewer or admin token, ``detail`` adds every component."""
    rt = runtime(request)
    components: dict[str, str] = {}
    try:
        with urgent():  # the store's answer, not the length of the worker's queue
            await rt.store.ping()
        components["store"] = "up"
    except StoreUnavailable:
        components["store"] = "down"
    components["worker"] = "up" if rt.worker.alive else "down"
    healthy = all(v == "up" for v in components.values()) and not rt.draining
    status = "draining" if rt.draining else ("healthy" if healthy else "unhealthy")
    answer: dict[str, Any] = {"status": status, "components": components}
    try:
        who = principal(request) if request.headers.get("authorization") else None
    except RequestError as exc:  # 429: the address is throttled for failed authentication
        return error_response(exc)
    if who is not None and who.may("read"):
        try:
            answer["detail"] = await health_detail(rt, store_up=components["store"] == "up")
        except Exception:
            log.exception("health detail failed")
    return json_response(answer, 200 if healthy else 503)


def _time_param(name: str, raw: str | None) -> float | None:
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        pass
    else:
        if math.isfinite(value):
            return value
        raise SchemaViolation(f"{name}: not a time (RFC 3339 or Unix seconds): {raw!r}")
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError, OSError):
        raise SchemaViolation(f"{name}: not a time (RFC 3339 or Unix seconds): {raw!r}") from None


def _int_param(
    name: str, raw: str | None, *, default: int | None, low: int, high: int
) -> int | None:
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
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
        who = require(request, "read")
        rt.limiter.check(who.name)
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
    # Quarantine is shared by replicas: read it at each scrape (remediator/engine/quarantine.py).
    await quarantine.export(rt.store, rt.metrics, names=[t.name for t in rt.config.targets])
    # OpenMetrics (with the histograms' trace exemplars) when the scraper asks for it.
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(rt.metrics.registry), media_type=content_type)
