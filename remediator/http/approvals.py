"""Approvals over HTTP: the list, approve/deny by token (API and CLI), and Slack's buttons.

``POST /slack/interactions`` is Slack's interactivity endpoint: no token, but every request
must carry Slack's signature over its body (``X-Slack-Signature``, made with the app's signing
secret) and a timestamp no older than ``approvals.max_request_age``; a signature is accepted
once (remediator/store/approvals.py keeps the used ones, so a replay is refused on every
replica). Unsigned, mis-signed, stale and replayed requests get 401 and change nothing. The
decision itself is :meth:`remediator.engine.approvals.Approvals.decide`, as for the API.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field
from slack_sdk.signature import Clock as SlackClock
from slack_sdk.signature import SignatureVerifier
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from remediator.clock import Clock, iso
from remediator.config.auth import Principal
from remediator.engine.approvals import Decider
from remediator.errors import RequestError, SchemaViolation, Unauthorized
from remediator.http.management import ok, parse_body, problem
from remediator.http.web import internal_error, read_body, runtime
from remediator.runtime import Runtime
from remediator.store.approvals import Approval

log = logging.getLogger("remediator.approvals")
STATES = ("open", "approved", "denied", "expired", "cancelled", "skipped")


class ApprovalView(BaseModel):
    id: int
    remediation_id: int
    playbook: str
    target: str
    fingerprint: str
    episode_id: int
    state: str
    requested_at: str
    expires_at: str
    decided_by: str
    channel: str
    reason: str
    decided_at: str | None
    step: int | None = Field(
        default=None,
        description="The index of the step it stands before (an approval of a single step); "
        "null: the playbook's own approval",
    )


class ApprovalsResponse(BaseModel):
    approvals: list[ApprovalView]


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    reason: str = Field(default="", max_length=500, description="Recorded in the audit event")
    channel: Literal["api", "cli"] = Field(default="api", description="`cli` from the CLI")


class DecisionResponse(BaseModel):
    approval: ApprovalView


def view(a: Approval) -> dict[str, Any]:
    return {
        "id": a.id,
        "remediation_id": a.remediation_id,
        "playbook": a.playbook,
        "target": a.target,
        "fingerprint": a.fingerprint,
        "episode_id": a.episode_id,
        "state": a.state,
        "requested_at": iso(a.requested_at),
        "expires_at": iso(a.expires_at),
        "decided_by": a.decided_by,
        "channel": a.channel,
        "reason": a.reason,
        "decided_at": None if a.decided_at is None else iso(a.decided_at),
        "step": a.step,
    }


async def list_approvals(request: Request, rt: Runtime, who: Principal) -> Response:
    """The approvals, newest first (``?state=open``: those awaiting a decision)."""
    state = request.query_params.get("state") or None
    if state is not None and state not in STATES:
        raise SchemaViolation(f"state: one of {', '.join(STATES)}")
    found = await rt.store.approvals(state=state, limit=500)
    return ok(ApprovalsResponse, {"approvals": [view(a) for a in found]})


def _approval_id(request: Request) -> int:
    raw = str(request.path_params.get("id", ""))
    if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) < 2**62:
        raise SchemaViolation("id: an approval id (a positive integer)")
    return int(raw)


async def _decide(request: Request, rt: Runtime, who: Principal, *, approve: bool) -> Response:
    approval_id = _approval_id(request)
    req = await parse_body(request, rt, DecisionRequest, optional=True)
    by = Decider(who.name, req.channel, admin=who.role == "admin")
    decided = await rt.engine.approvals.decide(
        approval_id, approve=approve, by=by, reason=req.reason.strip()
    )
    return ok(DecisionResponse, {"approval": view(decided)})


async def approve(request: Request, rt: Runtime, who: Principal) -> Response:
    """Approve a waiting remediation: the guards are checked again, then it runs."""
    return await _decide(request, rt, who, approve=True)


async def deny(request: Request, rt: Runtime, who: Principal) -> Response:
    """Deny a waiting remediation: nothing runs."""
    return await _decide(request, rt, who, approve=False)


# -- Slack's interactivity endpoint ------------------------------------------------------------


class _ClockFor(SlackClock):
    """slack_sdk's verifier reading remediator's clock (a fake one in tests)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def now(self) -> float:
        return self._clock.now()


def verify_slack(rt: Runtime, body: bytes, headers: Any) -> None:
    """Raise Unauthorized unless ``body`` is signed with the signing secret, recently."""
    secret = rt.slack_signing_secret
    timestamp = headers.get("x-slack-request-timestamp", "")
    signature = headers.get("x-slack-signature", "")
    if not secret or not timestamp or not signature:
        raise Unauthorized("not a signed Slack request")
    if not (timestamp.isascii() and timestamp.isdigit()):
        raise Unauthorized("not a signed Slack request")
    age = abs(rt.clock.now() - int(timestamp))
    if age > rt.config.approvals.max_request_age:
        raise Unauthorized("the Slack request is too old")
    verifier = SignatureVerifier(secret, clock=_ClockFor(rt.clock))
    if not verifier.is_valid(body=body, timestamp=timestamp, signature=signature):
        raise Unauthorized("the Slack signature does not match")


def _action(body: bytes) -> tuple[str, str, int]:
    """The Slack user id, the action (approve/deny) and the approval id of a block action."""
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True)
        payload = json.loads(form["payload"][0])
        user = str(payload["user"]["id"])
        action = payload["actions"][0]
        name, value = str(action["action_id"]), str(action["value"])
    except (UnicodeDecodeError, ValueError, KeyError, IndexError, TypeError):
        raise SchemaViolation("not a Slack block action") from None
    if name not in ("approve", "deny") or not (value.isascii() and value.isdigit()):
        raise SchemaViolation("not an approval button")
    return user, name, int(value)


async def slack_interactions(request: Request) -> Response:
    """Slack's interactivity endpoint: an Approve or Deny button was clicked."""
    rt = runtime(request)
    try:
        body = await read_body(request, 64 * 1024)
        verify_slack(rt, body, request.headers)
        signature = request.headers["x-slack-signature"]
        if not await rt.store.use_signature(signature, now=rt.clock.now()):
            raise Unauthorized("the Slack request was already received (a replay)")
        user, name, approval_id = _action(body)
        decided = await rt.engine.approvals.decide(
            approval_id, approve=name == "approve", by=Decider(user, "slack")
        )
    except RequestError as exc:
        if isinstance(exc, Unauthorized):
            log.warning("slack interaction refused", extra={"code": exc.message})
        return problem(exc)
    except Exception:
        log.exception("slack interaction failed")
        return internal_error()
    verb = "approved" if decided.state == "approved" else decided.state
    text = (
        f"{decided.playbook} on {decided.target}: {verb} by <@{user}> at "
        f"{iso(decided.decided_at or rt.clock.now())}"
    )
    return JSONResponse({"replace_original": True, "text": text, "approval": view(decided)})
