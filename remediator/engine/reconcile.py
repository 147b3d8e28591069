"""Reconciliation with Alertmanager: recover notifications that never arrived.

A resolve notification dropped while remediator was down longer than Alertmanager retried, or
alerts hidden by ``truncatedAlerts``, leave the inbox out of step with Alertmanager. Every
``alertmanager.reconcile_interval`` the :class:`Reconciler` reads ``GET /api/v2/alerts`` (active,
silenced, inhibited and unprocessed alerts) and

* ingests each active alert remediator has no open episode for, as a firing alert;
* closes each open episode whose fingerprint Alertmanager no longer lists, by ingesting a
  resolved alert (``endsAt`` = now) with the labels of the episode's stored alert.

A false resolve is sticky (a later firing copy with the same ``startsAt`` is a late repeat of the
closed episode), so closing is guarded: nothing is closed when Alertmanager cannot be read or
answers anything but a valid 200, or when it started less than ``startup_grace`` ago (it keeps
alerts in memory only; Prometheus re-sends them within a few evaluation intervals); an episode is
closed only when it started, and remediator first stored it, more than one interval ago.

With several replicas on one database, a round runs only on the replica holding the
``reconcile`` lease (renewed every round, for three intervals): the others answer ``ok`` with
``leader`` False and do nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx2
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from remediator.alerts import Alert, Episode
from remediator.clock import Clock
from remediator.config.model import AlertmanagerConfig
from remediator.engine.worker import worker_name
from remediator.errors import StoreUnavailable
from remediator.metrics import Metrics
from remediator.redaction import redact_text
from remediator.store import Store

log = logging.getLogger("remediator.reconcile")

RECEIVER = "reconcile"
GROUP_KEY = "reconcile"
TIMEOUT = 10.0
STARTUP_GRACE = 300.0
ACTIVE_STATES = frozenset({"active", "suppressed", "unprocessed"})
QUERY = {"active": "true", "silenced": "true", "inhibited": "true", "unprocessed": "true"}
LEASE = "reconcile"
M = TypeVar("M")


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class AlertState(_Model):
    state: str


class GettableAlert(_Model):
    """One entry of ``GET /api/v2/alerts`` (the fields remediator uses)."""

    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL")
    fingerprint: str = Field(min_length=1, max_length=64)
    status: AlertState


class AlertmanagerStatus(_Model):
    uptime: datetime  # when this Alertmanager started


_ALERTS = TypeAdapter(list[GettableAlert])
_STATUS = TypeAdapter(AlertmanagerStatus)


class FetchFailed(Exception):
    """Alertmanager could not be read; the message says why (credentials redacted)."""


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    fetched: int = 0  # entries in Alertmanager's answer
    new: int = 0  # firing alerts stored for the first time
    duplicates: int = 0  # active alerts remediator already had open
    closed: int = 0  # open episodes closed by a resolved alert
    ok: bool = False  # False: Alertmanager or the store failed, nothing (more) was done
    deferred: int = 0  # episodes missing from Alertmanager but not closed yet (guards)
    error: str = ""
    leader: bool = True  # False: another replica holds the reconcile lease; nothing was done


def firing(entry: GettableAlert) -> Alert:
    """An Alertmanager API alert as the firing webhook alert it stands for (no ``endsAt``)."""
    return Alert(
        status="firing",
        labels=entry.labels,
        annotations=entry.annotations,
        starts_at=entry.starts_at,
        ends_at=None,
        generator_url=entry.generator_url,
        fingerprint=entry.fingerprint,
    )


def _time(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


class Reconciler:
    def __init__(
        self,
        *,
        settings: AlertmanagerConfig,
        store: Store,
        clock: Clock,
        metrics: Metrics,
        client: httpx2.AsyncClient | None = None,
        on_new: Callable[[], None] | None = None,
        startup_grace: float = STARTUP_GRACE,
        owner: str | None = None,
    ) -> None:
        if not settings.url:
            raise ValueError("alertmanager.url is not set")
        self.settings = settings
        self.base = settings.url.rstrip("/")
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.on_new = on_new
        self.startup_grace = startup_grace
        self.owner = owner or worker_name()
        self._client = client
        self._owns_client = client is None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self.alive:
            return
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name="remediator-reconcile")

    async def stop(self) -> None:
        """Stop the loop (a round in progress is cancelled) and close the client it created."""
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("reconcile round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.settings.reconcile_interval)

    # -- one round ---------------------------------------------------------------------------

    async def run_once(self) -> ReconcileResult:
        started = self.clock.monotonic()
        try:
            leading = await self.store.lead(
                LEASE,
                owner=self.owner,
                now=self.clock.now(),
                ttl=3 * self.settings.reconcile_interval,
            )
        except StoreUnavailable as exc:
            log.warning(
                "reconcile failed; nothing closed", extra={"ok": False, "error": exc.message}
            )
            self.metrics.reconcile_rounds.labels("failure").inc()
            return ReconcileResult(ok=False, error=exc.message)
        if not leading:
            self.metrics.reconcile_rounds.labels("standby").inc()
            log.debug("another replica holds the reconcile lease", extra={"owner": self.owner})
            return ReconcileResult(ok=True, leader=False)
        try:
            status = await self._get("/api/v2/status", _STATUS, {})
            alerts = await self._get("/api/v2/alerts", _ALERTS, QUERY)
        except FetchFailed as exc:
            result = ReconcileResult(ok=False, error=str(exc))
        else:
            try:
                result = await self._apply(alerts, am_started=status.uptime.timestamp())
            except StoreUnavailable as exc:
                result = ReconcileResult(fetched=len(alerts), ok=False, error=exc.message)
        fields: dict[str, Any] = {
            "fetched": result.fetched,
            "new": result.new,
            "duplicates": result.duplicates,
            "closed": result.closed,
            "deferred": result.deferred,
            "ok": result.ok,
            "duration": round(self.clock.monotonic() - started, 3),
        }
        self.metrics.reconcile_rounds.labels("success" if result.ok else "failure").inc()
        if result.ok:
            log.info("reconciled with alertmanager", extra=fields)
        else:
            log.warning("reconcile failed; nothing closed", extra={**fields, "error": result.error})
        return result

    def _http(self) -> httpx2.AsyncClient:
        if self._client is None:
            self._client = httpx2.AsyncClient(
                timeout=httpx2.Timeout(TIMEOUT), follow_redirects=False, trust_env=False
            )
        return self._client

    async def _get(self, path: str, adapter: TypeAdapter[M], params: dict[str, str]) -> M:
        try:
            response = await self._http().get(
                self.base + path,
                params=params,
                timeout=TIMEOUT,
                follow_redirects=False,
                headers={"Accept": "application/json"},
            )
        except (httpx2.HTTPError, httpx2.InvalidURL) as exc:
            detail = redact_text(str(exc)) or type(exc).__name__
            raise FetchFailed(f"GET {path}: {detail}") from None
        if response.status_code != 200:
            raise FetchFailed(f"GET {path}: HTTP {response.status_code}")
        try:
            return adapter.validate_json(response.content)
        except ValidationError as exc:
            raise FetchFailed(f"GET {path}: invalid answer ({exc.error_count()} errors)") from None

    async def _apply(self, alerts: list[GettableAlert], *, am_started: float) -> ReconcileResult:
        now = self.clock.now()
        try:
            active = [firing(a) for a in alerts if a.status.state in ACTIVE_STATES]
        except ValidationError as exc:
            return ReconcileResult(fetched=len(alerts), error=f"invalid alert: {exc}")
        # Any listed fingerprint, whatever its state, keeps its episode open.
        listed = {a.fingerprint for a in alerts}
        episodes = await self.store.open_episodes()
        known = {e.fingerprint for e in episodes}
        unknown = list({a.fingerprint: a for a in active if a.fingerprint not in known}.values())
        new = 0
        if unknown:
            stored = await self.store.ingest(
                unknown, received_at=now, receiver=RECEIVER, group_key=GROUP_KEY
            )
            new, _events = stored.new, stored.events
        missing = [e for e in episodes if e.fingerprint not in listed]
        closing: list[Alert] = []
        if missing and now - am_started > max(self.startup_grace, self.settings.reconcile_interval):
            closing = await self._resolutions(missing, now)
        closed = 0
        if closing:
            stored = await self.store.ingest(
                closing, received_at=now, receiver=RECEIVER, group_key=GROUP_KEY
            )
            closed = stored.new
        if new + closed:
            self.metrics.inbox_pending.inc(new + closed)
            if self.on_new is not None:
                self.on_new()
        return ReconcileResult(
            fetched=len(alerts),
            new=new,
            duplicates=len(active) - new,
            closed=closed,
            ok=True,
            deferred=len(missing) - len(closing),
        )

    async def _resolutions(self, missing: list[Episode], now: float) -> list[Alert]:
        """Resolved alerts for the missing episodes old enough to be closed safely."""
        horizon = now - self.settings.reconcile_interval
        out: list[Alert] = []
        for episode in missing:
            if episode.starts_at > horizon:
                continue  # just started: Alertmanager's answer may predate it
            item = await self.store.latest_alert(episode.fingerprint)
            if item is None or item.episode_id != episode.id or item.received_at > horizon:
                continue  # stored just now (by a webhook racing this round), or changed since
            out.append(
                Alert(
                    status="resolved",
                    labels=item.labels,
                    annotations=item.annotations,
                    starts_at=_time(episode.starts_at),
                    ends_at=_time(now),
                    generator_url=item.generator_url,
                    fingerprint=episode.fingerprint,
                )
            )
        return out
