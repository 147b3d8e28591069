"""The route table: every endpoint once, used both to route requests and to document them.

Roles: ``public`` needs no token; ``optional`` answers more with a viewer/admin token;
``intake`` is the alertmanager (or admin) role; ``read`` viewer or admin; ``admin`` admin only.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel
from starlette.datastructures import URLPath
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, NoMatchFound, Route
from starlette.types import Receive, Scope, Send

from remediator.alerts import WebhookPayload
from remediator.config.auth import Capability
from remediator.config.model import Config
from remediator.config.patterns import PatternSpec
from remediator.errors import MethodNotAllowed, RequestError
from remediator.errors import NotFound as NotFoundError
from remediator.http import admin, api, intake, management, openapi, poisoned, probes, target_views
from remediator.http import approvals as approval_views
from remediator.http.approval_links import email_confirm, email_decide
from remediator.http.openapi import Operation, Param
from remediator.http.schemas import (
    BreakerReset,
    BreakersResponse,
    ConfigurationApplied,
    ConfigurationResponse,
    DryRunRequest,
    DryRunResponse,
    EventsResponse,
    HealthResponse,
    IntakeResponse,
    LiftRequest,
    PatternAdded,
    PatternDeleted,
    PatternsResponse,
    PauseRequest,
    PauseState,
    PoisonedResponse,
    ProbeResponse,
    QuarantineLifted,
    QuarantineResponse,
    StatisticsResponse,
    TargetResponse,
    TriggerRequest,
    TriggerResponse,
)
from remediator.http.web import PREFIX, error_response


async def openapi_json(request: Request) -> Response:
    """This document."""
    return JSONResponse(document())


def _text(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


def _or_empty(schema: dict[str, Any]) -> dict[str, Any]:
    """An integer parameter; given empty (``limit=``), it takes its default."""
    return {"anyOf": [schema, {"type": "string", "maxLength": 0}]}


_TIME = "RFC 3339, or Unix seconds"
EVENT_PARAMS = (
    Param("type", "query", {"type": "string"}, "Event type, e.g. recovery:action"),
    Param("target", "query", {"type": "string"}, "Target name"),
    Param("severity", "query", {"type": "string"}, "low, medium, high, critical, info"),
    Param("fingerprint", "query", {"type": "string"}, "Alert fingerprint (or manual-...)"),
    Param("since", "query", _text(_TIME), "Events at or after this time"),
    Param("until", "query", _text(_TIME), "Events at or before this time"),
    Param(
        "before",
        "query",
        _or_empty({"type": "integer", "minimum": 1, "maximum": 2**62}),
        "Only events with a smaller id (paging: the previous answer's next_before)",
    ),
    Param(
        "limit",
        "query",
        _or_empty({"type": "integer", "minimum": 1, "maximum": api.MAX_LIMIT}),
        "At most this many events (default 100)",
    ),
)
_NAME = {"type": "string", "minLength": 1}


def managed(
    method: str,
    path: str,
    handler: management.Handler,
    summary: str,
    access: Capability,
    response: type[BaseModel],
    **more: Any,
) -> Operation:
    """A management endpoint: ``access`` both guards the handler and documents it."""
    wrapped = management.endpoint(access, handler)
    return Operation(method, path, wrapped, summary, access, access, response, limited=True, **more)


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "POST", f"{PREFIX}/alerts", intake.receive, "Alertmanager webhook (never rate limited)",
        "intake", "intake", IntakeResponse, request=WebhookPayload, errors=(503,),
    ),
    Operation(
        "GET", f"{PREFIX}/health", api.health, "Health: minimal without a token, detailed with one",
        "optional", "public", HealthResponse, also={503: "Unhealthy or draining"},
    ),
    Operation(
        "GET", f"{PREFIX}/events", api.events, "Recorded events, newest first", "read", "read",
        EventsResponse, params=EVENT_PARAMS, errors=(422, 503), limited=True,
    ),
    managed(
        "GET", f"{PREFIX}/circuit-breakers", management.breakers,
        "Every registered target's circuit breaker", "read", BreakersResponse, errors=(503,),
    ),
    managed(
        "GET", f"{PREFIX}/statistics", management.statistics_, "Recovery statistics", "read",
        StatisticsResponse, errors=(422, 503),
        params=(Param("window", "query", _text("e.g. 1h, 7d; default 24h"), "The window"),),
    ),
    managed(
        "POST", f"{PREFIX}/circuit-breakers/{{service}}/reset", admin.reset_breaker,
        "Reset a target's circuit breaker", "admin", BreakerReset, errors=(404, 503),
        route=f"{PREFIX}/circuit-breakers/{{service:path}}/reset",
        params=(Param("service", "path", _NAME, "A registered target"),),
    ),
    managed(
        "GET", f"{PREFIX}/targets/{{name}}", target_views.get_target,
        "A target: health, circuit breaker, quarantine, active endpoint", "read", TargetResponse,
        errors=(404, 503), route=f"{PREFIX}/targets/{{name:path}}",
        params=(Param("name", "path", _NAME, "A registered target"),),
    ),
    managed(
        "GET", f"{PREFIX}/alerts/poisoned", poisoned.list_poisoned,
        "Stored alerts quarantined after worker.max_attempts claims (newest 100)", "read",
        PoisonedResponse, errors=(503,),
    ),
    managed(
        "GET", f"{PREFIX}/quarantine", target_views.list_quarantine, "The quarantined targets",
        "read", QuarantineResponse, errors=(503,),
    ),
    managed(
        "DELETE", f"{PREFIX}/quarantine/{{target}}", admin.lift_quarantine,
        "Lift a target's quarantine", "admin", QuarantineLifted, request=LiftRequest,
        errors=(404, 422, 503), route=f"{PREFIX}/quarantine/{{target:path}}",
        params=(Param("target", "path", _NAME, "A quarantined target"),),
    ),
    managed(
        "POST", f"{PREFIX}/trigger", admin.trigger, "Run a playbook or action now", "admin",
        TriggerResponse, request=TriggerRequest, errors=(404, 409, 503),
    ),
    managed(
        "POST", f"{PREFIX}/test", admin.dry_run, "Dry run: the decision trace", "admin",
        DryRunResponse, request_any=(WebhookPayload, DryRunRequest),
        errors=(404, 503),
    ),
    managed(
        "GET", f"{PREFIX}/configuration", management.get_configuration,
        "The running configuration (secrets redacted)", "admin", ConfigurationResponse,
    ),
    managed(
        "PUT", f"{PREFIX}/configuration", admin.put_configuration,
        "Replace the configuration without a restart", "admin", ConfigurationApplied,
        request=Config, errors=(409, 503),
    ),
    managed(
        "GET", f"{PREFIX}/patterns", management.list_patterns, "The effective failure patterns",
        "admin", PatternsResponse,
    ),
    managed(
        "POST", f"{PREFIX}/patterns", admin.add_pattern, "Add a failure pattern", "admin",
        PatternAdded, status=201, request=PatternSpec, errors=(409, 503),
    ),
    managed(
        "DELETE", f"{PREFIX}/patterns", admin.delete_pattern, "Delete a user pattern (?id=)",
        "admin", PatternDeleted, errors=(404, 409, 422, 503),
        params=(Param("id", "query", _NAME, "The pattern's id", required=True),),
        name="delete_pattern_by_query",
    ),
    managed(
        "DELETE", f"{PREFIX}/patterns/{{id}}", admin.delete_pattern, "Delete a user pattern",
        "admin", PatternDeleted, errors=(404, 409, 422, 503),
        route=f"{PREFIX}/patterns/{{id:path}}",
        params=(Param("id", "path", _NAME, "The pattern's id"),),
    ),
    managed(
        "POST", f"{PREFIX}/pause", admin.pause, "Pause all automatic recovery", "admin",
        PauseState, request=PauseRequest, request_required=False, errors=(503,),
    ),
    managed(
        "POST", f"{PREFIX}/resume", admin.resume, "Resume automatic recovery", "admin",
        PauseState, request=PauseRequest, request_required=False, errors=(503,),
    ),
    managed(
        "GET", f"{PREFIX}/approvals", approval_views.list_approvals,
        "Approvals: remediations waiting for a person, and decisions (?state=open)", "read",
        approval_views.ApprovalsResponse, errors=(422, 503),
        params=(Param("state", "query", _or_empty({"type": "string", "enum": list(approval_views.STATES)}), "Only approvals in this state"),),
    ),
    managed(
        "POST", f"{PREFIX}/approvals/{{id}}/approve", approval_views.approve,
        "Approve a waiting remediation (guards checked again)", "approve",
        approval_views.DecisionResponse, request=approval_views.DecisionRequest,
        request_required=False, errors=(404, 409, 422, 503),
        params=(Param("id", "path", {"type": "integer", "minimum": 1}, "The approval's id"),),
    ),
    managed(
        "POST", f"{PREFIX}/approvals/{{id}}/deny", approval_views.deny,
        "Deny a waiting remediation", "approve", approval_views.DecisionResponse,
        request=approval_views.DecisionRequest, request_required=False,
        errors=(404, 409, 422, 503),
        params=(Param("id", "path", {"type": "integer", "minimum": 1}, "The approval's id"),),
    ),
    Operation(
        "POST", f"{PREFIX}/slack/interactions", approval_views.slack_interactions,
        "Slack interactivity: Approve/Deny buttons (Slack-signed, no token)", "public", "public",
        response_schema={"type": "object"}, errors=(401, 403, 404, 409, 422),
    ),
    Operation(
        "GET", f"{PREFIX}/approvals/{{id}}/email/{{decision}}", email_confirm,
        "An approval email's link: a page asking to confirm (signed link, no token)", "public",
        "public", media_type="text/html", response_schema={"type": "string"},
        errors=(401, 404, 409),
        params=(Param("id", "path", {"type": "integer", "minimum": 1}, "The approval's id"),
                Param("decision", "path", {"type": "string", "enum": ["approve", "deny"]}, "approve or deny"),
                Param("token", "query", {"type": "string"}, "The link's signed token")),
    ),
    Operation(
        "POST", f"{PREFIX}/approvals/{{id}}/email/{{decision}}", email_decide,
        "An approval email's confirm button: decide once (signed link, no token)", "public",
        "public", media_type="text/html", response_schema={"type": "string"},
        errors=(401, 403, 404, 409, 410, 413),
        params=(Param("id", "path", {"type": "integer", "minimum": 1}, "The approval's id"),
                Param("decision", "path", {"type": "string", "enum": ["approve", "deny"]}, "approve or deny")),
    ),
    Operation(
        "GET", f"{PREFIX}/openapi.json", openapi_json, "This OpenAPI document", "public",
        "public", response_schema={"type": "object"},
    ),
    Operation(
        "GET", "/metrics", api.metrics, "Prometheus metrics", "public", "public",
        media_type="text/plain", response_schema={"type": "string"},
    ),
    Operation(
        "GET", "/-/healthy", probes.healthy, "Liveness: 200 while the process serves",
        "public", "public", ProbeResponse,
    ),
    Operation(
        "GET", "/-/ready", probes.ready,
        "Readiness: 200 once started and while the store answers", "public", "public",
        ProbeResponse, also={503: "Starting, draining or the store is unavailable"},
    ),
    managed(
        "POST", "/-/reload", probes.reload_configuration,
        "Read the configuration file again (as SIGHUP)", "admin", ConfigurationApplied,
        errors=(409, 422, 503),
    ),
)  # fmt: skip


@functools.cache
def document() -> dict[str, Any]:
    return openapi.build(OPERATIONS)


class NotFound(BaseRoute):
    """Last in the table: what no route matches is a JSON 404 (paths with a newline included,
    which Starlette's path patterns never match). A known path with another method still gets
    Starlette's 405: a route that matches the path wins over this one."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        return (Match.PARTIAL if scope["type"] == "http" else Match.NONE), {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = management.problem(
            NotFoundError("no such endpoint; see /api/v1/recovery/openapi.json")
        )
        await answer(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NoMatchFound(name, path_params)


def allowed_methods(request: Request) -> str:
    """Every method some route answers on this path (Starlette's own ``Allow`` names only the
    first route's, though GET and PUT /configuration are two)."""
    methods: set[str] = set()
    for route in request.app.routes:
        matched = isinstance(route, Route) and route.matches(request.scope)[0] != Match.NONE
        if matched and route.methods:
            methods |= route.methods
    return ", ".join(sorted(methods))


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405 (registered for those two) in the API's error format: a known
    path asked with another method is a JSON 405 with ``Allow``."""
    assert isinstance(exc, HTTPException)
    error: RequestError
    if exc.status_code == 405:
        allow = allowed_methods(request)
        error = MethodNotAllowed(f"{request.method} is not allowed here; use {allow}", allow=allow)
    else:
        error = NotFoundError("no such endpoint; see /api/v1/recovery/openapi.json")
    return error_response(error)


def routes() -> list[BaseRoute]:
    table: list[BaseRoute] = [
        Route(op.route or op.path, op.handler, methods=[op.method]) for op in OPERATIONS
    ]
    return [*table, NotFound()]
