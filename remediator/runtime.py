"""The long-lived objects of one running remediator, built in the app's lifespan."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from remediator.audit.events import EventBus, Handler
from remediator.clients import Clients
from remediator.clock import Clock
from remediator.config.auth import Authenticator
from remediator.config.model import Config
from remediator.engine.approval_links import LinkSigner
from remediator.engine.auditor import Auditor
from remediator.engine.checkpoints import Checkpointer
from remediator.engine.engine import Engine
from remediator.engine.escalator import Escalator
from remediator.engine.health import HealthMonitor
from remediator.engine.outbox import Outbox
from remediator.engine.reconcile import Reconciler
from remediator.engine.retention import Retention
from remediator.engine.schedule import Scheduler
from remediator.engine.silences import Silencer
from remediator.engine.worker import Worker
from remediator.metrics import Metrics
from remediator.plugins import Plugins
from remediator.store import Store


class Limiter(Protocol):
    """The management API's per-caller rate limit (remediator/http/ratelimit.py, built by the app)."""

    def check(self, key: str) -> None: ...


class Throttle(Protocol):
    """Failed authentication per client address (remediator/http/throttle.py, built by the app)."""

    def wait(self, host: str | None) -> int: ...

    def failed(self, host: str | None) -> None: ...


@dataclass
class Runtime:
    config: Config
    store: Store
    metrics: Metrics
    authenticator: Authenticator
    clock: Clock
    bus: EventBus
    worker: Worker
    engine: Engine
    monitor: HealthMonitor
    clients: Clients
    plugins: Plugins
    outbox: Outbox
    escalator: Escalator
    # The management API: per-token rate limits (built by the HTTP layer).
    limiter: Limiter
    # Failed authentication, per client address (built by the HTTP layer).
    throttle: Throttle
    reconciler: Reconciler | None = None
    # Alertmanager silences while remediating (silences.url or alertmanager.url set).
    silencer: Silencer | None = None
    retention: Retention | None = None
    # Signed audit checkpoints (with audit.signing_key_file).
    checkpoints: Checkpointer | None = None
    # The audit chain verified every audit.verify_interval (the console's Now page).
    auditor: Auditor | None = None
    scheduler: Scheduler | None = None  # restarts deferred to a maintenance window
    draining: bool = False
    config_version: int = 1
    # The ids of the running patterns added through the API (remediator/engine/api_patterns.py).
    api_patterns: frozenset[str] = frozenset()
    started_at: float = field(default=0.0)
    # The Slack app's signing secret (approvals.slack_signing_secret_env; "": Slack refused).
    slack_signing_secret: str = ""
    # Signs and checks approval emails' links (approvals.link_secret_env; None: no links).
    approval_links: LinkSigner | None = None
    # True once start-up is done (GET /-/ready answers 503 before).
    started: bool = False
    # The file SIGHUP and POST /-/reload read again (None: started without one).
    config_file: Path | None = None
    # One configuration change at a time.
    config_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # One large (storm-sized) webhook notification stored at a time (remediator/http/intake.py).
    large_intake: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))

    def on(self, event_type: str, handler: Handler) -> None:
        """Subscribe to recorded events in-process: ``runtime.on("circuit:open", fn)``."""
        self.bus.on(event_type, handler)
