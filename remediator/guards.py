"""Safety guards: what stops a decided remediation from running, checked in order.

1. ``paused``         the global kill switch is on
2. ``quarantined``    the target was quarantined (no further automatic actions)
3. ``blast_radius``   too many targets of the same type are alerting at once
4. ``cooldown``       this playbook ran on this target too recently
5. ``max_per_window`` the target had its share of remediations in the window
6. ``circuit_open``   the target's circuit breaker rejects actions

All state comes from the store, so every replica sees the same answer. A block is recorded by
the engine as ``recovery:skipped`` with the reason; some reasons also escalate.
"""

from __future__ import annotations

from dataclasses import dataclass

from remediator.config import Config
from remediator.decisions import Plan
from remediator.store import Store
from remediator.targets import Target

PAUSED = "paused"
QUARANTINED = "quarantined"
BLAST_RADIUS = "blast_radius"
COOLDOWN = "cooldown"
MAX_PER_WINDOW = "max_per_window"
CIRCUIT_OPEN = "circuit_open"
# Blocks that tell a human: automation has stopped for this target.
ESCALATING = frozenset({QUARANTINED, BLAST_RADIUS, MAX_PER_WINDOW, CIRCUIT_OPEN})
PAUSE_FLAG = "paused"


@dataclass(frozen=True, slots=True)
class Verdict:
    reason: str | None  # None: allowed
    detail: str = ""

    @property
    def allowed(self) -> bool:
        return self.reason is None


ALLOWED = Verdict(None)


class Guards:
    def __init__(self, *, config: Config, store: Store) -> None:
        self.config = config
        self.store = store

    async def paused(self) -> bool:
        return (await self.store.flag(PAUSE_FLAG)) == "1"

    async def check(self, *, plan: Plan, target: Target, now: float) -> Verdict:
        """The read-only guards. The breaker is only looked at here; the engine admits the
        action (and counts a half-open trial) after it has claimed the remediation."""
        if await self.paused():
            return Verdict(PAUSED, "the global kill switch is on")
        state = await self.store.target_state(target.name)
        if state.quarantined:
            return Verdict(QUARANTINED, f"target quarantined: {state.quarantine_reason}")
        verdict = await self._blast_radius(target)
        if not verdict.allowed:
            return verdict
        last = await self.store.last_started(target=target.name, playbook=plan.name)
        if last is not None and now - last < plan.cooldown:
            return Verdict(COOLDOWN, f"ran {now - last:.0f}s ago; cooldown {plan.cooldown:.0f}s")
        limit = plan.max_per_window
        if limit is not None:
            count = await self.store.count_started(target=target.name, since=now - limit.window)
            if count >= limit.count:
                return Verdict(
                    MAX_PER_WINDOW,
                    f"{count} remediations in the last {limit.window:.0f}s (limit {limit.count})",
                )
        settings = self.config.circuit_breaker
        current = await self.store.breaker(target.name)
        due = current.next_half_open(settings)
        if settings.enabled and current.state == "open" and (due is None or now < due):
            return Verdict(CIRCUIT_OPEN, "circuit breaker open")
        return ALLOWED

    async def _blast_radius(self, target: Target) -> Verdict:
        safety = self.config.safety
        peers = [t.name for t in self.config.targets if t.type == target.type]
        if len(peers) < safety.blast_radius_min_targets:
            return ALLOWED
        alerting = await self.store.alerting_targets(peers)
        if alerting / len(peers) > safety.blast_radius:
            return Verdict(
                BLAST_RADIUS,
                f"{alerting} of {len(peers)} {target.type} targets alerting "
                f"(limit {safety.blast_radius:.0%})",
            )
        return ALLOWED
