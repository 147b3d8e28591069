"""The webhook's fast path: ``POST /api/v1/recovery/alerts`` answered in pure ASGI.

Alertmanager posts every notification here, so this path skips what a Starlette route costs per
request (the middleware stack, routing, Request and Response objects) and calls
:func:`remediator.http.intake.accept`, the one implementation of the webhook, with the header values
and the body read straight from ``receive``. Everything else — other methods on the same path
(Starlette's 405), other paths, the lifespan, a request before the runtime exists — goes to the
Starlette app unchanged, whose route for the path (the same ``accept``) stays in the route table
that also builds the OpenAPI document.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from remediator.http.endpoints import PREFIX
from remediator.http.intake import accept
from remediator.runtime import Runtime

ALERTS_PATH = f"{PREFIX}/alerts"
_CONTENT_TYPE = (b"content-type", b"application/json")


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
    # Header names are lower-case bytes in ASGI; as Starlette's ``headers.get``, the first wins.
    for name, value in scope["headers"]:
        if name == b"authorization":
            if authorization is None:
                authorization = value.decode("latin-1")
        elif name == b"content-length" and declared is None:
            declared = value.decode("latin-1")
    peer = scope.get("client")
    reply = await accept(rt, authorization, declared, receive, client=peer[0] if peer else None)
    headers = [(b"content-length", b"%d" % len(reply.body)), _CONTENT_TYPE]
    if reply.headers:  # first, as Starlette's Response puts them
        headers[:0] = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items()
        ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})
