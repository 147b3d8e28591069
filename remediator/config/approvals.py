"""Approvals: which playbooks wait for a person, who may decide, and for how long.

A playbook with ``approval:`` does not act when its guards pass: its remediation waits in state
``awaiting_approval`` until an approver listed here approves (it runs), denies, or ``ttl``
passes (``on_expiry``: ``deny``, or ``escalate`` to a person). The engine side lives in
remediator/engine/approvals.py; the Slack signing secret that authenticates button clicks is
named in the top-level ``approvals:`` section.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from remediator.config.durations import Duration

Expiry = Literal["deny", "escalate"]
NAME = r"^[a-zA-Z0-9_.-]{1,64}$"
SLACK_USER = r"^[UW][A-Z0-9]{2,20}$"


class ApprovalSpec(BaseModel):
    """A playbook's approval: who may approve or deny, how long a request stays open."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    approvers: list[str] = Field(
        default_factory=list,
        description="API token names (role `approver` or `admin`) that may decide, by API or CLI.",
    )
    slack_users: list[str] = Field(
        default_factory=list,
        description="Slack user ids (`U0123ABC`) that may decide with the message's buttons.",
    )
    ttl: Duration = Field(default=900.0, gt=0, description="How long a request stays open.")
    on_expiry: Expiry = Field(
        default="deny",
        description="At expiry: `deny` (nothing runs) or `escalate` (nothing runs, a person is told).",
    )

    @model_validator(mode="after")
    def _someone(self) -> ApprovalSpec:
        if not self.approvers and not self.slack_users:
            raise ValueError("approval: name at least one of approvers or slack_users")
        for name in self.approvers:
            if not re.fullmatch(NAME, name):
                raise ValueError(f"approval.approvers: not a token name: {name!r}")
        for user in self.slack_users:
            if not re.fullmatch(SLACK_USER, user):
                raise ValueError(f"approval.slack_users: not a Slack user id: {user!r}")
        return self

    def allows(self, *, channel: str, identity: str) -> bool:
        """May ``identity`` decide through ``channel`` (``slack``: a Slack user id; else a
        token name)?"""
        if channel == "slack":
            return identity in self.slack_users
        return identity in self.approvers


class ApprovalsConfig(BaseModel):
    """Where the Slack signing secret comes from (Slack app settings, "Basic Information")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slack_signing_secret_env: str | None = Field(
        default=None,
        pattern=r"^[A-Z_][A-Z0-9_]{0,127}$",
        description="The environment variable holding the Slack signing secret; without it, "
        "`POST /slack/interactions` answers 401 to everything.",
    )
    max_request_age: Duration = Field(
        default=300.0,
        gt=0,
        le=300.0,
        description="Slack requests signed longer ago than this are refused (at most 5 min).",
    )
