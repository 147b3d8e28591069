"""What every console page shares: the templates, the security headers, and the signed-in caller.

Every page is authorised exactly as the API: the session's token goes through
:func:`remediator.http.web.authorize` with the capability the matching API endpoint needs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from remediator.clock import iso
from remediator.config.auth import Capability, Principal
from remediator.errors import RequestError, Unauthorized
from remediator.http.console.session import COOKIE, Session, Sessions
from remediator.http.web import authorize, client_host, read_body, runtime
from remediator.runtime import Runtime

ROOT = "/console"
HERE = Path(__file__).parent
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def link(url: str | None) -> str | None:
    """``url`` if it may be rendered as a link (http or https only), else None."""
    if not url:
        return None
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return None
    return url if scheme in ("http", "https") else None


DETAIL_CHARS = 200


def details(values: object) -> list[tuple[str, str]]:
    """An event's details as (key, value) pairs for the timeline, each value cut to
    ``DETAIL_CHARS``; the template escapes both (alert text is attacker-controlled)."""
    if not isinstance(values, dict):
        return []
    pairs = []
    for key, value in sorted(values.items(), key=lambda kv: str(kv[0])):
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        if len(text) > DETAIL_CHARS:
            text = text[:DETAIL_CHARS] + "…"
        pairs.append((str(key), text))
    return pairs


def alertmanager_filter(alertname: str | None) -> str:
    """The Alertmanager UI's alert list narrowed to one alertname (URL-encoded matcher)."""
    if not alertname:
        return "/#/alerts"
    escaped = alertname.replace("\\", "\\\\").replace('"', '\\"')
    matcher = '{alertname="' + escaped + '"}'
    return "/#/alerts?filter=" + quote(matcher, safe="")


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    env.filters["link"] = link
    env.filters["iso"] = iso
    env.filters["hms"] = hms
    env.filters["details"] = details
    env.filters["am_filter"] = alertmanager_filter
    return env


def hms(ts: float) -> str:
    """``HH:MM:SS`` of a Unix time, in UTC."""
    return time.strftime("%H:%M:%S", time.gmtime(ts))


@dataclass(frozen=True)
class Caller:
    """A signed-in caller: who, their session (its CSRF token), and what they may do."""

    who: Principal
    session: Session

    @property
    def may_approve(self) -> bool:
        return self.who.may("approve")

    @property
    def may_admin(self) -> bool:
        return self.who.may("admin")


class Pages:
    """Rendering and sign-in state for one app."""

    def __init__(self, sessions: Sessions | None = None) -> None:
        self.sessions = sessions or Sessions()
        self.env = environment()

    def render(
        self, name: str, context: dict[str, Any], *, status: int = 200, caller: Caller | None = None
    ) -> Response:
        body = self.env.get_template(name).render(root=ROOT, caller=caller, **context)
        return HTMLResponse(body, status, headers=HEADERS)

    def caller(self, request: Request, capability: Capability) -> Caller | Response:
        """The signed-in caller allowed ``capability``; else a redirect to sign in (no or stale
        session, revoked token) or a 403/429 page."""
        session = self.sessions.find(request.cookies.get(COOKIE))
        if session is None:
            return RedirectResponse(f"{ROOT}/login", 303, headers=HEADERS)
        rt = runtime(request)
        try:
            who = authorize(rt, f"Bearer {session.token}", capability, client_host(request))
        except Unauthorized:
            return RedirectResponse(f"{ROOT}/login", 303, headers=HEADERS)
        except RequestError as exc:
            return self.problem(exc)
        return Caller(who=who, session=session)

    def problem(self, exc: RequestError, caller: Caller | None = None) -> Response:
        return self.render(
            "problem.html",
            {"code": exc.code, "message": exc.message},
            status=exc.status,
            caller=caller,
        )


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (capped like every body); the first value
    of each field."""
    body = await read_body(request, runtime(request).config.server.max_body_bytes)
    form: dict[str, str] = {}
    try:
        fields = parse_qsl(body.decode("utf-8", "replace"), max_num_fields=20)
    except ValueError:  # more fields than any console form has: nothing, so its CSRF check fails
        return form
    for name, value in fields:
        form.setdefault(name, value)
    return form


def rt_of(request: Request) -> Runtime:
    return runtime(request)
