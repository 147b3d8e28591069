"""Health and events endpoints."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.conftest import ALERTS, EVENTS, HEALTH, AppHarness, fixture_payload

Headers = Callable[[str], dict[str, str]]


def test_health_is_public_and_minimal(harness: AppHarness) -> None:
    answer = harness.client.get(HEALTH)
    assert answer.status_code == 200
    assert answer.json() == {"status": "healthy", "components": {"store": "up", "worker": "up"}}


@pytest.mark.parametrize(
    ("role", "status"), [(None, 401), ("alertmanager", 403), ("viewer", 200), ("admin", 200)]
)
def test_events_need_a_read_role(
    harness: AppHarness, headers: Headers, role: str | None, status: int
) -> None:
    answer = harness.client.get(EVENTS, headers=headers(role) if role else {})
    assert answer.status_code == status


def test_events_are_newest_first_with_filters_and_paging(
    harness: AppHarness, headers: Headers
) -> None:
    post = harness.client.post
    post(ALERTS, json=fixture_payload("grouped.json"), headers=headers("alertmanager"))
    post(ALERTS, json=fixture_payload("resolved_grouped.json"), headers=headers("alertmanager"))
    viewer = headers("viewer")
    deadline = time.monotonic() + 10.0  # the worker's claims chain the alerts' arrivals
    while time.monotonic() < deadline:
        arrived = harness.client.get(EVENTS, headers=viewer, params={"type": "alert:resolved"})
        if len(arrived.json()["events"]) == 2:
            break
        time.sleep(0.02)
    everything = harness.client.get(EVENTS, headers=viewer).json()["events"]
    ids = [e["id"] for e in everything]
    assert ids == sorted(ids, reverse=True)
    for event in everything:
        assert {
            "time",
            "type",
            "fingerprint",
            "alertname",
            "status",
            "hash",
            "prev_hash",
        } <= event.keys()
    resolved = harness.client.get(EVENTS, headers=viewer, params={"type": "alert:resolved"}).json()
    assert len(resolved["events"]) == 2
    assert all(e["type"] == "alert:resolved" for e in resolved["events"])
    # Page through the intake's own events (the worker appends others concurrently).
    query: dict[str, str | int] = {"type": "alert:received"}
    received = [
        e["id"] for e in harness.client.get(EVENTS, headers=viewer, params=query).json()["events"]
    ]
    assert len(received) == 2
    page = harness.client.get(EVENTS, headers=viewer, params={**query, "limit": 1}).json()
    assert len(page["events"]) == 1 and page["next_before"] == page["events"][-1]["id"]
    rest = harness.client.get(
        EVENTS, headers=viewer, params={**query, "before": page["next_before"]}
    ).json()
    assert [e["id"] for e in page["events"] + rest["events"]] == received
    future = harness.client.get(EVENTS, headers=viewer, params={"since": "2100-01-01T00:00:00Z"})
    assert future.json()["events"] == []


@pytest.mark.parametrize(
    "params", [{"limit": "0"}, {"limit": "x"}, {"since": "tomorrow"}, {"before": "-1"}]
)
def test_bad_event_filters_are_422(
    harness: AppHarness, headers: Headers, params: dict[str, str]
) -> None:
    answer = harness.client.get(EVENTS, headers=headers("viewer"), params=params)
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "VALIDATION_FAILED"


def test_worker_marks_stored_alerts_as_seen(harness: AppHarness, headers: Headers) -> None:
    harness.client.post(
        ALERTS, json=fixture_payload("grouped.json"), headers=headers("alertmanager")
    )
    rt = harness.runtime

    def pending() -> int:
        portal = harness.client.portal
        assert portal is not None
        return int(portal.call(rt.store.pending_count))

    import time

    deadline = time.monotonic() + 10
    while pending() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pending() == 0
