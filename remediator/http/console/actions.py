"""The console's actions: approve/deny, reset a breaker, lift a quarantine, pause/resume.

Each is a POST carrying the session's CSRF token. Without ``confirm=yes`` it answers a
confirmation page holding the same form; with it, it calls the code the API endpoint calls
(remediator/http/approvals.py, admin.py), recorded with the caller's token name as actor.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from remediator.config.auth import Capability
from remediator.engine.approvals import Decider
from remediator.errors import RequestError, SchemaViolation, ValidationFailed
from remediator.http import admin
from remediator.http.approvals import DecisionRequest
from remediator.http.console.page import HEADERS, ROOT, Caller, Pages, read_form, rt_of
from remediator.http.console.session import csrf_ok

MAX_REASON = 500
Act = Callable[[Request, Caller, str], Awaitable[None]]


def _reason(form: dict[str, str], *, required: bool = False) -> str:
    reason = str(form.get("reason") or "").strip()
    if len(reason) > MAX_REASON:
        raise ValidationFailed([f"reason: at most {MAX_REASON} characters"])
    if required and not reason:
        raise ValidationFailed(["reason: required"])
    return reason


async def perform(
    pages: Pages, request: Request, *, capability: Capability, title: str, act: Act,
    reason_required: bool = False,
) -> Response:  # fmt: skip
    """Authorise, check the CSRF token, confirm, then ``act`` and go back to where it came from."""
    caller = pages.caller(request, capability)
    if isinstance(caller, Response):
        return caller
    form = await read_form(request)
    if not csrf_ok(caller.session, str(form.get("csrf") or "")):
        return pages.render(
            "problem.html",
            {"code": "CSRF", "message": "the form's CSRF token is missing or wrong"},
            status=403,
            caller=caller,
        )
    try:
        reason = _reason(form, required=reason_required and form.get("confirm") == "yes")
        if form.get("confirm") != "yes":
            context = {"title": title, "action": request.url.path, "reason": reason,
                       "reason_required": reason_required}  # fmt: skip
            return pages.render("confirm.html", context, caller=caller)
        await act(request, caller, reason)
    except RequestError as exc:
        return pages.problem(exc, caller)
    return RedirectResponse(f"{ROOT}/", 303, headers=HEADERS)


def _approval_id(request: Request) -> int:
    raw = str(request.path_params.get("id", ""))
    if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) < 2**62:
        raise SchemaViolation("id: an approval id (a positive integer)")
    return int(raw)


async def decide(pages: Pages, request: Request, *, approve: bool) -> Response:
    async def act(request: Request, caller: Caller, reason: str) -> None:
        who = caller.who
        by = Decider(who.name, DecisionRequest().channel, admin=who.role == "admin")
        await rt_of(request).engine.approvals.decide(
            _approval_id(request), approve=approve, by=by, reason=reason
        )

    verb = "Approve" if approve else "Deny"
    title = f"{verb} approval {request.path_params.get('id', '')}"
    return await perform(pages, request, capability="approve", title=title, act=act)


async def approve(pages: Pages, request: Request) -> Response:
    return await decide(pages, request, approve=True)


async def deny(pages: Pages, request: Request) -> Response:
    return await decide(pages, request, approve=False)


async def reset_breaker(pages: Pages, request: Request) -> Response:
    async def act(request: Request, caller: Caller, reason: str) -> None:
        await admin.reset_breaker(request, rt_of(request), caller.who)

    title = f"Reset the circuit breaker of {request.path_params['service']}"
    return await perform(pages, request, capability="admin", title=title, act=act)


async def lift_quarantine(pages: Pages, request: Request) -> Response:
    async def act(request: Request, caller: Caller, reason: str) -> None:
        name = request.path_params["target"]
        await admin.lift(rt_of(request), name, actor=caller.who.name, reason=reason)

    title = f"Lift the quarantine of {request.path_params['target']}"
    return await perform(
        pages, request, capability="admin", title=title, act=act, reason_required=True
    )


async def pause(pages: Pages, request: Request) -> Response:
    async def act(request: Request, caller: Caller, reason: str) -> None:
        await admin.switch(rt_of(request), caller.who, paused=True, reason=reason)

    return await perform(
        pages, request, capability="admin", title="Pause all automatic recovery", act=act
    )


async def resume(pages: Pages, request: Request) -> Response:
    async def act(request: Request, caller: Caller, reason: str) -> None:
        await admin.switch(rt_of(request), caller.who, paused=False, reason=reason)

    return await perform(
        pages, request, capability="admin", title="Resume automatic recovery", act=act
    )
