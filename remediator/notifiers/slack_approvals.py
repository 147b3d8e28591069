"""The approval part of a Slack incident message: Approve and Deny buttons, then the decision.

A ``recovery:approval_requested`` message ends with an actions block (slack-sdk's Block Kit
models): ``approve`` (primary, behind a confirm dialog) and ``deny`` (danger), each carrying the
approval's id as its value; Slack sends the click to ``POST /slack/interactions``
(remediator/http/approvals.py). Once the approval is decided — by any channel, or by expiry or a
resolved alert — the same message is updated (``chat.update``) with a line saying who decided,
how and when, and no buttons: only the request's message carries them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    ConfirmObject,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from remediator.audit import events as ev
from remediator.notifiers.base import Phase

# The incident message follows its approval: the request, then its one decision.
PHASES: Final[dict[str, Phase]] = {
    ev.APPROVAL_REQUESTED: "awaiting",
    ev.APPROVAL_APPROVED: "decided",
    ev.APPROVAL_DENIED: "decided",
    ev.APPROVAL_EXPIRED: "decided",
    ev.APPROVAL_CANCELLED: "decided",
}
BLOCK_ID: Final = "approval"
_SLACK_ACTOR = re.compile(r"^slack:([UW][A-Z0-9]{2,20})$")
_VERBS: Final = {
    ev.APPROVAL_APPROVED: "✅ Approved",
    ev.APPROVAL_DENIED: "⛔ Denied",
    ev.APPROVAL_EXPIRED: "⌛ Expired",
    ev.APPROVAL_CANCELLED: "🚫 Cancelled",
}


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _when(raw: Any) -> str:
    try:
        stamp = float(raw)
    except (TypeError, ValueError):
        return "an unknown time"
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _actor(actor: str) -> str:
    """The decider as Slack shows it: a mention for a Slack user, else the escaped name."""
    found = _SLACK_ACTOR.match(actor)
    return f"<@{found.group(1)}>" if found else f"`{_escape(actor)[:80]}`"


def buttons(approval_id: int) -> dict[str, Any]:
    """The actions block with the Approve and Deny buttons of one approval."""
    value = str(approval_id)
    confirm = ConfirmObject(
        title="Approve this remediation?",
        text="remediator checks the guards again, then runs the playbook.",
        confirm="Approve",
        deny="Cancel",
    )
    block = ActionsBlock(
        block_id=BLOCK_ID,
        elements=[
            ButtonElement(
                text=PlainTextObject(text="Approve"),
                action_id="approve",
                value=value,
                style="primary",
                confirm=confirm,
            ),
            ButtonElement(
                text=PlainTextObject(text="Deny"), action_id="deny", value=value, style="danger"
            ),
        ],
    )
    return block.to_dict()


def decision_line(data: Mapping[str, Any]) -> str:
    """Who decided, how and when, from a decision event (``data``: the event as a dict)."""
    kind = str(data.get("type", ""))
    details = data.get("details") or {}
    when = _when(data.get("time"))
    if kind == ev.APPROVAL_EXPIRED:
        return f"{_VERBS[kind]} at {when}: nobody decided in time, nothing was done"
    if kind == ev.APPROVAL_CANCELLED and details.get("channel") == "expiry":
        return f"{_VERBS[kind]} at {when}: the alert resolved, nothing was done"
    verb = _VERBS.get(kind, "Decided")
    if kind == ev.APPROVAL_DENIED and data.get("outcome") == "skipped":
        verb = "⚠️ Approved, but a guard blocked it"
    if kind == ev.APPROVAL_CANCELLED:
        verb = "🚫 Approved after the alert resolved: cancelled"
    channel = _escape(str(details.get("channel", "")))[:16]
    line = f"{verb} by {_actor(str(data.get('actor', '')))} via {channel} at {when}"
    reason = str(details.get("reason", "") or "")
    if reason:
        line += f": {_escape(reason)[:300]}"
    return line


def approval_blocks(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The blocks an approval event adds to the incident message (none for other events)."""
    kind = str(data.get("type", ""))
    details = data.get("details") or {}
    if kind == ev.APPROVAL_REQUESTED:
        approval = details.get("approval")
        if not isinstance(approval, int) or isinstance(approval, bool) or approval <= 0:
            return []
        until = _when(details.get("expires_at"))
        step, of = details.get("step"), ""
        if isinstance(step, int) and not isinstance(step, bool):  # an approval of one step
            of = f" of steps[{step}] ({_escape(str(data.get('action', '')))[:64]})"
        ask = SectionBlock(text=MarkdownTextObject(text=f"*Awaiting approval*{of} until {until}"))
        return [ask.to_dict(), buttons(approval)]
    if kind in _VERBS:
        return [SectionBlock(text=MarkdownTextObject(text=decision_line(data))).to_dict()]
    return []
