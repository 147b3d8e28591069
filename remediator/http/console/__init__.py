"""The console at ``/console/``: server-rendered pages over the API's own code paths
(docs/console.md)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from remediator.http.console import actions, views
from remediator.http.console.page import HERE, ROOT, Pages
from remediator.http.console.session import Sessions

View = Callable[[Pages, Request], Awaitable[Response]]
# (method, path under /console, view): also the table docs/api.md and tests/test_roles.py list.
PAGES: tuple[tuple[str, str, View], ...] = (
    ("GET", "/", views.now),
    ("GET", "/login", views.login_form),
    ("POST", "/login", views.login),
    ("POST", "/logout", views.logout),
    ("GET", "/history", views.history),
    ("GET", "/targets", views.targets),
    ("GET", "/incidents/{fingerprint:path}", views.incident),
    ("POST", "/approvals/{id}/approve", actions.approve),
    ("POST", "/approvals/{id}/deny", actions.deny),
    ("POST", "/breakers/{service}/reset", actions.reset_breaker),
    ("POST", "/quarantine/{target}/lift", actions.lift_quarantine),
    ("POST", "/pause", actions.pause),
    ("POST", "/resume", actions.resume),
)


async def _to_console(request: Request) -> Response:
    return RedirectResponse(f"{ROOT}/", 307)


def routes(sessions: Sessions | None = None) -> list[BaseRoute]:
    """The console's routes, sharing one set of sessions (a signing key per process)."""
    pages = Pages(sessions)
    table: list[BaseRoute] = [
        Route(ROOT + path, functools.partial(view, pages), methods=[method])
        for method, path, view in PAGES
    ]
    return [
        Route(ROOT, _to_console, methods=["GET"]),
        *table,
        Mount(ROOT + "/static", StaticFiles(directory=HERE / "static"), name="console-static"),
    ]
