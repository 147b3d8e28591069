"""Approvals: a playbook with ``approval:`` proposes, a person decides.

When the guards pass for such a playbook, :meth:`Approvals.request` claims its remediation as
``awaiting_approval`` and records ``recovery:approval_requested``; nothing runs. A decision
(:meth:`Approvals.decide`: Slack button, API, CLI) is taken only from an approver its playbook
lists, and only once: the store lets exactly one decision change an open approval
(remediator/store/approvals.py), so of two replicas taking two clicks one wins and the other
gets :class:`~remediator.errors.Conflict` (409). An approval checks the guards again — an alert
that resolved, a breaker that opened, the kill switch or a quarantine since the request turns
it into ``recovery:skipped`` with the reason — and then runs the remediation in the background
(:meth:`remediator.engine.run.Runs.execute`, under the target's lock), as the alert would have.

:meth:`Approvals.sweep` (every few seconds, on every replica) expires what outlived its ``ttl``
(``on_expiry: deny``, or ``escalate``) and cancels the requests of alerts that resolved.
Every decision is an event with the approver, the channel and the time waited, and is counted
in ``remediator_approvals_total{playbook,outcome}`` and ``remediator_approval_wait_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from remediator.audit import events as ev
from remediator.audit.events import Event
from remediator.clock import iso
from remediator.config.approvals import ApprovalSpec
from remediator.engine.decisions import Catalog, Plan, decide
from remediator.engine.periodic import Periodic
from remediator.engine.run import RESOLVED, EventBuilder, Order, Runs, base_event
from remediator.engine.step_approvals import spec_of, where
from remediator.errors import Conflict, Forbidden, Missing
from remediator.store.approvals import (
    APPROVED,
    CANCELLED,
    DENIED,
    EXPIRED,
    OPEN,
    SKIPPED,
    Approval,
)

log = logging.getLogger("remediator.approvals")
CHANNELS = ("slack", "api", "cli", "email")
SWEEP_INTERVAL = 5.0
_EVENT = {
    APPROVED: ev.APPROVAL_APPROVED,
    DENIED: ev.APPROVAL_DENIED,
    SKIPPED: ev.APPROVAL_DENIED,
    EXPIRED: ev.APPROVAL_EXPIRED,
    CANCELLED: ev.APPROVAL_CANCELLED,
}


@dataclass(frozen=True, slots=True)
class Decider:
    """Who decides, and through which channel (``slack``: a Slack user id; ``email``: the
    address a signed link was sent to; else a token)."""

    identity: str
    channel: str
    admin: bool = False  # an admin token may decide on any approval

    def may(self, spec: ApprovalSpec) -> bool:
        if self.channel != "slack" and self.admin:
            return True
        return spec.allows(channel=self.channel, identity=self.identity)


class Groups(Protocol):
    """Slack user groups' members (remediator/notifiers/slack_groups.py); raises if Slack
    cannot tell."""

    async def members(self, group: str) -> frozenset[str]: ...


def find_plan(catalog: Catalog, name: str) -> Plan | None:
    for plan in catalog.plans:
        if plan.name == name:
            return plan
    return catalog.pattern_plans.get(name.removeprefix("pattern:"))


@dataclass(kw_only=True)
class Approvals:
    """Requests and decisions; one per engine (its catalog set on each configuration)."""

    runs: Runs
    catalog: Catalog | None = None
    groups: Groups | None = None  # resolves approval.slack_usergroups (None: no Slack bot)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _periodic: Periodic | None = None

    # -- the request ---------------------------------------------------------------------------

    async def request(self, order: Order, *, now: float, detected: list[Event]) -> bool:
        """Claim ``order``'s remediation as awaiting approval; False if it already exists."""
        spec = order.plan.approval
        assert spec is not None
        b = order.events
        expires = now + spec.ttl
        who = spec.asked()
        requested = b.event(
            ev.APPROVAL_REQUESTED,
            time=now,
            outcome="awaiting_approval",
            message=f"{order.plan.name} on {order.target.name} awaits approval by "
            f"{', '.join(who)} until {iso(expires)}",
            details={**b.base.details, "expires_at": expires, "on_expiry": spec.on_expiry},
        )
        approval_id = await self.runs.store.request_approval(
            playbook=order.plan.name,
            fingerprint=b.base.fingerprint,
            episode_id=order.episode_id,
            target=order.target.name,
            now=now,
            ttl=spec.ttl,
            config_version=self.runs.config_version,
            events=[requested],
            before_events=detected,
            details={"alertname": b.base.alertname, "severity": b.base.severity},
        )
        return approval_id is not None

    # -- decisions -----------------------------------------------------------------------------

    async def decide(
        self, approval_id: int, *, approve: bool, by: Decider, reason: str = ""
    ) -> Approval:
        """Approve or deny an open approval: the approval as decided (state ``approved``,
        ``denied``, ``skipped`` when a guard blocks at decision time, or ``cancelled`` when the
        alert resolved). 404 unknown, 403 not an approver, 409 already decided."""
        found = await self.runs.store.approval(approval_id)
        if found is None:
            raise Missing("APPROVAL_NOT_FOUND", f"no approval {approval_id}")
        if not found.open:
            raise Conflict("APPROVAL_DECIDED", f"approval {approval_id} is already {found.state}")
        order = await self._order(found)
        spec = self._spec(order, found)
        if spec is None or not (by.may(spec) or await self._member(by, spec)):
            raise Forbidden(f"{by.identity!r} may not decide on approval {approval_id}")
        assert order is not None
        now = self.runs.clock.now()
        if not approve:
            return await self._settle(found, order.events, DENIED, by=by, reason=reason, now=now)
        verdict, _ = await self.runs.check(order, now=now)
        if verdict.reason == RESOLVED:
            return await self._settle(
                found, order.events, CANCELLED, by=by, reason=RESOLVED, now=now
            )
        if not verdict.allowed:
            why = verdict.reason or ""
            blocked = order.events.blocked(why, verdict.detail or why)
            return await self._settle(
                found, order.events, SKIPPED, by=by, reason=why, now=now, more=blocked
            )
        resumed = "" if found.step is None else f" from {where(order.plan.steps, found.step)}"
        started = order.events.event(
            ev.RECOVERY_STARTED,
            time=now,
            message=f"running {order.plan.name} on {order.target.name}{resumed}",
        )
        decided = await self._settle(
            found, order.events, APPROVED, by=by, reason=reason, now=now, more=[started]
        )
        task = asyncio.create_task(
            self._run(order, found.remediation_id), name=f"approved-{approval_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return decided

    @staticmethod
    def _spec(order: Order | None, found: Approval) -> ApprovalSpec | None:
        """Who decides on ``found``: its playbook's approval, or its step's."""
        if order is None:
            return None
        return spec_of(order.plan.steps, order.plan.approval, found.step)

    async def _member(self, by: Decider, spec: ApprovalSpec) -> bool:
        """Whether a Slack user is in one of ``spec``'s user groups; a group Slack cannot list
        counts as not containing them (an error refuses, never allows)."""
        if by.channel != "slack" or self.groups is None:
            return False
        for group in spec.slack_usergroups:
            try:
                if by.identity in await self.groups.members(group):
                    return True
            except Exception as exc:
                log.warning(
                    "slack user group not resolved: %s", type(exc).__name__, extra={"group": group}
                )
        return False

    async def _run(self, order: Order, rid: int) -> None:
        try:
            async with self.runs.lock(order.target.name):
                await self.runs.execute(order, rid)
        except Exception:
            log.exception("approved remediation failed", extra={"remediation": rid})

    async def drain(self) -> None:
        """Wait for the approved runs started here (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _settle(
        self,
        found: Approval,
        b: EventBuilder,
        state: str,
        *,
        by: Decider,
        reason: str,
        now: float,
        more: list[Event] | None = None,
    ) -> Approval:
        waited = max(0.0, now - found.requested_at)
        outcome = "skipped" if state == SKIPPED else state
        verb = {APPROVED: "approved", DENIED: "denied", SKIPPED: "approved, but a guard blocked it",
                CANCELLED: "cancelled: the alert resolved", EXPIRED: "expired"}[state]  # fmt: skip
        prefixed = by.channel in ("slack", "email")  # a Slack user id, an email address
        actor = f"{by.channel}:{by.identity}" if prefixed else by.identity
        step: dict[str, Any] = {}  # an approval of a single step names it
        if found.step is not None:
            step = {"step": found.step, "action": found.details.get("action", "")}
        of = "" if found.step is None else f" at steps[{found.step}]"
        decision = b.event(
            _EVENT[state],
            time=now,
            outcome=outcome,
            actor=actor,
            message=f"approval {found.id} of {found.playbook}{of} on {found.target} {verb} "
            f"by {actor} via {by.channel} after {waited:.0f}s",
            details={
                **b.base.details,
                "approval": found.id,
                "channel": by.channel,
                "waited": waited,
                "reason": reason,
                **step,
            },
        )
        events = [decision, *(more or [])]
        settled = await self.runs.store.settle_approval(
            found.id,
            state=state,
            by=actor,
            channel=by.channel,
            reason=reason,
            now=now,
            owner=self.runs.owner,
            lease=self.runs.lease,
            events=events,
        )
        if settled is None:
            raise Conflict("APPROVAL_DECIDED", f"approval {found.id} was decided by someone else")
        self.runs.metrics.approvals.labels(found.playbook, outcome).inc()
        self.runs.metrics.approval_wait.observe(waited)
        return settled

    async def _order(self, found: Approval) -> Order | None:
        """The run the approval stands for, rebuilt from its alert with the running
        configuration; None if its playbook no longer exists or no longer asks for approval."""
        catalog = self.catalog
        plan = find_plan(catalog, found.playbook) if catalog is not None else None
        target = catalog.targets.get(found.target) if catalog is not None else None
        if catalog is None or plan is None or target is None:
            return None
        if spec_of(plan.steps, plan.approval, found.step) is None:
            return None
        item = await self.runs.store.latest_alert(found.fingerprint)
        if item is None:
            return None
        decision = decide(
            catalog,
            fingerprint=item.fingerprint,
            status="firing",
            labels=item.labels,
            annotations=item.annotations,
        )
        base = base_event(
            item, decision, now=found.requested_at, config_version=self.runs.config_version
        )
        b = self.runs.builder(base).evolve(target=target.name, playbook=plan.name, status="firing")
        return Order(
            plan=plan,
            target=target,
            events=b,
            episode_id=found.episode_id,
            dry=plan.dry_run or self.runs.config.safety.dry_run,
            labels=item.labels,
            resume=found.step,
        )

    # -- expiry and cancellation ---------------------------------------------------------------

    async def sweep(self) -> int:
        """Expire the open approvals past their ``ttl`` and cancel those whose alert resolved;
        how many were settled here (another replica may settle some first)."""
        now = self.runs.clock.now()
        settled = 0
        for found in await self.runs.store.due_approvals(now=now):
            settled += await self._close(found, now=now)
        return settled

    async def cancel_resolved(self, episode_id: int) -> int:
        """Cancel at once the open approval of an episode whose alert just resolved (the sweep
        would within seconds); how many were cancelled here."""
        now = self.runs.clock.now()
        settled = 0
        for found in await self.runs.store.approvals(state=OPEN, limit=1000):
            if found.episode_id == episode_id:
                settled += await self._close(found, now=now)
        return settled

    async def _close(self, found: Approval, *, now: float) -> int:
        """Settle a due approval: cancelled if its alert resolved, else expired; 0 if another
        replica settled it first."""
        episode = await self.runs.store.episode(found.episode_id)
        order = await self._order(found)
        b = order.events if order is not None else self._fallback(found)
        system = Decider("remediator", "expiry")
        try:
            if episode is not None and not episode.open:
                await self._settle(found, b, CANCELLED, by=system, reason=RESOLVED, now=now)
            else:
                spec = self._spec(order, found)
                on_expiry = spec.on_expiry if spec is not None else "deny"
                more = []
                if on_expiry == "escalate":
                    done = "nothing was done"
                    if found.step is not None:
                        done = f"steps[{found.step}] and those after it were not run"
                    more.append(
                        b.escalation(
                            "approval_expired",
                            f"nobody decided on {found.playbook} for {found.target} "
                            f"within its ttl; {done}",
                        )
                    )
                await self._settle(
                    found, b, EXPIRED, by=system, reason=on_expiry, now=now, more=more
                )
        except Conflict:
            return 0  # another replica settled it
        return 1

    def _fallback(self, found: Approval) -> EventBuilder:
        base = Event(
            type="",
            time=found.requested_at,
            fingerprint=found.fingerprint,
            target=found.target,
            playbook=found.playbook,
            details={"episode": found.episode_id},
        )
        return self.runs.builder(base)

    async def start(self) -> None:
        self._periodic = Periodic("approvals", SWEEP_INTERVAL, self.sweep)
        await self._periodic.start()

    async def stop(self) -> None:
        if self._periodic is not None:
            await self._periodic.stop()
        await self.drain()
