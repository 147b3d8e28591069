"""Reconciliation against a real Alertmanager and a real SQLite store."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from remediator.alerts import Alert, Episode
from remediator.audit.events import ALERT_RECEIVED, ALERT_RESOLVED, Event
from remediator.clock import FakeClock
from remediator.config.model import AlertmanagerConfig
from remediator.engine.reconcile import Reconciler
from remediator.logs import JsonFormatter
from remediator.metrics import Metrics
from remediator.store import EventQuery, Store, create_store
from tests.alertmanager import Alertmanager
from tests.store_helpers import chained

pytestmark = pytest.mark.prometheus

INTERVAL = 60.0


@pytest.fixture
def am(tmp_path: Path, alertmanager_bin: str) -> Iterator[Alertmanager]:
    server = Alertmanager(alertmanager_bin, tmp_path / "am")
    yield server
    server.stop()


class Rig:
    """A store, a fake clock (starting at the real time) and a reconciler against ``url``."""

    def __init__(self, store: Store, url: str) -> None:
        self.store = store
        self.clock = FakeClock(start=float(int(time.time())))  # whole seconds: exact datetimes
        self.metrics = Metrics()
        self.wakes = 0
        self.reconciler = Reconciler(
            settings=AlertmanagerConfig(url=url, reconcile_interval=INTERVAL),
            store=store,
            clock=self.clock,
            metrics=self.metrics,
            on_new=self._woken,
        )

    def _woken(self) -> None:
        self.wakes += 1

    async def events(self, kind: str) -> list[Event]:
        await chained(self.store)  # as the worker's next claim would
        return await self.store.events(EventQuery(type=kind, limit=1000))

    async def open_episode(self, fingerprint: str) -> Episode | None:
        return next(
            (e for e in await self.store.open_episodes() if e.fingerprint == fingerprint), None
        )

    async def ingest_direct(
        self, fingerprint: str, *, started_ago: float, stored_ago: float
    ) -> None:
        """A firing alert a webhook stored ``stored_ago`` s ago; Alertmanager never saw it."""
        now = self.clock.now()
        alert = Alert(
            status="firing",
            labels={"alertname": "Gone", "instance": fingerprint, "severity": "warning"},
            annotations={"summary": "only in remediator"},
            starts_at=datetime.fromtimestamp(now - started_ago, tz=UTC),
            generator_url="http://127.0.0.1:9090/graph",
            fingerprint=fingerprint,
        )
        await self.store.ingest(
            [alert], received_at=now - stored_ago, receiver="remediator", group_key="{}"
        )


def run(tmp_path: Path, url: str, scenario: Callable[[Rig], Awaitable[None]]) -> None:
    async def main() -> None:
        store = create_store(f"sqlite:///{tmp_path}/s.db")
        await store.open()
        rig = Rig(store, url)
        try:
            await scenario(rig)
        finally:
            await rig.reconciler.stop()
            await store.close()

    asyncio.run(main())


def _am_alert(name: str, **labels: str) -> dict[str, Any]:
    return {
        "labels": {"alertname": name, "severity": "critical", **labels},
        "annotations": {"summary": f"{name} test"},
        "startsAt": datetime.now(UTC).isoformat(),
        "generatorURL": "http://127.0.0.1:9090/graph",
    }


def test_active_alerts_are_stored_once_silenced_included(tmp_path: Path, am: Alertmanager) -> None:
    am.post([_am_alert("DiskFull", instance="a"), _am_alert("Muted", instance="b")])
    am.silence({"alertname": "Muted"})
    states = {a["labels"]["alertname"]: a["status"]["state"] for a in am.alerts()}
    assert states == {"DiskFull": "active", "Muted": "suppressed"}

    async def scenario(rig: Rig) -> None:
        first = await rig.reconciler.run_once()
        assert (first.ok, first.fetched, first.new, first.duplicates, first.closed) == (
            True,
            2,
            2,
            0,
            0,
        )
        assert await rig.store.pending_count() == 2
        received = await rig.events(ALERT_RECEIVED)
        assert sorted(e.alertname for e in received) == ["DiskFull", "Muted"]
        assert {e.actor for e in received} == {"alertmanager:reconcile"}
        assert rig.wakes == 1
        assert rig.metrics.registry.get_sample_value("remediator_inbox_pending") == 2
        fingerprints = {a["fingerprint"] for a in am.alerts()}
        assert {e.fingerprint for e in await rig.store.open_episodes()} == fingerprints
        labels = (await rig.store.raw("SELECT labels, ends_at, receiver FROM inbox ORDER BY id"))[0]
        assert '"instance": "a"' in labels[0] or '"instance": "b"' in labels[0]
        assert labels[1:] == (None, "reconcile")

        chain_length = len(await rig.store.events(EventQuery(limit=1000)))
        again = await rig.reconciler.run_once()
        assert (again.ok, again.new, again.duplicates, again.closed) == (True, 0, 2, 0)
        assert await rig.store.pending_count() == 2
        assert rig.wakes == 1
        # Known alerts are not re-ingested: no alert:duplicate noise in the chain every round.
        assert len(await rig.store.events(EventQuery(limit=1000))) == chain_length

    run(tmp_path, am.url, scenario)


def test_episode_missing_from_alertmanager_is_closed_when_safe(
    tmp_path: Path, am: Alertmanager
) -> None:
    am.post([_am_alert("StillFiring", instance="x")])

    async def scenario(rig: Rig) -> None:
        await rig.ingest_direct("0000000000000001", started_ago=3600, stored_ago=3600)
        # Alertmanager started seconds ago: its (in-memory) alert list may not be complete yet.
        fresh_am = await rig.reconciler.run_once()
        assert (fresh_am.ok, fresh_am.new, fresh_am.closed, fresh_am.deferred) == (True, 1, 0, 1)
        assert await rig.open_episode("0000000000000001") is not None

        rig.clock.advance(600)
        await rig.ingest_direct("0000000000000002", started_ago=10, stored_ago=10)  # just started
        await rig.ingest_direct("0000000000000003", started_ago=7200, stored_ago=1)  # just stored
        result = await rig.reconciler.run_once()
        assert (result.ok, result.new, result.duplicates) == (True, 0, 1)
        assert (result.closed, result.deferred) == (1, 2)
        assert await rig.open_episode("0000000000000001") is None
        (resolved,) = await rig.events(ALERT_RESOLVED)
        assert (resolved.fingerprint, resolved.alertname) == ("0000000000000001", "Gone")
        assert resolved.actor == "alertmanager:reconcile"
        assert resolved.details["ends_at"] == rig.clock.now()
        assert resolved.details["starts_at"] == pytest.approx(rig.clock.now() - 600 - 3600)
        row = await rig.store.raw(
            "SELECT e.resolved_at, i.labels, i.annotations FROM episodes e "
            "JOIN inbox i ON i.episode_id = e.id AND i.status = 'resolved' "
            "WHERE e.fingerprint = '0000000000000001'"
        )
        assert row[0][0] == rig.clock.now()
        assert '"instance": "0000000000000001"' in row[0][1]
        assert "only in remediator" in row[0][2]
        assert await rig.open_episode("0000000000000002") is not None
        assert await rig.open_episode("0000000000000003") is not None
        assert rig.wakes == 2

        # The guards only delay: one interval later both are closed; Alertmanager's stays open.
        rig.clock.advance(INTERVAL + 1)
        later = await rig.reconciler.run_once()
        assert (later.closed, later.deferred) == (2, 0)
        assert [e.fingerprint for e in await rig.store.open_episodes()] == [
            am.alerts()[0]["fingerprint"]
        ]

    run(tmp_path, am.url, scenario)


def test_resolve_lost_while_down_is_recovered(tmp_path: Path, am: Alertmanager) -> None:
    alert = _am_alert("Flapping", instance="f")
    am.post([alert])

    async def scenario(rig: Rig) -> None:
        assert (await rig.reconciler.run_once()).new == 1
        # Alertmanager resolves it; the webhook with the resolve never reaches remediator.
        am.post([{**alert, "endsAt": datetime.now(UTC).isoformat()}])
        assert am.alerts() == []
        rig.clock.advance(600)
        result = await rig.reconciler.run_once()
        assert (result.ok, result.fetched, result.closed) == (True, 0, 1)
        assert await rig.store.open_episodes() == []
        (resolved,) = await rig.events(ALERT_RESOLVED)
        assert resolved.alertname == "Flapping"

    run(tmp_path, am.url, scenario)


def test_unreachable_or_failing_alertmanager_closes_nothing(
    tmp_path: Path, am: Alertmanager, caplog: pytest.LogCaptureFixture
) -> None:
    am.post([_am_alert("Known", instance="k")])
    caplog.set_level(logging.INFO, logger="remediator.reconcile")

    async def scenario(rig: Rig) -> None:
        assert (await rig.reconciler.run_once()).new == 1
        await rig.ingest_direct("0000000000000001", started_ago=3600, stored_ago=3600)
        rig.clock.advance(3600)
        chain_length = len(await rig.store.events(EventQuery(limit=1000)))

        wrong = Rig(rig.store, am.url + "/no/such/prefix")
        try:
            not_found = await wrong.reconciler.run_once()
        finally:
            await wrong.reconciler.stop()
        assert (not_found.ok, not_found.closed) == (False, 0)
        assert "HTTP 404" in not_found.error

        am.stop()
        caplog.clear()
        down = await rig.reconciler.run_once()
        (record,) = [r for r in caplog.records if r.name == "remediator.reconcile"]
        line = json.loads(JsonFormatter().format(record))
        assert (line["level"], line["ok"], line["closed"]) == ("warning", False, 0)
        assert line["error"] == down.error
        assert (down.ok, down.fetched, down.new, down.closed) == (False, 0, 0, 0)
        assert down.error.startswith("GET /api/v2/status")
        assert len(await rig.store.open_episodes()) == 2
        assert len(await rig.store.events(EventQuery(limit=1000))) == chain_length

    run(tmp_path, am.url, scenario)


def test_background_loop_wakes_the_worker_and_stops(tmp_path: Path, am: Alertmanager) -> None:
    am.post([_am_alert("Looped", instance="l")])

    async def scenario(rig: Rig) -> None:
        woken = asyncio.Event()
        rig.reconciler.on_new = woken.set
        await rig.reconciler.start()
        assert rig.reconciler.alive
        await asyncio.wait_for(woken.wait(), timeout=15)
        await rig.reconciler.stop()
        assert not rig.reconciler.alive
        assert await rig.store.pending_count() == 1

    run(tmp_path, am.url, scenario)
