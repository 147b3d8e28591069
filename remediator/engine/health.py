"""Health monitoring of registered targets, and half-open probes of open circuit breakers.

Each target is checked on its interval (``check_interval``, else the seed's interval for its
kind: services 60 s, external HTTP APIs 2 min, processes 30 s). Results are exported as
``remediator_target_up`` and ``remediator_target_check_duration_seconds``; an HTTP target that
failed over is checked on its active endpoint (remediator/engine/runner.py). A change of state is
an event (``service:degraded`` / ``service:recovered``). When an open breaker's reset timeout has
passed, the monitor moves it to half-open and probes the target: a healthy probe closes it, an
unhealthy one opens it again.

With several replicas on one database, every replica checks its targets (its own
``remediator_target_up``, and the probes of ``verify.health`` steps), but only the one holding
the ``health`` lease records state changes and probes open breakers, so a change is one event,
not one per replica. The lease is renewed every ``LEAD_RENEW`` seconds for ``LEAD_TTL``: when
its holder dies, another replica takes over within ``LEAD_TTL + LEAD_RENEW``. A new holder
starts from the states last recorded (the newest ``service:degraded`` / ``service:recovered``
of the monitor per target), so a change no holder recorded is recorded late, not lost, and not
twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

from remediator.audit import events as ev
from remediator.audit.events import Event, EventBus
from remediator.checks.base import CheckResult, HealthCheck
from remediator.checks.queue import export_queues
from remediator.clients import Clients
from remediator.clock import Clock
from remediator.config.model import Config
from remediator.config.targets import QUEUE_TARGET_TYPES, Target
from remediator.engine.guards import STATE_VALUE, CircuitBreakers, Transition
from remediator.engine.periodic import Periodic
from remediator.engine.runner import resolve_failover
from remediator.engine.worker import worker_name
from remediator.errors import StoreUnavailable
from remediator.metrics import Metrics
from remediator.store import EventQuery, Store
from remediator.store.records import BreakerState

log = logging.getLogger("remediator.health")
LOOP_TICK = 1.0
LEASE = "health"
LEAD_RENEW = 5.0  # seconds between attempts to take or renew the lease
LEAD_TTL = 15.0  # how long a taken lease holds: three renewals
ACTOR = "health"
RECORDED_LOOKBACK = 20  # events of a kind per target searched for the monitor's own


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
        owner: str | None = None,
    ) -> None:
        self.checks = checks
        self.owner = owner or worker_name()
        self._leading = False
        self._lead_checked: float | None = None  # monotonic time of the last lease attempt
        self._reported: dict[str, bool] = {}  # the state last recorded, while leading
        self.clients = clients
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.bus = bus
        self._status: dict[str, CheckResult] = {}
        self._following: dict[str, Target] = {}  # the endpoint last read, for a store outage
        self._due: dict[str, float] = {}
        self._periodic = Periodic("health", LOOP_TICK, self.run_due)
        self.apply(config, config_version)

    def apply(self, config: Config, version: int) -> None:
        self.config = config
        self.config_version = version
        names = {t.name for t in config.targets}
        for gone in set(self._status) - names:
            del self._status[gone]
        for gone in set(self._reported) - names:
            del self._reported[gone]
        self._following.clear()  # targets may have changed: read them again

    def interval(self, target: Target) -> float:
        if target.check_interval is not None:
            return target.check_interval
        health = self.config.health
        if target.type == "http":
            return health.external_interval
        if target.type in ("process", "ssh_host"):
            return health.system_interval
        if target.type in QUEUE_TARGET_TYPES:
            return self.config.self_healing.queue_interval
        return health.service_interval

    async def leading(self) -> bool:
        """Whether this replica holds the ``health`` lease: taken or renewed at most every
        ``LEAD_RENEW`` seconds, so an answer is never used beyond its lease's expiry."""
        now = self.clock.monotonic()
        if self._lead_checked is not None and now - self._lead_checked < LEAD_RENEW:
            return self._leading
        self._lead_checked = now
        was = self._leading
        try:
            self._leading = await self.store.lead(
                LEASE, owner=self.owner, now=self.clock.now(), ttl=LEAD_TTL
            )
            if self._leading and not was:
                self._reported = await self._recorded_states()
        except StoreUnavailable as exc:
            log.warning("health lease not renewed", extra={"error": exc.message})
            self._leading = False
        if not self._leading:
            self._reported.clear()  # another replica records; reread when leading again
        return self._leading

    async def _recorded_states(self) -> dict[str, bool]:
        """Per target, the state the health monitor (of any replica) last recorded: where a
        new lease holder picks up, so it records what changed since, once."""
        found: dict[str, tuple[int, bool]] = {}
        for kind, healthy in ((ev.SERVICE_DEGRADED, False), (ev.SERVICE_RECOVERED, True)):
            for target in self.config.targets:
                query = EventQuery(type=kind, target=target.name, limit=RECORDED_LOOKBACK)
                for event in await self.store.events(query):
                    if event.actor != ACTOR or event.id is None:
                        continue
                    if event.id > found.get(target.name, (0, True))[0]:
                        found[target.name] = (event.id, healthy)
                    break  # newest first
        return {name: healthy for name, (_, healthy) in found.items()}

    def status(self, name: str) -> CheckResult | None:
        return self._status.get(name)

    def statuses(self) -> dict[str, CheckResult]:
        return dict(self._status)

    async def check_now(self, target: Target) -> CheckResult:
        """Run the target's check now; record metrics, and (on the replica holding the health
        lease) an event when its state changed."""
        check = self.checks.get(target.type)
        started = time.monotonic()
        target = await self._follow(target)
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
        export_queues(self.metrics, target.name, result)
        self._status[target.name] = result
        if not await self.leading():
            return result
        previous = self._reported.get(target.name)
        self._reported[target.name] = result.healthy
        if previous is None and result.healthy:
            return result
        if previous is None or previous != result.healthy:
            kind = ev.SERVICE_RECOVERED if result.healthy else ev.SERVICE_DEGRADED
            event = Event(
                type=kind,
                time=self.clock.now(),
                target=target.name,
                severity="info" if result.healthy else "high",
                outcome="up" if result.healthy else "down",
                message=result.detail,
                actor=ACTOR,
                config_version=self.config_version,
            )
            await self._record([event])
        return result

    async def _follow(self, target: Target) -> Target:
        """The target on the endpoint a failover made active (remediator/engine/runner.py); while
        the store is unavailable, the endpoint last read."""
        try:
            following = await resolve_failover(self.store, target)
        except StoreUnavailable:
            return self._following.get(target.name, target)
        self._following[target.name] = following
        return following

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
                actor=ACTOR,
                outcome=t.changed_to or "",
                message=f"circuit {t.changed_to} (health probe)",
                config_version=self.config_version,
            )
        ]

    async def probe_breaker(self, target: Target) -> None:
        """Half-open an open breaker whose timeout passed, and let a health probe decide."""
        settings = self.config.circuit_breaker
        now = self.clock.now()
        transition = await CircuitBreakers(self.store).tick(
            target.name, settings, now=now, events=self._transition_events
        )
        if transition.changed_to != "half-open":
            return
        self.metrics.circuit_state.labels(target.name).set(STATE_VALUE["half-open"])
        healthy = await self.probe(target)
        after = await CircuitBreakers(self.store).report(
            target.name, settings, ok=healthy, now=self.clock.now(), events=self._transition_events
        )
        self.metrics.circuit_state.labels(target.name).set(STATE_VALUE[after.state.state])
        if after.changed_to == "open":
            self.metrics.circuit_trips.labels(target.name).inc()

    async def run_due(self) -> None:
        """One round: every target whose check is due, and (on the replica holding the health
        lease) every open breaker."""
        now = self.clock.monotonic()
        breakers: dict[str, BreakerState] = {}
        if await self.leading():
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
