"""What every HTTP handler shares: the runtime, auth, capped body reading, JSON errors."""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from remediator.auth import Capability, Principal
from remediator.errors import (
    BodyTooLarge,
    Forbidden,
    RateLimited,
    RequestError,
    Unauthorized,
)
from remediator.runtime import Runtime

log = logging.getLogger("remediator.http")
ANONYMOUS = Principal("anonymous", "admin")


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.state.runtime
    return rt


def principal(request: Request) -> Principal | None:
    """Who is calling, or None. With auth disabled (``--insecure-no-auth``), everyone is admin."""
    rt = runtime(request)
    if not rt.authenticator.enabled:
        return ANONYMOUS
    return rt.authenticator.from_header(request.headers.get("authorization"))


def require(request: Request, capability: Capability) -> Principal:
    """The caller, if allowed ``capability``; else 401 (no/wrong credentials) or 403 (role)."""
    who = principal(request)
    if who is None:
        raise Unauthorized("missing or invalid credentials")
    if not who.may(capability):
        raise Forbidden(f"role {who.role!r} may not do this")
    return who


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing with 413 as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def error_response(exc: RequestError) -> JSONResponse:
    headers = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="remediator"'
    return JSONResponse(
        {"error": {"code": exc.code, "message": exc.message}}, exc.status, headers=headers
    )


def internal_error() -> JSONResponse:
    return JSONResponse(
        {"error": {"code": "INTERNAL", "message": "internal error; see the server log"}}, 500
    )


def json_response(data: Any, status: int = 200) -> Response:
    return JSONResponse(data, status)
