"""A real Alertmanager delivers to a real remediator with a bearer token."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.alertmanager import Alertmanager
from tests.serving import Served


@pytest.fixture
def chain(
    tmp_path: Path, tokens: dict[str, str], alertmanager_bin: str
) -> Iterator[tuple[Served, Alertmanager]]:
    (tmp_path / "remediator").mkdir()
    served = Served(tmp_path / "remediator", {}, tokens)
    served.start()
    am = Alertmanager(
        alertmanager_bin,
        tmp_path / "am",
        served.url + "/api/v1/recovery/alerts",
        tokens["alertmanager"],
    )
    yield served, am
    am.stop()
    served.stop()


def _events(served: Served, **params: Any) -> list[dict[str, Any]]:
    answer = httpx.get(
        served.url + "/api/v1/recovery/events", params=params, headers=served.headers("viewer")
    )
    events: list[dict[str, Any]] = answer.json()["events"]
    return events


def _wait_for(served: Served, kind: str, alertname: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in _events(served, type=kind):
            if event["alertname"] == alertname:
                return event
        time.sleep(0.2)
    raise AssertionError(f"no {kind} event for {alertname} within {timeout}s")


def test_real_alertmanager_delivers_firing_and_resolved(chain: tuple[Served, Alertmanager]) -> None:
    served, am = chain
    now = datetime.now(UTC)
    alert = {
        "labels": {"alertname": "DeliveryTest", "container": "web-1", "severity": "warning"},
        "annotations": {"summary": "delivery test"},
        "startsAt": now.isoformat(),
        "generatorURL": "http://127.0.0.1:9090/graph",
    }
    am.post([alert])
    fired = _wait_for(served, "alert:received", "DeliveryTest")
    assert fired["status"] == "firing"
    assert fired["actor"] == "alertmanager:remediator"

    alert["endsAt"] = (now + timedelta(milliseconds=10)).isoformat()
    am.post([alert])
    resolved = _wait_for(served, "alert:resolved", "DeliveryTest")
    assert resolved["fingerprint"] == fired["fingerprint"]
    metrics = httpx.get(served.url + "/metrics").text
    assert 'remediator_webhook_requests_total{code="200"}' in metrics
    assert 'remediator_webhook_requests_total{code="401"} 0.0' in metrics  # exported, never counted
