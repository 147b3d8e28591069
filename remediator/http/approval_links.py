"""Approval emails' links: a confirm page (GET) and the decision (POST), both without a token.

The link in the mail (remediator/engine/notifications.py signs one per approver and decision)
opens ``GET /approvals/{id}/email/{decision}?token=...``: a page that only asks to confirm —
mail scanners follow links, so a GET never changes anything. Its button POSTs the token back;
the POST checks the signature, the approval, the decision and the expiry
(remediator/engine/approval_links.py), records the token as used in the store (a second use is
410 ``LINK_USED`` on every replica, and changes nothing), then decides as the API does, as
``email:<address>`` through channel ``email`` — if that address is still in the playbook's
``approval.emails``.
"""

from __future__ import annotations

import html
import logging
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from remediator.engine.approval_links import DECISIONS, Link
from remediator.engine.approvals import Decider
from remediator.errors import Conflict, LinkUsed, Missing, RequestError, Unauthorized
from remediator.http.management import problem
from remediator.http.web import read_body, runtime
from remediator.runtime import Runtime

log = logging.getLogger("remediator.approvals")
MAX_FORM = 4096
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "X-Frame-Options": "DENY",
}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    text = (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        '<meta name="robots" content="noindex">'
        f"<title>{html.escape(title)}</title></head>"
        f'<body style="font-family:sans-serif;max-width:40em;margin:2em auto">'
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(text, status, headers=_HEADERS)


def _refused(exc: RequestError) -> Response:
    """A refusal, as every endpoint answers one (``{"error": {"code", "message"}}``)."""
    answer = problem(exc)
    answer.headers.update(_HEADERS)
    return answer


def _where(request: Request) -> tuple[int, str]:
    raw = str(request.path_params.get("id", ""))
    decision = str(request.path_params.get("decision", ""))
    if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) < 2**62:
        raise Missing("APPROVAL_NOT_FOUND", "no such approval")
    if decision not in DECISIONS:
        raise Missing("NOT_FOUND", "no such decision")
    return int(raw), decision


def _check(rt: Runtime, token: str, approval_id: int, decision: str) -> Link:
    signer = rt.approval_links
    link = None
    if signer is not None:
        link = signer.verify(token, approval=approval_id, decision=decision, now=rt.clock.now())
    if link is None:
        raise Unauthorized("the link is not valid for this approval, or it has expired")
    return link


async def email_confirm(request: Request) -> Response:
    """An approval email's link: a page asking to confirm the decision (changes nothing)."""
    rt = runtime(request)
    try:
        approval_id, decision = _where(request)
        token = request.query_params.get("token", "")
        link = _check(rt, token, approval_id, decision)
        found = await rt.store.approval(approval_id)
        if found is None:
            raise Missing("APPROVAL_NOT_FOUND", f"no approval {approval_id}")
        if not found.open:
            raise Conflict("APPROVAL_DECIDED", f"approval {approval_id} is already {found.state}")
    except RequestError as exc:
        return _refused(exc)
    verb = "Approve" if decision == "approve" else "Deny"
    what = html.escape(f"{found.playbook} on {found.target}")
    form = (
        f"<p>{verb} <b>{what}</b> (approval {approval_id}) as "
        f"<b>{html.escape(link.email)}</b>?</p>"
        f'<form method="post"><input type="hidden" name="token" value="{html.escape(token)}">'
        f'<button type="submit">{verb}</button></form>'
    )
    return _page(f"{verb} this remediation?", form)


async def email_decide(request: Request) -> Response:
    """The confirm page's button: take the decision the link names, once."""
    rt = runtime(request)
    try:
        approval_id, decision = _where(request)
        body = await read_body(request, MAX_FORM)
        try:
            form = parse_qs(body.decode("utf-8"), max_num_fields=4)
        except (UnicodeDecodeError, ValueError):
            form = {}
        token = (form.get("token") or [""])[0]
        link = _check(rt, token, approval_id, decision)
        used = f"email:{token.rpartition('.')[2]}"  # the token's MAC names it
        if not await rt.store.use_signature(used, now=rt.clock.now()):
            raise LinkUsed("this link was used already")
        decided = await rt.engine.approvals.decide(
            approval_id,
            approve=decision == "approve",
            by=Decider(link.email, "email"),
            reason="email link",
        )
    except RequestError as exc:
        if isinstance(exc, Unauthorized | LinkUsed):
            log.warning("approval link refused", extra={"code": exc.code})
        return _refused(exc)
    what = html.escape(f"{decided.playbook} on {decided.target}")
    return _page("Done", f"<p>Approval {approval_id} of <b>{what}</b>: {decided.state}.</p>")
