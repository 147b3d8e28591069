"""The console's pages that read: sign-in, Now, History, an incident's timeline, Targets.

They read through the functions the JSON API calls (remediator/http/management.py,
target_views.py, api.py, the store's event query), never their own SQL.
"""

from __future__ import annotations

import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from remediator.clock import iso
from remediator.engine import statistics
from remediator.errors import RequestError, SchemaViolation
from remediator.http.api import _time_param, event_json
from remediator.http.console.page import HEADERS, ROOT, Pages, read_form, rt_of
from remediator.http.console.session import COOKIE, MAX_AGE, csrf_ok
from remediator.http.management import health_detail, registered_breakers, window_param
from remediator.http.target_views import target_json
from remediator.http.web import client_host, identify
from remediator.store import EventQuery

LOGIN_COOKIE = "remediator_console_login"
PAGE = 50
TIMELINE = 1000
RECENT = 5  # events per target on Targets


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


async def login_form(pages: Pages, request: Request) -> Response:
    """The sign-in form; its CSRF token is also set as a short-lived cookie (double submit)."""
    token = secrets.token_urlsafe(24)
    answer = pages.render("login.html", {"csrf": token, "error": ""})
    answer.set_cookie(
        LOGIN_COOKIE, token, max_age=600, path=ROOT, httponly=True,
        samesite="strict", secure=_secure(request),
    )  # fmt: skip
    return answer


async def login(pages: Pages, request: Request) -> Response:
    """Sign in with an API token: a session cookie (HttpOnly, SameSite=Strict, Secure on https)."""
    form = await read_form(request)
    expected = request.cookies.get(LOGIN_COOKIE) or ""
    presented = str(form.get("csrf") or "")
    if not expected or not secrets.compare_digest(expected, presented):
        return pages.render(
            "login.html", {"csrf": expected, "error": "the form expired"}, status=403
        )
    token = str(form.get("token") or "").strip()
    rt = rt_of(request)
    try:
        who = identify(rt, f"Bearer {token}", client_host(request)) if token else None
    except RequestError as exc:
        return pages.problem(exc)
    if who is None or who.role == "alertmanager":
        if token:
            rt.metrics.auth_failures_invalid.inc()
        return pages.render(
            "login.html", {"csrf": expected, "error": "that token is not valid here"}, status=401
        )
    cookie, _ = pages.sessions.open(token)
    answer = RedirectResponse(f"{ROOT}/", 303, headers=HEADERS)
    answer.set_cookie(
        COOKIE, cookie, max_age=MAX_AGE, path=ROOT, httponly=True,
        samesite="strict", secure=_secure(request),
    )  # fmt: skip
    answer.delete_cookie(LOGIN_COOKIE, path=ROOT)
    return answer


async def logout(pages: Pages, request: Request) -> Response:
    session = pages.sessions.find(request.cookies.get(COOKIE))
    form = await read_form(request)
    if session is None or not csrf_ok(session, str(form.get("csrf") or "")):
        return pages.render("problem.html", {"code": "CSRF", "message": "bad form"}, status=403)
    pages.sessions.close(request.cookies.get(COOKIE))
    answer = RedirectResponse(f"{ROOT}/login", 303, headers=HEADERS)
    answer.delete_cookie(COOKIE, path=ROOT)
    return answer


async def now(pages: Pages, request: Request) -> Response:
    """Now: open incidents (firing episodes), open approvals, breakers not closed, quarantined targets, the kill switch, recent
    events, the configuration version."""
    caller = pages.caller(request, "read")
    if isinstance(caller, Response):
        return caller
    rt = rt_of(request)
    detail = await health_detail(rt, store_up=True)
    breakers = [b for b in await registered_breakers(rt) if b.state != "closed"]
    context: dict[str, Any] = {
        "detail": detail,
        "incidents": sorted(await rt.store.open_episodes(), key=lambda e: -e.id)[:PAGE],
        "approvals": await rt.store.approvals(state="open", limit=100),
        "breakers": breakers,
        "quarantined": await rt.store.quarantined_targets(),
        "recent": [event_json(e) for e in await rt.store.events(EventQuery(limit=PAGE))],
        "chain": rt.auditor.status if rt.auditor is not None else None,
    }
    return pages.render("now.html", context, caller=caller)


async def incident(pages: Pages, request: Request) -> Response:
    """One incident's timeline: every event of its fingerprint, oldest first."""
    caller = pages.caller(request, "read")
    if isinstance(caller, Response):
        return caller
    rt = rt_of(request)
    fingerprint = request.path_params["fingerprint"]
    found = await rt.store.events(EventQuery(fingerprint=fingerprint, limit=TIMELINE))
    events = [event_json(e) for e in reversed(found)]
    generator = next((e["details"].get("generator_url") for e in events
                      if e.get("details", {}).get("generator_url")), None)  # fmt: skip
    context = {
        "fingerprint": fingerprint,
        "events": events,
        "generator_url": generator,
        "alertmanager_url": rt.config.alertmanager.url,
        "alertname": next((e.get("alertname") for e in events if e.get("alertname")), None),
    }
    return pages.render("incident.html", context, caller=caller)


async def history(pages: Pages, request: Request) -> Response:
    """Events filtered by target, playbook, outcome and time, with the statistics of
    ``/statistics`` over the window."""
    caller = pages.caller(request, "read")
    if isinstance(caller, Response):
        return caller
    rt = rt_of(request)
    q = request.query_params
    try:
        window = window_param(q.get("window"))
        before = q.get("before") or ""
        if before and not (before.isascii() and before.isdigit()):
            raise SchemaViolation("before: an event id")
        query = EventQuery(
            type=q.get("type") or None,
            target=q.get("target") or None,
            since=_time_param("since", q.get("since")),
            until=_time_param("until", q.get("until")),
            before_id=int(before) if before else None,
            limit=PAGE,
            playbook=q.get("playbook") or None,
            outcome=q.get("outcome") or None,
        )
        found = await rt.store.events(query)
        stats = None
        if q.get("window"):  # asked for: /statistics reads every event of the window
            stats = await statistics.compute(
                rt.store, now=rt.clock.now(), window=window,
                targets=[t.name for t in rt.config.targets],
            )  # fmt: skip
    except RequestError as exc:
        return pages.problem(exc, caller)
    context = {
        "rows": [event_json(e) for e in found],
        "stats": stats,
        "filters": dict(q),
        "next_before": found[-1].id if len(found) == PAGE else None,
        "generated": iso(rt.clock.now()),
    }
    return pages.render("history.html", context, caller=caller)


async def targets(pages: Pages, request: Request) -> Response:
    """Every registered target: health, breaker, quarantine, its latest events."""
    caller = pages.caller(request, "read")
    if isinstance(caller, Response):
        return caller
    rt = rt_of(request)
    rows = []
    for target in rt.config.targets:
        row = await target_json(rt, target)
        recent = await rt.store.events(EventQuery(target=target.name, limit=RECENT))
        row["recent"] = [event_json(e) for e in recent]
        rows.append(row)
    return pages.render("targets.html", {"rows": rows}, caller=caller)
