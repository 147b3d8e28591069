"""Circuit breakers in PostgreSQL: each step is one transaction holding the breaker's row.

The row is inserted first if missing (``ON CONFLICT DO NOTHING``), then locked with
``SELECT ... FOR UPDATE``, so replicas admitting half-open trials on one target count them one
at a time: exactly ``half_open_requests`` are admitted, whichever replicas ask.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from remediator import breaker as breakers
from remediator.breaker import BreakerState, Transition
from remediator.config import CircuitBreakerConfig
from remediator.store.base import TransitionEvents
from remediator.store.postgres_tx import PgBase, Tx


async def _locked_breaker(tx: Tx, target: str, now: float) -> BreakerState:
    await tx.execute(
        "INSERT INTO breakers (target, state, failures, opened_at, trials, updated_at) "
        "VALUES (%s, 'closed', 0, NULL, 0, %s) ON CONFLICT (target) DO NOTHING",
        (target, now),
    )
    row = await tx.one(
        "SELECT state, failures, opened_at, trials FROM breakers WHERE target = %s FOR UPDATE",
        (target,),
    )
    assert row is not None
    return BreakerState(target=target, state=row[0], failures=row[1], opened_at=row[2], trials=row[3])  # fmt: skip


class PostgresBreakerOps(PgBase):
    async def breakers(self) -> list[BreakerState]:
        rows = await self._rows(
            "SELECT target, state, failures, opened_at, trials FROM breakers ORDER BY target"
        )
        return [BreakerState(*row) for row in rows]

    async def breaker(self, target: str) -> BreakerState:
        row = await self._row(
            "SELECT state, failures, opened_at, trials FROM breakers WHERE target = %s", (target,)
        )
        if row is None:
            return BreakerState(target=target)
        return BreakerState(target=target, state=row[0], failures=row[1], opened_at=row[2], trials=row[3])  # fmt: skip

    async def _breaker_step(
        self,
        target: str,
        now: float,
        step: Callable[[BreakerState], tuple[Any, Transition]],
        events: TransitionEvents,
    ) -> tuple[Any, Transition]:
        async def job(tx: Tx) -> tuple[Any, Transition]:
            answer, transition = step(await _locked_breaker(tx, target, now))
            s = transition.state
            await tx.execute(
                "UPDATE breakers SET state = %s, failures = %s, opened_at = %s, trials = %s, "
                "updated_at = %s WHERE target = %s",
                (s.state, s.failures, s.opened_at, s.trials, now, target),
            )
            if transition.changed_to is not None:
                await tx.append(events(transition))
            return answer, transition

        return await self._write(job)

    async def admit(
        self, target: str, settings: CircuitBreakerConfig, *, now: float, events: TransitionEvents
    ) -> tuple[bool, Transition]:
        """Atomically ask the target's breaker to admit one action (across replicas)."""
        allowed, transition = await self._breaker_step(
            target, now, lambda s: breakers.admit(s, settings, now), events
        )
        return bool(allowed), transition

    async def report(
        self,
        target: str,
        settings: CircuitBreakerConfig,
        *,
        ok: bool,
        now: float,
        events: TransitionEvents,
    ) -> Transition:
        _, transition = await self._breaker_step(
            target, now, lambda s: (None, breakers.record(s, settings, ok=ok, now=now)), events
        )
        return transition

    async def tick(
        self, target: str, settings: CircuitBreakerConfig, *, now: float, events: TransitionEvents
    ) -> Transition:
        _, transition = await self._breaker_step(
            target, now, lambda s: (None, breakers.tick(s, settings, now)), events
        )
        return transition

    async def reset_breaker(
        self, target: str, *, now: float, events: TransitionEvents
    ) -> Transition:
        _, transition = await self._breaker_step(
            target, now, lambda s: (None, breakers.reset(s)), events
        )
        return transition
