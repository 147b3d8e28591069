"""What every HTTP handler shares: the runtime, auth, capped body reading, JSON errors.

The helpers that take plain values (:func:`authorize`, :func:`read_capped`, :func:`encode_json`,
:func:`error_body`) serve both Starlette handlers and the webhook's pure-ASGI fast path
(remediator/http/intake.py), so that both answer alike.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive

from remediator.config.auth import Capability, Principal
from remediator.errors import (
    Backlogged,
    BodyTooLarge,
    Forbidden,
    MethodNotAllowed,
    RateLimited,
    RequestError,
    Unauthorized,
)
from remediator.runtime import Runtime

log = logging.getLogger("remediator.http")
ANONYMOUS = Principal("anonymous", "admin")
JSON = "application/json"
# Every route of the API lives under this path.
PREFIX = "/api/v1/recovery"
CHALLENGE = 'Bearer realm="remediator"'


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.state.runtime
    return rt


def identify(rt: Runtime, authorization: str | None, client: str | None = None) -> Principal | None:
    """Who presents this ``Authorization`` header, or None. With auth disabled
    (``--insecure-no-auth``), everyone is admin. From a ``client`` address throttled for failed
    authentication (remediator/http/throttle.py), 429 unless the token is an alertmanager one."""
    if not rt.authenticator.enabled:
        return ANONYMOUS
    if not authorization:
        return None
    who = rt.authenticator.from_header(authorization)
    wait = rt.throttle.wait(client)
    if wait:
        if who is not None and who.role == "alertmanager":
            return who
        rt.metrics.auth_throttled.inc()
        raise RateLimited(
            "too many failed authentications from this address; retry later", retry_after=wait
        )
    if who is None:
        rt.metrics.auth_failures_invalid.inc()
        rt.throttle.failed(client)
    return who


def authorize(
    rt: Runtime, authorization: str | None, capability: Capability, client: str | None = None
) -> Principal:
    """The caller, if allowed ``capability``; else 401 (no/wrong credentials), 403 (role) or
    429 (``client`` is throttled for failed authentication)."""
    who = identify(rt, authorization, client)
    if who is None:
        if not authorization:
            rt.metrics.auth_failures_missing.inc()
        raise Unauthorized("missing or invalid credentials")
    if not who.may(capability):
        raise Forbidden(f"role {who.role!r} may not do this")
    return who


def client_host(request: Request) -> str | None:
    """The caller's address (what the throttle of failed authentication is keyed by)."""
    return request.client.host if request.client is not None else None


def principal(request: Request) -> Principal | None:
    """Who is calling, or None. With auth disabled (``--insecure-no-auth``), everyone is admin."""
    return identify(runtime(request), request.headers.get("authorization"), client_host(request))


def require(request: Request, capability: Capability) -> Principal:
    """The caller, if allowed ``capability``; else 401 (no/wrong credentials), 403 (role) or 429
    (its address is throttled for failed authentication)."""
    return authorize(
        runtime(request), request.headers.get("authorization"), capability, client_host(request)
    )


async def read_capped(receive: Receive, declared: str | None, limit: int) -> bytes:
    """The request body, read from the ASGI ``receive``; 413 when its ``Content-Length``
    (``declared``) is over ``limit`` bytes, else as soon as what arrives exceeds it. A client
    that goes away meanwhile raises Starlette's ClientDisconnect, as ``Request.stream()``."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            chunk: bytes = message.get("body", b"")
            more = message.get("more_body", False)
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"body exceeds {limit} bytes")
            if chunk:
                chunks.append(chunk)
        elif kind == "http.disconnect":
            raise ClientDisconnect()
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing with 413 as soon as it exceeds ``limit`` bytes."""
    return await read_capped(request.receive, request.headers.get("content-length"), limit)


def encode_json(data: Any) -> bytes:
    """``data`` as compact UTF-8 JSON, byte for byte what Starlette's JSONResponse sends."""
    return json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def error_body(exc: RequestError) -> bytes:
    return encode_json({"error": {"code": exc.code, "message": exc.message}})


def error_headers(exc: RequestError) -> dict[str, str]:
    headers = {}
    if isinstance(exc, RateLimited | Backlogged):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = CHALLENGE
    if isinstance(exc, MethodNotAllowed):
        headers["Allow"] = exc.allow
    return headers


def error_response(exc: RequestError) -> Response:
    return Response(error_body(exc), exc.status, headers=error_headers(exc), media_type=JSON)


INTERNAL_ERROR = encode_json(
    {"error": {"code": "INTERNAL", "message": "internal error; see the server log"}}
)


def internal_error() -> Response:
    return Response(INTERNAL_ERROR, 500, media_type=JSON)


def json_response(data: Any, status: int = 200) -> Response:
    return Response(encode_json(data), status, media_type=JSON)
