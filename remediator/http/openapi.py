"""The OpenAPI 3.1 document, built from the route table and the handlers' own pydantic models.

Schemas come from ``model_json_schema`` (requests in validation mode, answers in serialization
mode) and live under ``components/schemas``. Two adjustments keep the document honest about what
the server accepts: durations accept a number of seconds or a string like ``5m``, and the
Alertmanager payload is parsed leniently (as the intake always has: timestamps may be numbers,
``truncatedAlerts`` may be a numeric string).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, models_json_schema
from pydantic_core import core_schema
from starlette.requests import Request
from starlette.responses import Response

from remediator import __version__
from remediator.config.durations import parse_duration
from remediator.http.ratelimit import DEFAULT_BURST, DEFAULT_RATE
from remediator.http.schemas import ErrorResponse

Access = Literal["public", "optional", "intake", "read", "approve", "admin"]
Endpoint = Callable[[Request], Awaitable[Response]]
REF = "#/components/schemas/{model}"
DURATION_PATTERN = r"^\s*([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+\s*$"

ERRORS: dict[int, tuple[str, str]] = {
    400: ("The body is not valid JSON", "MALFORMED_JSON"),
    401: ("No or invalid credentials", "UNAUTHORIZED"),
    403: ("The token's role may not do this", "FORBIDDEN"),
    404: (
        "Unknown target, playbook or pattern, or a target not quarantined",
        "SERVICE_NOT_FOUND, PLAYBOOK_NOT_FOUND, PATTERN_NOT_FOUND, NOT_QUARANTINED",
    ),
    409: (
        "Refused by a guard or a conflict",
        "CIRCUIT_OPEN, COOLDOWN, PAUSED, QUARANTINED, BLAST_RADIUS, MAX_PER_WINDOW, "
        "PATTERN_EXISTS, PATTERN_BUILTIN, NO_CONFIG_FILE",
    ),
    410: ("An approval email's single-use link was used already", "LINK_USED"),
    413: ("The body is too large (server.max_body_bytes)", "PAYLOAD_TOO_LARGE"),
    422: ("Invalid request; `details` names each field", "VALIDATION_FAILED"),
    429: (
        f"Rate limited: {DEFAULT_RATE:g} requests/s, burst {DEFAULT_BURST}, per token; or the "
        "address failed authentication too often (auth.throttle)",
        "RATE_LIMITED",
    ),
    503: ("The store is unavailable or remediator is shutting down; retry", "STORE_UNAVAILABLE"),
}


@dataclass(frozen=True)
class Param:
    name: str
    location: Literal["query", "path"]
    schema: dict[str, Any]
    description: str
    required: bool = False


@dataclass(frozen=True)
class Operation:
    """One row of the route table: how to route it, and how to document it."""

    method: str
    path: str  # as documented: /api/v1/recovery/circuit-breakers/{service}/reset
    handler: Endpoint
    summary: str
    access: Access
    tag: str
    response: type[BaseModel] | None = None
    status: int = 200
    request: type[BaseModel] | None = None
    request_any: tuple[type[BaseModel], ...] = ()  # instead of ``request``: any of these
    request_required: bool = True
    params: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()
    limited: bool = False
    route: str | None = None  # the Starlette path when it differs ({service:path})
    media_type: str = "application/json"
    response_schema: dict[str, Any] | None = None  # instead of ``response``
    also: dict[int, str] = field(default_factory=dict)  # more answers with the same model
    name: str = ""  # the operationId, when not the handler's name

    @property
    def operation_id(self) -> str:
        return self.name or getattr(self.handler, "__name__", "operation").strip("_")


class _Schemas(GenerateJsonSchema):
    """pydantic's generator, with durations documented as what they accept."""

    def function_before_schema(
        self, schema: core_schema.BeforeValidatorFunctionSchema
    ) -> dict[str, Any]:
        function = schema.get("function", {}).get("function")
        if function is parse_duration and self.mode == "validation":
            return {
                "anyOf": [
                    {"type": "number", "minimum": 0},
                    {"type": "string", "pattern": DURATION_PATTERN},
                ],
                "description": "seconds, or a duration such as 30s, 5m, 1h30m, 250ms",
            }
        return super().function_before_schema(schema)


def _lenient_intake(defs: dict[str, Any]) -> None:
    """The intake parses Alertmanager's payload leniently; say so."""
    time = {"anyOf": [{"type": "string"}, {"type": "number"}], "description": "RFC 3339"}
    for name, schema in defs.items():
        props = schema.get("properties", {})
        if name.startswith("Alert") and "startsAt" in props:
            props["startsAt"] = {**time, "title": "Startsat"}
            props["endsAt"] = {"anyOf": [*time["anyOf"], {"type": "null"}], "default": None}
        if name.startswith("WebhookPayload") and "truncatedAlerts" in props:
            props["truncatedAlerts"] = {
                "anyOf": [
                    {"type": "integer", "minimum": 0},
                    {"type": "string"},
                    {"type": "boolean"},
                ],
                "default": 0,
                "description": "alerts left out by Alertmanager's max_alerts",
            }


def _security(access: Access) -> list[dict[str, list[str]]]:
    schemes: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"basicAuth": []}]
    if access == "public":
        return []
    if access == "optional":
        return [{}, *schemes]
    return schemes


def _error(status: int, schema: dict[str, Any]) -> dict[str, Any]:
    text, codes = ERRORS[status]
    answer: dict[str, Any] = {
        "description": f"{text} ({codes})",
        "content": {"application/json": {"schema": schema}},
    }
    if status == 429:
        answer["headers"] = {
            "Retry-After": {
                "description": "Seconds until a request will be accepted",
                "schema": {"type": "integer", "minimum": 1},
            }
        }
    return answer


def build(operations: Sequence[Operation]) -> dict[str, Any]:
    """The OpenAPI document of ``operations``."""
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorResponse, "serialization")]
    for op in operations:
        for model in (op.request, *op.request_any):
            if model is not None:
                wanted.append((model, "validation"))
        if op.response is not None:
            wanted.append((op.response, "serialization"))
    unique = list(dict.fromkeys(wanted))
    refs, top = models_json_schema(
        unique, by_alias=True, ref_template=REF, schema_generator=_Schemas
    )
    defs: dict[str, Any] = top.get("$defs", {})
    _lenient_intake(defs)

    ids = [op.operation_id for op in operations]
    if len(set(ids)) != len(ids):
        raise ValueError(f"operationIds must be unique: {sorted(ids)}")
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        entry: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": [op.tag],
            "security": _security(op.access),
            "responses": {},
        }
        if op.handler.__doc__:
            entry["description"] = " ".join(op.handler.__doc__.split())
        if op.params:
            entry["parameters"] = [
                {
                    "name": p.name,
                    "in": p.location,
                    "required": p.required or p.location == "path",
                    "description": p.description,
                    "schema": p.schema,
                }
                for p in op.params
            ]
        body: dict[str, Any] | None = None
        if op.request is not None:
            body = refs[(op.request, "validation")]
        elif op.request_any:
            body = {"anyOf": [refs[(m, "validation")] for m in op.request_any]}
        if body is not None:
            entry["requestBody"] = {
                "required": op.request_required,
                "content": {"application/json": {"schema": body}},
            }
        answer = op.response_schema
        if op.response is not None:
            answer = refs[(op.response, "serialization")]
        success = {"description": "OK", "content": {op.media_type: {"schema": answer or {}}}}
        entry["responses"][str(op.status)] = success
        for status, description in op.also.items():
            entry["responses"][str(status)] = {**success, "description": description}
        errors = set(op.errors)
        if op.access in ("intake", "read", "approve", "admin"):
            errors |= {401, 403}
        if op.limited or op.access != "public":  # auth.throttle applies wherever a token is read
            errors.add(429)
        if body is not None:
            errors |= {400, 413, 422}
        for status in sorted(errors):
            error = refs[(ErrorResponse, "serialization")]
            entry["responses"].setdefault(str(status), _error(status, error))
        paths.setdefault(op.path, {})[op.method.lower()] = entry

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "remediator",
            "version": __version__,
            "description": "Alertmanager webhooks in; safe, audited recovery actions out. "
            'Errors are {"error": {"code", "message", "details"?}}.',
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": defs,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer"},
                "basicAuth": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "Any user name, the token as the password (Alertmanager's "
                    "basic_auth)",
                },
            },
        },
    }
