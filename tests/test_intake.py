"""The Alertmanager webhook: status codes, auth per role, body cap, dedup, events."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from remediator.clock import FakeClock
from remediator.http.app import create_app
from tests.conftest import ALERTS, EVENTS, AppHarness, fixture_names, fixture_payload
from tests.waiting import wait_for

Headers = Callable[[str], dict[str, str]]


def _events(h: AppHarness, headers: Headers, **params: Any) -> list[dict[str, Any]]:
    answer = h.client.get(EVENTS, headers=headers("viewer"), params=params)
    assert answer.status_code == 200, answer.text
    events: list[dict[str, Any]] = answer.json()["events"]
    return events


def _arrivals(h: AppHarness, headers: Headers, count: int) -> list[dict[str, Any]]:
    """The audit log once it holds ``count`` records: an alert's ``alert:received`` (or
    ``alert:resolved``) is chained by the worker's claim, right after the 2xx."""

    def found() -> list[dict[str, Any]] | None:
        events = _events(h, headers, limit=1000)
        return events if len(events) >= count else None

    return wait_for(found, timeout=10, what=f"{count} arrival records in the audit log")


@pytest.mark.parametrize("name", fixture_names())
def test_every_captured_payload_is_stored_then_counted_as_duplicate(
    harness: AppHarness, headers: Headers, name: str
) -> None:
    payload = fixture_payload(name)
    first = harness.client.post(ALERTS, json=payload, headers=headers("alertmanager"))
    assert first.status_code == 200, first.text
    n = len(payload["alerts"])
    assert first.json()["received"] == n
    assert first.json()["new"] == n
    assert first.json()["duplicates"] == 0
    stored = {e["fingerprint"] for e in _arrivals(harness, headers, n)}
    assert stored == {a["fingerprint"] for a in payload["alerts"]}

    again = harness.client.post(ALERTS, json=payload, headers=headers("alertmanager"))
    assert again.status_code == 200
    assert again.json() == {
        "received": n,
        "new": 0,
        "duplicates": n,
        "truncated": payload["truncatedAlerts"],
    }
    assert len(_events(harness, headers, type="alert:duplicate")) == n


def test_each_alert_counts_by_its_own_status_in_a_firing_group(
    harness: AppHarness, headers: Headers
) -> None:
    payload = fixture_payload("mixed_firing_resolved.json")
    assert payload["status"] == "firing"
    harness.client.post(ALERTS, json=payload, headers=headers("alertmanager"))
    _arrivals(harness, headers, len(payload["alerts"]))
    resolved = _events(harness, headers, type="alert:resolved")
    received = _events(harness, headers, type="alert:received")
    assert {e["fingerprint"] for e in resolved} == {"370af721faa059e6"}
    assert {e["fingerprint"] for e in received} == {"e246c3b22eba50b3", "10190e2c6904e5b1"}
    for event in resolved + received:
        assert event["alertname"] == "ManualRemediationTest"
        assert event["time"].endswith("Z")


def test_repeat_notification_fixture_is_a_duplicate_of_the_first(
    harness: AppHarness, headers: Headers
) -> None:
    first = fixture_payload("firing_single.json")
    repeat = fixture_payload("repeat_1.json")
    assert repeat["alerts"][0]["fingerprint"] == first["alerts"][0]["fingerprint"]
    harness.client.post(ALERTS, json=first, headers=headers("alertmanager"))
    answer = harness.client.post(ALERTS, json=repeat, headers=headers("alertmanager"))
    assert answer.json()["duplicates"] == 1


def test_resolve_then_new_firing_starts_a_new_episode(
    harness: AppHarness, headers: Headers
) -> None:
    firing = fixture_payload("firing_single.json")
    resolved = fixture_payload("resolved_single.json")
    assert resolved["alerts"][0]["fingerprint"] == firing["alerts"][0]["fingerprint"]
    post = harness.client.post
    assert post(ALERTS, json=firing, headers=headers("alertmanager")).json()["new"] == 1
    assert post(ALERTS, json=resolved, headers=headers("alertmanager")).json()["new"] == 1
    # A late re-send of the same firing episode (an HA peer) is a duplicate, not a new episode.
    assert post(ALERTS, json=firing, headers=headers("alertmanager")).json()["duplicates"] == 1
    assert post(ALERTS, json=resolved, headers=headers("alertmanager")).json()["duplicates"] == 1
    # The alert fires again later: a new episode.
    again = json.loads(json.dumps(firing))
    again["alerts"][0]["startsAt"] = "2030-01-01T00:00:00Z"
    assert post(ALERTS, json=again, headers=headers("alertmanager")).json()["new"] == 1


def test_basic_auth_with_the_token_as_password_is_accepted(
    harness: AppHarness, tokens: dict[str, str]
) -> None:
    creds = base64.b64encode(f"alertmanager:{tokens['alertmanager']}".encode()).decode()
    answer = harness.client.post(
        ALERTS,
        json=fixture_payload("firing_single.json"),
        headers={"Authorization": f"Basic {creds}"},
    )
    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("auth", "status", "code"),
    [
        (None, 401, "UNAUTHORIZED"),
        ("Bearer wrong-token-wrong-token", 401, "UNAUTHORIZED"),
        ("Basic !!notbase64", 401, "UNAUTHORIZED"),
        ("viewer", 403, "FORBIDDEN"),
        ("admin", 200, None),
        ("alertmanager", 200, None),
    ],
)
def test_intake_auth_per_role(
    harness: AppHarness, headers: Headers, auth: str | None, status: int, code: str | None
) -> None:
    if auth in ("viewer", "admin", "alertmanager"):
        hdrs = headers(auth)
    else:
        hdrs = {"Authorization": auth} if auth else {}
    answer = harness.client.post(ALERTS, json=fixture_payload("firing_single.json"), headers=hdrs)
    assert answer.status_code == status
    if code:
        assert answer.json() == {
            "error": {"code": code, "message": answer.json()["error"]["message"]}
        }
        assert "Traceback" not in answer.text


def test_malformed_json_is_400_and_stores_nothing(harness: AppHarness, headers: Headers) -> None:
    answer = harness.client.post(
        ALERTS, content=b'{"version": "4", ', headers=headers("alertmanager")
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "MALFORMED_JSON"
    assert _events(harness, headers) == []


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda p: p.pop("alerts"), "alerts"),
        (lambda p: p.update(version="3"), "version"),
        (lambda p: p["alerts"][0].pop("fingerprint"), "alerts[0].fingerprint"),
        (lambda p: p["alerts"][0].update(status="burning"), "alerts[0].status"),
        (lambda p: p["alerts"][0].update(startsAt="yesterday"), "alerts[0].startsAt"),
        (lambda p: p["alerts"][0]["labels"].update(severity=3), "alerts[0].labels.severity"),
    ],
)
def test_schema_violations_are_422_naming_the_field(
    harness: AppHarness, headers: Headers, mutate: Callable[[dict[str, Any]], Any], field: str
) -> None:
    payload = fixture_payload("grouped.json")
    mutate(payload)
    answer = harness.client.post(ALERTS, json=payload, headers=headers("alertmanager"))
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "VALIDATION_FAILED"
    assert field in answer.json()["error"]["message"]
    assert _events(harness, headers) == []


def test_a_json_array_is_422(harness: AppHarness, headers: Headers) -> None:
    answer = harness.client.post(ALERTS, content=b"[1, 2]", headers=headers("alertmanager"))
    assert answer.status_code == 422


def test_unknown_extra_fields_are_accepted(harness: AppHarness, headers: Headers) -> None:
    payload = fixture_payload("firing_single.json")
    payload["notification_reason"] = "repeat_interval"
    payload["alerts"][0]["somethingNew"] = {"x": 1}
    answer = harness.client.post(ALERTS, json=payload, headers=headers("alertmanager"))
    assert answer.status_code == 200


def test_body_over_the_cap_is_413_by_content_length(harness: AppHarness, headers: Headers) -> None:
    limit = harness.runtime.config.server.max_body_bytes
    body = b" " * (limit + 1)
    answer = harness.client.post(ALERTS, content=body, headers=headers("alertmanager"))
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"


def test_body_over_the_cap_is_413_while_streaming(harness: AppHarness, headers: Headers) -> None:
    limit = harness.runtime.config.server.max_body_bytes

    def chunks() -> Any:
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    answer = harness.client.post(ALERTS, content=chunks(), headers=headers("alertmanager"))
    assert answer.status_code == 413


def test_store_that_cannot_commit_answers_503_and_recovers(
    harness: AppHarness, headers: Headers
) -> None:
    store = harness.runtime.store
    payload = fixture_payload("grouped.json")
    # Make the real SQLite writer connection refuse writes (the writer thread is idle now).
    store._writer.conn.execute("PRAGMA query_only=1")  # type: ignore[attr-defined]
    answer = harness.client.post(ALERTS, json=payload, headers=headers("alertmanager"))
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "STORE_UNAVAILABLE"
    assert harness.client.get("/api/v1/recovery/health").status_code == 503
    store._writer.conn.execute("PRAGMA query_only=0")  # type: ignore[attr-defined]
    # Alertmanager retries a 503: the retry is stored in full.
    answer = harness.client.post(ALERTS, json=payload, headers=headers("alertmanager"))
    assert answer.status_code == 200
    assert answer.json()["new"] == len(payload["alerts"])


def test_draining_answers_503(harness: AppHarness, headers: Headers) -> None:
    harness.runtime.draining = True
    answer = harness.client.post(
        ALERTS, json=fixture_payload("grouped.json"), headers=headers("alertmanager")
    )
    assert answer.status_code == 503
    harness.runtime.draining = False


def test_metrics_count_requests_alerts_and_duplicates(
    harness: AppHarness, headers: Headers
) -> None:
    payload = fixture_payload("mixed_firing_resolved.json")
    harness.client.post(ALERTS, json=payload, headers=headers("alertmanager"))
    harness.client.post(ALERTS, json=payload, headers=headers("alertmanager"))
    harness.client.post(ALERTS, json=payload)
    text = harness.client.get("/metrics").text
    assert 'remediator_alerts_received_total{status="firing"} 4.0' in text
    assert 'remediator_alerts_received_total{status="resolved"} 2.0' in text
    assert "remediator_alerts_duplicate_total 3.0" in text
    assert 'remediator_webhook_requests_total{code="200"} 2.0' in text
    assert 'remediator_webhook_requests_total{code="401"} 1.0' in text
    assert "remediator_webhook_request_duration_seconds_count 3.0" in text
    assert "remediator_inbox_pending" in text


def test_tokens_never_appear_in_metrics_or_errors(
    harness: AppHarness, headers: Headers, tokens: dict[str, str]
) -> None:
    harness.client.post(ALERTS, content=b"{", headers=headers("alertmanager"))
    bad = harness.client.post(ALERTS, json={}, headers=headers("viewer"))
    text = harness.client.get("/metrics").text + bad.text
    for token in tokens.values():
        assert token not in text


def _repeat_harness(
    make_config: Callable[..., Any], authenticator: Any, clock: FakeClock, **audit: Any
) -> tuple[TestClient, list[Any]]:
    holder: list[Any] = []
    app = create_app(
        make_config(audit=audit) if audit else make_config(),
        authenticator=authenticator,
        clock=clock,
        on_runtime=holder.append,
    )
    return TestClient(app, raise_server_exceptions=False), holder


def test_repeats_of_an_alert_state_are_counted_and_recorded_once_per_interval(
    make_config: Callable[..., Any], authenticator: Any, headers: Headers
) -> None:
    payload = fixture_payload("firing_single.json")
    clock = FakeClock()
    client, _ = _repeat_harness(make_config, authenticator, clock)  # default: 60 s
    with client:

        def post() -> dict[str, Any]:
            answer = client.post(ALERTS, json=payload, headers=headers("alertmanager"))
            assert answer.status_code == 200, answer.text
            body: dict[str, Any] = answer.json()
            return body

        def duplicates() -> list[dict[str, Any]]:
            answer = client.get(
                EVENTS, headers=headers("viewer"), params={"type": "alert:duplicate"}
            )
            found: list[dict[str, Any]] = answer.json()["events"]
            return found

        assert post()["new"] == 1
        answers = [post() for _ in range(4)]  # an HA pair and a group re-send, within seconds
        assert [a["duplicates"] for a in answers] == [1, 1, 1, 1]  # every repeat is counted
        recorded = duplicates()
        assert len(recorded) == 1  # the first repeat is recorded, the next three only counted
        assert recorded[0]["details"]["repeats"] == 1
        metrics = client.get("/metrics").text
        assert "remediator_alerts_duplicate_total 4.0" in metrics
        clock.advance(61)
        assert post()["duplicates"] == 1
        recorded = duplicates()
        assert len(recorded) == 2
        assert recorded[0]["details"]["repeats"] == 5  # newest first: the count so far


def test_with_a_zero_interval_every_repeat_is_recorded(
    make_config: Callable[..., Any], authenticator: Any, headers: Headers
) -> None:
    payload = fixture_payload("firing_single.json")
    client, _ = _repeat_harness(make_config, authenticator, FakeClock(), duplicate_interval="0s")
    with client:
        for _ in range(4):
            assert (
                client.post(ALERTS, json=payload, headers=headers("alertmanager")).status_code
                == 200
            )
        answer = client.get(EVENTS, headers=headers("viewer"), params={"type": "alert:duplicate"})
        assert [e["details"]["repeats"] for e in answer.json()["events"]] == [3, 2, 1]
