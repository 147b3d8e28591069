"""Health monitoring of registered targets, and half-open probes of open circuit breakers.

Each target is checked on its interval (``check_interval``, else the seed's interval for its
kind: services 60 s, external HTTP APIs 2 min, processes 30 s). Results are exported as
``remediator_target_up`` and ``remediator_target_check_duration_seconds``; a change of state is
an event (``service:degraded`` / ``service:recovered``). When an open breaker's reset timeout has
passed, the monitor moves it to half-open and probes the target: a healthy probe closes it, an
unhealthy one opens it again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

from remediator import events as ev
from remediator.breaker import STATE_VALUE, Transition
from remediator.checks.base import CheckResult, HealthCheck
from remediator.clients import Clients
from remediator.clock import Clock
from remediator.config import Config
from remediator.events import Event, EventBus
from remediator.metrics import Metrics
from remediator.periodic import Periodic
from remediator.store import Store
from remediator.targets import Target

log = logging.getLogger("remediator.health")
LOOP_TICK = 1.0


class HealthMonitor:
    def __init__(
        self,
        *,
        config: Config,
        checks: dict[str, HealthCheck],
        clients: Clients,
        store: Store,
        metrics: Metrics,
        clock: Clock,
        bus: EventBus,
        config_version: int = 1,
    ) -> None:
        self.checks = checks
        self.clients = clients
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.bus = bus
        self._status: dict[str, CheckResult] = {}
        self._due: dict[str, float] = {}
        self._periodic = Periodic("health", LOOP_TICK, self.run_due)
        self.apply(config, config_version)

    def apply(self, config: Config, version: int) -> None:
        self.config = config
        self.config_version = version
        names = {t.name for t in config.targets}
        for gone in set(self._status) - names:
            del self._status[gone]

    def interval(self, target: Target) -> float:
        if target.check_interval is not None:
            return target.check_interval
        health = self.config.health
        if target.type == "http":
            return health.external_interval
        if target.type == "process":
            return health.system_interval
        return health.service_interval

    def status(self, name: str) -> CheckResult | None:
        return self._status.get(name)

    def statuses(self) -> dict[str, CheckResult]:
        return dict(self._status)

    async def check_now(self, target: Target) -> CheckResult:
        """Run the target's check now; record metrics, and an event when its state changed."""
        check = self.checks.get(target.type)
        started = time.monotonic()
        if check is None:
            result = CheckResult(False, f"no health check for type {target.type}")
        else:
            try:
                result = await asyncio.wait_for(
                    check.check(target, self.clients, timeout=target.check_timeout),
                    timeout=target.check_timeout + 1.0,
                )
            except TimeoutError:
                result = CheckResult(False, f"check timed out after {target.check_timeout:.0f}s")
            except Exception as exc:
                result = CheckResult(False, f"check failed: {type(exc).__name__}")
        duration = time.monotonic() - started
        self.metrics.target_up.labels(target.name).set(1 if result.healthy else 0)
        self.metrics.target_check_duration.labels(target.name).observe(duration)
        previous = self._status.get(target.name)
        self._status[target.name] = result
        if previous is None and result.healthy:
            return result
        if previous is None or previous.healthy != result.healthy:
            kind = ev.SERVICE_RECOVERED if result.healthy else ev.SERVICE_DEGRADED
            event = Event(
                type=kind,
                time=self.clock.now(),
                target=target.name,
                severity="info" if result.healthy else "high",
                outcome="up" if result.healthy else "down",
                message=result.detail,
                actor="health",
                config_version=self.config_version,
            )
            await self._record([event])
        return result

    async def probe(self, target: Target) -> bool:
        return (await self.check_now(target)).healthy

    async def _record(self, events: list[Event]) -> None:
        try:
            await self.store.append(events)
        except Exception:
            log.warning("health event not recorded", extra={"events": [e.type for e in events]})
            return

    def _transition_events(self, t: Transition) -> list[Event]:
        kind = {"open": ev.CIRCUIT_OPEN, "half-open": ev.CIRCUIT_HALF_OPEN}.get(
            t.changed_to or "", ev.CIRCUIT_CLOSED
        )
        return [
            Event(
                type=kind,
                time=self.clock.now(),
                target=t.state.target,
                actor="health",
                outcome=t.changed_to or "",
                message=f"circuit {t.changed_to} (health probe)",
                config_version=self.config_version,
            )
        ]

    async def probe_breaker(self, target: Target) -> None:
        """Half-open an open breaker whose timeout passed, and let a health probe decide."""
        settings = self.config.circuit_breaker
        now = self.clock.now()
        transition = await self.store.tick(
            target.name, settings, now=now, events=self._transition_events
        )
        if transition.changed_to != "half-open":
            return
        self.metrics.circuit_state.labels(target.name).set(STATE_VALUE["half-open"])
        healthy = await self.probe(target)
        after = await self.store.report(
            target.name, settings, ok=healthy, now=self.clock.now(), events=self._transition_events
        )
        self.metrics.circuit_state.labels(target.name).set(STATE_VALUE[after.state.state])
        if after.changed_to == "open":
            self.metrics.circuit_trips.labels(target.name).inc()

    async def run_due(self) -> None:
        """One round: every target whose check is due, and every open breaker."""
        now = self.clock.monotonic()
        breakers = {b.target: b for b in await self.store.breakers()}
        work: list[Coroutine[Any, Any, object]] = []
        for target in self.config.targets:
            state = breakers.get(target.name)
            if state is not None and state.state == "open":
                work.append(self.probe_breaker(target))
            if now >= self._due.get(target.name, 0.0):
                self._due[target.name] = now + self.interval(target)
                work.append(self.check_now(target))
        await asyncio.gather(*work)

    async def start(self) -> None:
        await self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
