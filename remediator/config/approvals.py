"""Approvals: which playbooks wait for a person, who may decide, and for how long.

A playbook with ``approval:`` does not act when its guards pass: its remediation waits in state
``awaiting_approval`` until an approver listed here approves (it runs), denies, or ``ttl``
passes (``on_expiry``: ``deny``, or ``escalate`` to a person). The engine side lives in
remediator/engine/approvals.py; the Slack signing secret that authenticates button clicks is
named in the top-level ``approvals:`` section.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from remediator.config.durations import Duration

Expiry = Literal["deny", "escalate"]
NAME = r"^[a-zA-Z0-9_.-]{1,64}$"
SLACK_USER = r"^[UW][A-Z0-9]{2,20}$"
SLACK_USERGROUP = r"^S[A-Z0-9]{2,20}$"
EMAIL = r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$"


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
    slack_usergroups: list[str] = Field(
        default_factory=list,
        description="Slack user group ids (`S0123ABC`) whose members may decide with the buttons; "
        "resolved with `usergroups.users.list` (the bot token needs `usergroups:read`), cached "
        "for a minute. If Slack cannot answer, the click is refused.",
    )
    emails: list[str] = Field(
        default_factory=list,
        description="Email addresses that get the request with single-use, signed approve and deny "
        "links (needs `notifications.email` and `approvals.link_secret_env`).",
    )
    ttl: Duration = Field(default=900.0, gt=0, description="How long a request stays open.")
    on_expiry: Expiry = Field(
        default="deny",
        description="At expiry: `deny` (nothing runs) or `escalate` (nothing runs, a person is told).",
    )

    @model_validator(mode="after")
    def _someone(self) -> ApprovalSpec:
        if not (self.approvers or self.slack_users or self.slack_usergroups or self.emails):
            raise ValueError(
                "approval: name at least one of approvers, slack_users, slack_usergroups or emails"
            )
        for name in self.approvers:
            if not re.fullmatch(NAME, name):
                raise ValueError(f"approval.approvers: not a token name: {name!r}")
        for user in self.slack_users:
            if not re.fullmatch(SLACK_USER, user):
                raise ValueError(f"approval.slack_users: not a Slack user id: {user!r}")
        for group in self.slack_usergroups:
            if not re.fullmatch(SLACK_USERGROUP, group):
                raise ValueError(f"approval.slack_usergroups: not a Slack user group id: {group!r}")
        for email in self.emails:
            if not re.fullmatch(EMAIL, email):
                raise ValueError(f"approval.emails: not an email address: {email!r}")
        return self

    def asked(self) -> list[str]:
        """Who is asked, as the request and dry runs name them."""
        return [
            *self.approvers,
            *(f"slack:{u}" for u in self.slack_users),
            *(f"slack group {g}" for g in self.slack_usergroups),
            *(f"email:{e}" for e in self.emails),
        ]

    def allows(self, *, channel: str, identity: str) -> bool:
        """May ``identity`` decide through ``channel`` (``slack``: a Slack user id; else a
        token name)?"""
        if channel == "slack":
            return identity in self.slack_users
        if channel == "email":
            return identity.lower() in (e.lower() for e in self.emails)
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
    link_secret_env: str | None = Field(
        default=None,
        pattern=r"^[A-Z_][A-Z0-9_]{0,127}$",
        description="The environment variable holding the key (at least 32 characters) that signs "
        "the approve and deny links of approval emails; without it, emails carry no links.",
    )
    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s?#]+$",
        description="The address people reach remediator at (`https://remediator.example.com`): "
        "the approval emails' links start with it.",
    )

    @model_validator(mode="after")
    def _links_need_an_address(self) -> ApprovalsConfig:
        if self.link_secret_env is not None and self.public_url is None:
            raise ValueError("approvals.link_secret_env: set approvals.public_url too")
        return self


def email_problems(where: str, spec: ApprovalSpec | None, *, email: bool, links: bool) -> list[str]:
    """Approvers by email need the mail to reach them and its links to be signed."""
    if spec is None or not spec.emails or (email and links):
        return []
    missing = [m for m, ok in (("notifications.email", email),
                               ("approvals.link_secret_env", links)) if not ok]  # fmt: skip
    return [f"{where}: approvers by email need {' and '.join(missing)}"]


class Asking(Protocol):
    """A step (remediator/config/steps.py): it may ask for approval."""

    @property
    def approval(self) -> ApprovalSpec | None: ...


def steps_email_problems(
    where: str, steps: Sequence[Asking], *, email: bool, links: bool
) -> list[str]:
    """:func:`email_problems` of each step's own approval (``where``: ``playbooks[0].steps``)."""
    return [
        problem
        for j, step in enumerate(steps)
        for problem in email_problems(
            f"{where}[{j}].approval.emails", step.approval, email=email, links=links
        )
    ]
