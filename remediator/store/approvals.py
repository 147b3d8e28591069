"""Approvals: remediations waiting for a person, and the one decision each gets — both backends.

A request claims the remediation (state ``awaiting_approval``, remediator/store/remediations.py)
and adds its approval row in one transaction. A decision changes the row only while it is
``open`` (``UPDATE ... WHERE state = 'open'``): of two replicas deciding at once, exactly one
changes it and records its events; the other is told nothing changed (the API's 409). An
approval makes its remediation ``running`` under the deciding replica's lease; any other
decision finishes it (``blocked``, with the decision as its reason).

Signatures already used (Slack requests, email links) are kept for a while so that a replay is
refused on every replica.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from remediator.audit.events import Event
from remediator.store.ops import Append, Dialect, Driven, Op, all_, insert, one, run
from remediator.store.records import BLOCKED
from remediator.store.remediations import start

AWAITING_APPROVAL = "awaiting_approval"  # the remediation's state while its approval is open
OPEN = "open"
APPROVED = "approved"
DENIED = "denied"
EXPIRED = "expired"
CANCELLED = "cancelled"
SKIPPED = "skipped"
COLUMNS = (
    "id, remediation_id, playbook, target, fingerprint, episode_id, state, requested_at, "
    "expires_at, decided_by, channel, reason, decided_at, details, step"
)
SIGNATURES_KEPT = 900.0  # seconds a used signature is remembered (longer than any validity)


@dataclass(frozen=True, slots=True)
class Approval:
    id: int
    remediation_id: int
    playbook: str
    target: str
    fingerprint: str
    episode_id: int
    state: str
    requested_at: float
    expires_at: float
    decided_by: str = ""
    channel: str = ""
    reason: str = ""
    decided_at: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    step: int | None = None  # the step it stands before (None: the playbook's own approval)

    @property
    def open(self) -> bool:
        return self.state == OPEN


def approval(row: Sequence[Any]) -> Approval:
    return Approval(
        int(row[0]), int(row[1]), str(row[2]), str(row[3]), str(row[4]), int(row[5]),
        str(row[6]), float(row[7]), float(row[8]), str(row[9]), str(row[10]), str(row[11]),
        None if row[12] is None else float(row[12]), json.loads(row[13]),
        None if row[14] is None else int(row[14]),
    )  # fmt: skip


def request(
    d: Dialect,
    *,
    playbook: str,
    fingerprint: str,
    episode_id: int,
    target: str,
    now: float,
    ttl: float,
    config_version: int,
    events: list[Event],
    before_events: list[Event],
    details: dict[str, Any],
) -> Op[int | None]:
    """Claim the remediation as awaiting approval and open its approval; the approval's id, or
    None if the remediation exists. ``before_events`` are appended either way, ``events`` only
    with a new approval (last: the audit head is the last lock taken)."""
    rid = yield from start(
        d,
        playbook=playbook,
        fingerprint=fingerprint,
        episode_id=episode_id,
        target=target,
        now=now,
        state=AWAITING_APPROVAL,
        reason=AWAITING_APPROVAL,
        config_version=config_version,
        events=None,
        owner="",
        lease=0.0,
        before_events=None,
        mark=True,
    )
    approval_id = None
    if rid is not None:
        approval_id = yield insert(
            ("INSERT INTO approvals (remediation_id, playbook, target, fingerprint, episode_id, "
                "state, requested_at, expires_at, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"),
            rid, playbook, target, fingerprint, episode_id, OPEN, now, now + ttl,
            json.dumps(details, sort_keys=True),
        )  # fmt: skip
    if approval_id is not None:  # the request names its approval (Slack's buttons carry it)
        events = [replace(e, details={**e.details, "approval": int(approval_id)}) for e in events]
    yield Append([*before_events, *(events if approval_id is not None else [])])
    return None if approval_id is None else int(approval_id)


def pause(
    d: Dialect,
    *,
    remediation_id: int,
    step: int,
    now: float,
    ttl: float,
    attempts: int,
    events: list[Event],
    complete_item: tuple[int, str] | None,
    details: dict[str, Any],
) -> Op[int | None]:
    """Pause a running remediation before step ``step``: it waits (``awaiting_approval``, no
    lease) with an open approval of that step, and ``events`` are recorded (the request names
    its approval); the approval's id, or None, with nothing changed, if it was not running or
    that step's approval exists (it was asked once)."""
    row = yield one(
        ("UPDATE remediations SET state = ?, reason = ?, attempts = ?, lease_until = NULL "
            "WHERE id = ? AND state = 'running' AND NOT EXISTS (SELECT 1 FROM approvals "
            "WHERE remediation_id = ? AND step = ?) "
            "RETURNING playbook, target, fingerprint, episode_id"),
        AWAITING_APPROVAL, AWAITING_APPROVAL, attempts, remediation_id, remediation_id, step,
    )  # fmt: skip
    if row is None:
        return None
    playbook, target, fingerprint, episode_id = row
    approval_id = yield insert(
        ("INSERT INTO approvals (remediation_id, playbook, target, fingerprint, episode_id, "
            "state, requested_at, expires_at, details, step) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
        remediation_id, playbook, target, fingerprint, episode_id, OPEN, now, now + ttl,
        json.dumps({**details, "step": step}, sort_keys=True), step,
    )  # fmt: skip
    if complete_item is not None:
        item_id, outcome = complete_item
        yield run(
            ("UPDATE inbox SET state = 'done', outcome = ?, done_at = ?, lease_until = NULL "
                "WHERE id = ?"),
            outcome, now, item_id,
        )  # fmt: skip
    named = [replace(e, details={**e.details, "approval": int(approval_id)}) for e in events]
    yield Append(named)
    return int(approval_id)


def listed(d: Dialect, *, state: str | None, limit: int) -> Op[list[Approval]]:
    where, params = ("WHERE state = ?", (state,)) if state is not None else ("", ())
    rows = yield all_(
        f"SELECT {COLUMNS} FROM approvals {where} ORDER BY id DESC LIMIT ?",  # noqa: S608
        *params,
        limit,
    )
    return [approval(row) for row in rows]


def get(d: Dialect, *, approval_id: int) -> Op[Approval | None]:
    row = yield one(f"SELECT {COLUMNS} FROM approvals WHERE id = ?", approval_id)  # noqa: S608
    return None if row is None else approval(row)


def settle(
    d: Dialect,
    *,
    approval_id: int,
    state: str,
    by: str,
    channel: str,
    reason: str,
    now: float,
    owner: str,
    lease: float,
    events: list[Event],
) -> Op[Approval | None]:
    """Decide an open approval (``approved``: its remediation runs under ``owner``'s lease;
    anything else finishes it ``blocked``); None, with nothing changed, if it was not open."""
    row = yield one(
        (f"UPDATE approvals SET state = ?, decided_by = ?, channel = ?, reason = ?, "  # noqa: S608
            f"decided_at = ? WHERE id = ? AND state = 'open' RETURNING {COLUMNS}"),
        state, by, channel, reason, now, approval_id,
    )  # fmt: skip
    if row is None:
        return None
    decided = approval(row)
    if state == APPROVED:
        yield run(
            ("UPDATE remediations SET state = 'running', started_at = ?, owner = ?, "
                "lease_until = ?, reason = '' WHERE id = ? AND state = ?"),
            now, owner, now + lease, decided.remediation_id, AWAITING_APPROVAL,
        )  # fmt: skip
    else:
        yield run(
            ("UPDATE remediations SET state = ?, finished_at = ?, reason = ?, lease_until = NULL "
                "WHERE id = ? AND state = ?"),
            BLOCKED, now, f"approval_{state}", decided.remediation_id, AWAITING_APPROVAL,
        )  # fmt: skip
    yield Append(events)
    return decided


def due(d: Dialect, *, now: float) -> Op[list[Approval]]:
    """Open approvals that expired, or whose alert's episode resolved."""
    rows = yield all_(
        (f"SELECT {', '.join('a.' + c for c in COLUMNS.split(', '))} FROM approvals a "  # noqa: S608
            "LEFT JOIN episodes e ON e.id = a.episode_id WHERE a.state = 'open' "
            "AND (a.expires_at <= ? OR e.resolved_at IS NOT NULL) ORDER BY a.id"),
        now,
    )  # fmt: skip
    return [approval(row) for row in rows]


def use_signature(d: Dialect, *, signature: str, now: float) -> Op[bool]:
    """Record a signed request's signature; False if it was used before (a replay)."""
    yield run("DELETE FROM used_signatures WHERE used_at < ?", now - SIGNATURES_KEPT)
    row = yield one(
        "INSERT INTO used_signatures (signature, used_at) VALUES (?, ?) "
        "ON CONFLICT (signature) DO NOTHING RETURNING signature",
        signature,
        now,
    )
    return row is not None


class Approvals(Protocol):
    """Remediations waiting for a person, and their one decision (remediator/store/approvals.py)."""

    async def request_approval(
        self,
        *,
        playbook: str,
        fingerprint: str,
        episode_id: int,
        target: str,
        now: float,
        ttl: float,
        config_version: int,
        events: list[Event],
        before_events: list[Event] | None = None,
        details: dict[str, Any] | None = None,
    ) -> int | None:
        """Claim the remediation as ``awaiting_approval`` and open its approval (expiring at
        ``now + ttl``), in one commit: the approval's id, or None if the remediation exists.
        ``before_events`` are appended either way, ``events`` only with a new approval."""
        ...

    async def approvals(self, *, state: str | None = None, limit: int = 100) -> list[Approval]:
        """The approvals (with ``state``, only those), newest first."""
        ...

    async def approval(self, approval_id: int) -> Approval | None: ...

    async def settle_approval(
        self,
        approval_id: int,
        *,
        state: str,
        by: str,
        channel: str,
        reason: str,
        now: float,
        owner: str = "",
        lease: float = 0.0,
        events: list[Event] | None = None,
    ) -> Approval | None:
        """Decide an open approval with ``events``, in one commit; None, with nothing changed,
        if it was no longer open (another decision won)."""
        ...

    async def due_approvals(self, *, now: float) -> list[Approval]:
        """Open approvals that expired by ``now`` or whose episode resolved."""
        ...

    async def pause_for_approval(
        self,
        remediation_id: int,
        *,
        step: int,
        now: float,
        ttl: float,
        attempts: int,
        events: list[Event],
        complete_item: tuple[int, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> int | None:
        """Pause a running remediation before ``step`` with an open approval of that step
        (expiring at ``now + ttl``) and ``events``, in one commit (completing ``complete_item``):
        the approval's id, or None, with nothing changed, if it was not running or that step's
        approval exists."""
        ...

    async def use_signature(self, signature: str, *, now: float) -> bool:
        """Remember a signed request; False if it was seen before (a replay)."""
        ...


class ApprovalOps(Driven):
    async def request_approval(
        self,
        *,
        playbook: str,
        fingerprint: str,
        episode_id: int,
        target: str,
        now: float,
        ttl: float,
        config_version: int,
        events: list[Event],
        before_events: list[Event] | None = None,
        details: dict[str, Any] | None = None,
    ) -> int | None:
        return await self._write_op(
            request,
            playbook=playbook,
            fingerprint=fingerprint,
            episode_id=episode_id,
            target=target,
            now=now,
            ttl=ttl,
            config_version=config_version,
            events=events,
            before_events=before_events or [],
            details=details or {},
        )

    async def approvals(self, *, state: str | None = None, limit: int = 100) -> list[Approval]:
        return await self._read_op(listed, state=state, limit=limit)

    async def approval(self, approval_id: int) -> Approval | None:
        return await self._read_op(get, approval_id=approval_id)

    async def settle_approval(
        self,
        approval_id: int,
        *,
        state: str,
        by: str,
        channel: str,
        reason: str,
        now: float,
        owner: str = "",
        lease: float = 0.0,
        events: list[Event] | None = None,
    ) -> Approval | None:
        return await self._write_op(
            settle,
            approval_id=approval_id,
            state=state,
            by=by,
            channel=channel,
            reason=reason,
            now=now,
            owner=owner,
            lease=lease,
            events=events or [],
        )

    async def due_approvals(self, *, now: float) -> list[Approval]:
        return await self._read_op(due, now=now)

    async def pause_for_approval(
        self,
        remediation_id: int,
        *,
        step: int,
        now: float,
        ttl: float,
        attempts: int,
        events: list[Event],
        complete_item: tuple[int, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> int | None:
        return await self._write_op(
            pause,
            remediation_id=remediation_id,
            step=step,
            now=now,
            ttl=ttl,
            attempts=attempts,
            events=events,
            complete_item=complete_item,
            details=details or {},
        )

    async def use_signature(self, signature: str, *, now: float) -> bool:
        return await self._write_op(use_signature, signature=signature, now=now)
