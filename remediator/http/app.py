"""The Starlette application: routes, and the lifespan that builds the runtime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from remediator import logs, reload, tracing
from remediator.actions import Action, builtin_actions
from remediator.audit.events import EventBus
from remediator.checks import builtin_checks
from remediator.clients import Clients
from remediator.clock import Clock, SystemClock
from remediator.config.auth import Authenticator
from remediator.config.model import Config
from remediator.engine import api_patterns, quarantine
from remediator.engine.approval_links import link_signer
from remediator.engine.auditor import Auditor
from remediator.engine.checkpoints import checkpointer
from remediator.engine.engine import Engine
from remediator.engine.escalator import Escalator
from remediator.engine.health import HealthMonitor
from remediator.engine.outbox import Outbox
from remediator.engine.prometheus import PrometheusQuerier
from remediator.engine.reconcile import Reconciler
from remediator.engine.retention import Retention
from remediator.engine.runner import StepRunner
from remediator.engine.schedule import Scheduler
from remediator.engine.silences import Silencer
from remediator.engine.worker import Worker
from remediator.http import console, endpoints
from remediator.http.intake import App
from remediator.http.ratelimit import RateLimiter
from remediator.http.throttle import AuthThrottle
from remediator.metrics import Metrics
from remediator.notifiers import CHANNELS, build_notifiers
from remediator.notifiers.slack_groups import SlackGroups
from remediator.plugins import Plugins
from remediator.plugins import load as load_plugins
from remediator.policy import recording_for
from remediator.runtime import Runtime
from remediator.store import Store, create_store

log = logging.getLogger("remediator.app")


def routes() -> list[BaseRoute]:
    """Every endpoint, from the one route table that also builds the OpenAPI document, after the
    console's pages (remediator/http/console/)."""
    return [*console.routes(), *endpoints.routes()]


def create_app(
    config: Config,
    *,
    authenticator: Authenticator,
    clock: Clock | None = None,
    store: Store | None = None,
    metrics: Metrics | None = None,
    plugins: Plugins | None = None,
    actions: dict[str, Action] | None = None,
    rng: random.Random | None = None,
    on_runtime: Callable[[Runtime], None] | None = None,
) -> Starlette:
    """The app. Everything long-lived is built in the lifespan and reached via request.state
    (``scope["state"]``); the Alertmanager webhook is served in front of the Starlette routing
    (remediator/http/intake.py).

    ``actions`` replaces the built-in action registry (tests use it to count calls)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        rt = await build_runtime(
            config,
            authenticator=authenticator,
            clock=clock,
            store=store,
            metrics=metrics,
            plugins=plugins,
            actions=actions,
            rng=rng,
        )
        await start(rt)
        app.state.runtime = rt
        if on_runtime is not None:
            on_runtime(rt)
        log.info("remediator started", extra={"store": _redacted(config.store.url)})
        try:
            yield {"runtime": rt}
        finally:
            await stop(rt)
            log.info("remediator stopped")

    return App(
        routes=routes(),
        lifespan=lifespan,
        exception_handlers=dict.fromkeys((404, 405), endpoints.http_error),
    )


async def build_runtime(
    config: Config,
    *,
    authenticator: Authenticator,
    clock: Clock | None = None,
    store: Store | None = None,
    metrics: Metrics | None = None,
    plugins: Plugins | None = None,
    actions: dict[str, Action] | None = None,
    rng: random.Random | None = None,
) -> Runtime:
    the_clock = clock or SystemClock()
    the_store = store or create_store(config.store.url)
    await the_store.open()
    the_metrics = metrics or Metrics()
    the_metrics.expect_channels(CHANNELS)
    the_plugins = plugins if plugins is not None else load_plugins()
    recording = recording_for(config, authenticator)
    the_store.configure(recording)
    logs.protect(recording.secrets)
    bus = EventBus()
    the_plugins.subscribe(bus)
    the_store.subscribe(bus.feed_threadsafe)
    # The patterns added through the API come after the file's (remediator/engine/api_patterns.py).
    merged = await api_patterns.at_startup(the_store, config)
    config = merged.config
    # The configuration's version survives restarts (remediator/reload.py).
    version = await reload.startup_version(the_store, config, now=the_clock.now())
    await api_patterns.drop(
        the_store, merged.dropped, actor="startup", source="file", now=the_clock.now(),
        config_version=version,
    )  # fmt: skip
    clients = Clients()
    registry = {**(actions if actions is not None else builtin_actions()), **the_plugins.actions}
    monitor = HealthMonitor(
        config=config,
        checks={**builtin_checks(), **the_plugins.checks},
        clients=clients,
        store=the_store,
        metrics=the_metrics,
        clock=the_clock,
        bus=bus,
        config_version=version,
    )
    query = PrometheusQuerier(config.prometheus) if config.prometheus.url else None
    runner = StepRunner(
        actions=registry,
        clients=clients,
        store=the_store,
        metrics=the_metrics,
        clock=the_clock,
        slots=asyncio.Semaphore(config.safety.max_concurrent_actions),
        probe=monitor.probe,
        query=query,
    )
    engine = Engine(
        config=config,
        store=the_store,
        metrics=the_metrics,
        clock=the_clock,
        runner=runner,
        config_version=version,
        rng=rng,
        strategies=the_plugins.strategies,
        lease=config.worker.lease,
    )
    engine.approvals.groups = SlackGroups.build(config.notifications.slack, clock=the_clock)
    worker = Worker(
        store=the_store,
        metrics=the_metrics,
        clock=the_clock,
        bus=bus,
        settings=config.worker,
        process=engine.process,
        prepare=engine.prepare,
    )
    worker.tracing = tracing.build(
        enabled=config.tracing.enabled,
        service_name=config.tracing.service_name,
        sample_ratio=config.tracing.sample_ratio,
        otlp_endpoint=config.tracing.otlp_endpoint,
        header_env=config.tracing.headers_env,
    )
    reconciler = None
    if config.alertmanager.url:
        reconciler = Reconciler(
            settings=config.alertmanager,
            store=the_store,
            clock=the_clock,
            metrics=the_metrics,
            on_new=worker.wake,
        )
    silencer = None
    if silences_url := config.silences.url or config.alertmanager.url:
        silencer = Silencer(
            url=silences_url, settings=config.silences, store=the_store, clock=the_clock,
            metrics=the_metrics, config=lambda: engine.config,
        )  # fmt: skip
        bus.on("*", silencer.on_event)
    outbox = Outbox(
        store=the_store,
        notifiers=build_notifiers(config, clock=the_clock),
        metrics=the_metrics,
        clock=the_clock,
        max_batch=config.notifications.max_alerts_per_message,
    )
    # One tracing for every span (remediator/tracing.py): intake reads it from the worker.
    outbox.tracing = engine.tracing = runner.tracing = worker.tracing
    retention = Retention(
        store=the_store,
        retention=config.audit.retention,
        recording=recording,
        clock=the_clock,
        tables=config.retention,
        metrics=the_metrics,
    )
    escalator = Escalator(config=config, store=the_store, clock=the_clock, metrics=the_metrics)
    checkpoints = checkpointer(config, store=the_store, clock=the_clock, metrics=the_metrics)
    limiter = RateLimiter(config.api.rate_limit.rate, config.api.rate_limit.burst)
    throttle = AuthThrottle(
        failures=config.auth.throttle.failures,
        window=config.auth.throttle.window,
        clock=the_clock.monotonic,
    )
    return Runtime(
        scheduler=Scheduler(engine=engine, store=the_store, clock=the_clock),
        limiter=limiter,
        throttle=throttle,
        escalator=escalator,
        retention=retention,
        checkpoints=checkpoints,
        auditor=Auditor(
            store=the_store,
            interval=config.audit.verify_interval,
            clock=the_clock,
            metrics=the_metrics,
        ),
        outbox=outbox,
        reconciler=reconciler,
        silencer=silencer,
        config=config,
        store=the_store,
        metrics=the_metrics,
        authenticator=authenticator,
        clock=the_clock,
        bus=bus,
        worker=worker,
        engine=engine,
        monitor=monitor,
        clients=clients,
        plugins=the_plugins,
        started_at=the_clock.now(),
        config_version=version,
        api_patterns=merged.api_ids,
        slack_signing_secret=slack_signing_secret(config),
        approval_links=link_signer(
            secret_env=config.approvals.link_secret_env,
            public_url=config.approvals.public_url,
            env=os.environ,
        ),
    )


def slack_signing_secret(config: Config) -> str:
    """The Slack signing secret from ``approvals.slack_signing_secret_env`` ("" when unset)."""
    name = config.approvals.slack_signing_secret_env
    return os.environ.get(name, "").strip() if name else ""


async def start(rt: Runtime) -> None:
    await rt.bus.start()
    await rt.engine.startup()
    rt.metrics.paused.set(1 if await rt.engine.guards.paused() else 0)
    rt.metrics.inbox_pending.set(await rt.store.pending_count())
    await quarantine.export(rt.store, rt.metrics, names=[t.name for t in rt.config.targets])
    await rt.worker.start()
    if rt.reconciler is not None:
        await rt.reconciler.start()
    await rt.outbox.start()
    if rt.silencer is not None:
        await rt.silencer.start()
    await rt.escalator.start()
    await rt.engine.approvals.start()
    if rt.retention is not None:
        await rt.retention.start()
    if rt.checkpoints is not None:
        await rt.checkpoints.start()
    if rt.auditor is not None:
        await rt.auditor.start()
    if rt.scheduler is not None:
        await rt.scheduler.start()
    if rt.config.health.enabled:
        await rt.monitor.start()
    rt.metrics.config_reload_timestamp.set(rt.clock.now())
    rt.started = True


async def stop(rt: Runtime) -> None:
    rt.draining = True
    if rt.reconciler is not None:
        await rt.reconciler.stop()
    await rt.monitor.stop()
    await rt.worker.stop(timeout=rt.config.server.drain_timeout)
    if rt.checkpoints is not None:
        await rt.checkpoints.stop()
    if rt.auditor is not None:
        await rt.auditor.stop()
    await rt.outbox.stop()
    rt.worker.tracing.shutdown()  # flush the exporter (after the outbox's last notification span)
    if rt.silencer is not None:
        await rt.silencer.stop()
    await rt.escalator.stop()
    await rt.engine.approvals.stop()
    if rt.retention is not None:
        await rt.retention.stop()
    if rt.scheduler is not None:
        await rt.scheduler.stop()
    await asyncio.to_thread(rt.clients.close)
    if isinstance(rt.engine.runner.query, PrometheusQuerier):
        rt.engine.runner.query.close()
    await rt.clients.aclose()
    await rt.store.close()
    await rt.bus.stop()


def _redacted(url: str) -> str:
    """A store URL without credentials."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"
