"""The management API's plumbing and its read endpoints.

Every management handler runs through :func:`endpoint`: authenticate and authorise (401/403),
apply the caller's rate limit (429), then answer; errors become ``{"error": {"code", "message",
"details"?}}`` and anything unexpected a sanitized 500. Writes live in ``remediator.http.admin``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from remediator import __version__
from remediator.config import document as configdoc
from remediator.config.auth import Capability, Principal
from remediator.config.durations import parse_duration
from remediator.config.patterns import DEFAULT_PATTERNS, effective_patterns
from remediator.config.problems import format_errors
from remediator.engine import statistics
from remediator.engine.guards import PAUSE_FLAG, breaker_json
from remediator.errors import (
    MalformedJSON,
    RateLimited,
    RequestError,
    StoreUnavailable,
    Unauthorized,
    ValidationFailed,
)
from remediator.http.schemas import (
    BreakersResponse,
    ConfigurationResponse,
    HealthDetail,
    PatternsResponse,
    StatisticsResponse,
)
from remediator.http.web import internal_error, read_body, require, runtime
from remediator.notifiers import configured as configured_channels
from remediator.notifiers import section
from remediator.redaction import configured_secrets
from remediator.runtime import Runtime
from remediator.store.records import BreakerState

log = logging.getLogger("remediator.management")
M = TypeVar("M", bound=BaseModel)
Handler = Callable[[Request, Runtime, Principal], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]
DEFAULT_WINDOW = 86400.0
MAX_WINDOW = 366 * 86400.0

# -- errors as answers --------------------------------------------------------------------------


def problem(exc: RequestError) -> JSONResponse:
    body: dict[str, Any] = {"code": exc.code, "message": exc.message}
    details = getattr(exc, "details", None)
    if details:
        body["details"] = list(details)
    headers = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="remediator"'
    return JSONResponse({"error": body}, exc.status, headers=headers)


def invalid(exc: ValidationError) -> RequestError:
    if any(err["type"] == "json_invalid" for err in exc.errors()):
        return MalformedJSON("the body is not valid JSON")
    return ValidationFailed(format_errors(exc))


# -- the wrapper -------------------------------------------------------------------------------


def endpoint(capability: Capability, handler: Handler, *, limited: bool = True) -> Endpoint:
    """``handler`` behind authentication, authorisation and the caller's rate limit."""

    async def run(request: Request) -> Response:
        rt = runtime(request)
        try:
            who = require(request, capability)
            if limited:
                rt.limiter.check(who.name)
            return await handler(request, rt, who)
        except RequestError as exc:
            if exc.status >= 500:
                log.warning("request refused", extra={"code": exc.code, "path": request.url.path})
            return problem(exc)
        except Exception:
            log.exception("request failed", extra={"path": request.url.path})
            return internal_error()

    run.__name__ = run.__qualname__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run


async def parse_body(request: Request, rt: Runtime, model: type[M], *, optional: bool = False) -> M:
    """The JSON body as ``model`` (strict JSON types): 400 if not JSON, 413 if too large, 422
    naming each invalid field. With ``optional``, an empty body means the model's defaults."""
    body = await read_body(request, rt.config.server.max_body_bytes)
    if optional and not body:
        return model()
    try:
        return model.model_validate_json(body, strict=True)
    except ValidationError as exc:
        raise invalid(exc) from None


def ok(model: type[BaseModel], data: dict[str, Any], status: int = 200) -> JSONResponse:
    """``data`` checked against the documented response ``model``."""
    return JSONResponse(model.model_validate(data).model_dump(mode="json"), status)


# -- circuit breakers --------------------------------------------------------------------------


async def registered_breakers(rt: Runtime) -> list[BreakerState]:
    """The breaker of every registered target (closed when it never had one)."""
    stored = {b.target: b for b in await rt.store.breakers()}
    return [stored.get(t.name, BreakerState(target=t.name)) for t in rt.config.targets]


async def breakers(request: Request, rt: Runtime, who: Principal) -> Response:
    """Every registered target's circuit breaker."""
    settings = rt.config.circuit_breaker
    return ok(
        BreakersResponse,
        {
            "breakers": [breaker_json(b, settings) for b in await registered_breakers(rt)],
            "settings": {
                "enabled": settings.enabled,
                "failure_threshold": settings.failure_threshold,
                "reset_timeout_seconds": settings.reset_timeout,
                "half_open_requests": settings.half_open_requests,
            },
        },
    )


# -- statistics --------------------------------------------------------------------------------


def window_param(raw: str | None) -> float:
    if raw is None or raw == "":
        return DEFAULT_WINDOW
    try:
        window = parse_duration(raw)
    except ValueError as exc:
        raise ValidationFailed([f"window: {exc}"]) from None
    if not 0 < window <= MAX_WINDOW:
        raise ValidationFailed(["window: must be more than 0 and at most 366d"])
    return window


async def statistics_(request: Request, rt: Runtime, who: Principal) -> Response:
    """Recovery statistics over a window (default 24h)."""
    window = window_param(request.query_params.get("window"))
    result = await statistics.compute(
        rt.store,
        now=rt.clock.now(),
        window=window,
        targets=[t.name for t in rt.config.targets],
    )
    return ok(StatisticsResponse, result)


statistics_.__name__ = "statistics"


# -- configuration and patterns ----------------------------------------------------------------


def known_secrets(rt: Runtime) -> tuple[str, ...]:
    """Secret values to mask wherever they appear: the API tokens and every value the
    configuration points at (environment variables, URL passwords, header values)."""
    return configured_secrets(rt.config, rt.authenticator.secrets, os.environ)


async def get_configuration(request: Request, rt: Runtime, who: Principal) -> Response:
    """The running configuration, secrets redacted, and its version."""
    document = configdoc.redacted(rt.config, known_secrets(rt))
    data = {"version": rt.config_version, "configuration": document}
    ConfigurationResponse.model_validate(data)
    return JSONResponse(data)


def patterns_json(rt: Runtime) -> list[dict[str, Any]]:
    config = rt.config
    user = {p.id for p in config.patterns}
    builtin = {p.id for p in DEFAULT_PATTERNS}

    def source(pattern_id: str) -> str:
        if pattern_id not in user:
            return "builtin"
        return "api" if pattern_id in rt.api_patterns else "file"

    return [
        {
            **p.model_dump(mode="json"),
            "builtin": p.id in builtin and p.id not in user,
            "source": source(p.id),
        }
        for p in effective_patterns(config.patterns, builtin=config.builtin_patterns)
    ]


async def list_patterns(request: Request, rt: Runtime, who: Principal) -> Response:
    """The effective failure patterns, in matching order, built-ins marked."""
    return ok(
        PatternsResponse,
        {
            "version": rt.config_version,
            "builtin_patterns": rt.config.builtin_patterns,
            "patterns": patterns_json(rt),
        },
    )


# -- detailed health ---------------------------------------------------------------------------


def _status(rt: Runtime, name: str) -> tuple[str, str]:
    from remediator.redaction import redact_text

    result = rt.monitor.status(name)
    if result is None:
        return "unknown", ""
    return ("up" if result.healthy else "down"), redact_text(result.detail)


async def health_detail(rt: Runtime, *, store_up: bool) -> dict[str, Any]:
    """Per-component health for viewers and admins."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    engines: dict[str, list[dict[str, Any]]] = {}
    for target in rt.config.targets:
        status, detail = _status(rt, target.name)
        entry = {"target": target.name, "type": target.type, "status": status, "detail": detail}
        host = getattr(target, "docker_host", None)
        if target.type in ("docker_container", "docker_service"):
            engines.setdefault(configdoc.redact_document(host or "default"), []).append(entry)
        else:
            by_type.setdefault(target.type, []).append(entry)
    docker = []
    for host, entries in sorted(engines.items()):
        states = {e["status"] for e in entries}
        status = "up" if "up" in states else ("down" if "down" in states else "unknown")
        docker.append({"host": host, "status": status, "targets": entries})
    notes = rt.config.notifications
    notifiers = [
        {"channel": kind.channel, "name": name}
        for kind in configured_channels(notes)
        for name in kind.names(section(notes, kind))
    ]
    schema_version: int | None = None
    pending: int | None = None
    paused = False
    counts = {"closed": 0, "half_open": 0, "open": 0}
    if store_up:
        try:
            schema_version = await rt.store.schema_version()
            pending = await rt.store.pending_count()
            paused = (await rt.store.flag(PAUSE_FLAG)) == "1"
            for b in await registered_breakers(rt):
                counts[b.state.replace("-", "_")] += 1
        except StoreUnavailable:
            store_up = False
    answer: dict[str, Any] = {
        "version": __version__,
        "config_version": rt.config_version,
        "paused": paused,
        "uptime_seconds": max(rt.clock.now() - rt.started_at, 0.0),
        "store": {
            "status": "up" if store_up else "down",
            "backend": rt.config.store.url.split(":", 1)[0],
            "schema_version": schema_version,
        },
        "docker": docker,
        **{
            kind: by_type.get(kind, [])
            for kind in ("redis", "postgres", "http", "process", "ssh_host")
        },
        "notifiers": notifiers,
        "workers": {"alive": rt.worker.alive, "inbox_pending": pending},
        "breakers": counts,
    }
    return HealthDetail.model_validate(answer).model_dump(mode="json")
