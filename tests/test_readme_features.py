"""Features the README names, through the whole app: Alertmanager payloads posted to the webhook,
the worker and the real runner acting on a local HTTP hook, the outcome read from the events API.

- ``safety.max_concurrent_actions``: with 2, four slow actions on four targets never have more
  than two requests in flight at the hook, and two do run together.
- Playbook matchers ``!=``, ``=~`` and ``!~`` pick the playbook that runs for a real payload.
- ``service:registered`` for every target at start-up, and the ``health:*`` event of each
  category for an alert of that kind.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from starlette.testclient import TestClient

from remediator.config import model as config_mod
from remediator.config.auth import Authenticator
from remediator.http.app import create_app
from tests.conftest import ALERTS, EVENTS, fixture_payload
from tests.hookserver import Hook, serving

Headers = Callable[[str], dict[str, str]]
MakeConfig = Callable[..., config_mod.Config]
HOLD = 0.6  # seconds the hook holds each request, so that concurrent actions overlap


class App:
    def __init__(self, client: TestClient, headers: Headers) -> None:
        self.client = client
        self.headers = headers

    def post(self, payload: dict[str, Any]) -> None:
        answer = self.client.post(ALERTS, json=payload, headers=self.headers("alertmanager"))
        assert answer.status_code == 200, answer.text

    def events(self, type_: str) -> list[dict[str, Any]]:
        answer = self.client.get(
            EVENTS, headers=self.headers("viewer"), params={"type": type_, "limit": 500}
        )
        assert answer.status_code == 200, answer.text
        found: list[dict[str, Any]] = answer.json()["events"]
        return found

    def wait_for(self, type_: str, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(found := self.events(type_)) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(found) == count, [e["message"] for e in found]
        return found


@pytest.fixture
def app(
    make_config: MakeConfig, authenticator: Authenticator, headers: Headers
) -> Callable[..., Any]:
    @contextmanager
    def start(**sections: Any) -> Iterator[App]:
        config = make_config(health={"enabled": False}, **sections)
        with TestClient(create_app(config, authenticator=authenticator)) as client:
            yield App(client, headers)

    return start


def http_targets(hook: Hook, *names: str) -> list[dict[str, Any]]:
    return [{"name": name, "type": "http", "base_url": hook.url} for name in names]


def firing(alertname: str, fingerprint: str, summary: str, **labels: str) -> dict[str, Any]:
    """The real one-alert payload of the fixtures, as another alert."""
    payload = fixture_payload("firing_single.json")
    [alert] = payload["alerts"]
    alert["labels"] = {**alert["labels"], "alertname": alertname, **labels}
    alert["annotations"] = {"summary": summary}
    alert["fingerprint"] = fingerprint
    payload["groupLabels"] = {"alertname": alertname}
    payload["commonLabels"] = dict(alert["labels"])
    payload["commonAnnotations"] = {}
    return payload


# -- safety.max_concurrent_actions ------------------------------------------------------------


def test_at_most_max_concurrent_actions_run_at_once(app: Callable[..., Any]) -> None:
    names = ("svc-a", "svc-b", "svc-c", "svc-d")
    with serving(hold=HOLD) as hook:
        playbook = {
            "name": "poke",
            "match": ['alertname="SlowHook"'],
            "target": "{{ labels.service }}",
            "steps": [{"action": "http.call", "method": "POST", "path": "/poke"}],
        }
        sections = {
            "targets": http_targets(hook, *names),
            "playbooks": [playbook],
            # Four of four targets alerting at once would trip the blast radius: allow it.
            "safety": {"max_concurrent_actions": 2, "blast_radius": 1.0},
        }
        with app(**sections) as running:
            started = time.monotonic()
            # One group of four alerts, as Alertmanager sends it: one batch for the worker.
            payload = firing("SlowHook", "f" * 16, "slow hook", service=names[0])
            payload["alerts"] = [
                firing("SlowHook", f"f{i:015d}", "slow hook", service=name)["alerts"][0]
                for i, name in enumerate(names)
            ]
            running.post(payload)
            done = running.wait_for("recovery:succeeded", 4)
            elapsed = time.monotonic() - started
        assert sorted(e["target"] for e in done) == sorted(names)
        assert hook.paths == ["/poke"] * 4
        assert hook.most == 2  # two at once, never more
        assert elapsed >= 2 * HOLD  # two rounds of two


# -- matchers through the engine --------------------------------------------------------------


def test_matcher_operators_choose_the_playbook_that_runs(app: Callable[..., Any]) -> None:
    def poke(name: str, match: list[str]) -> dict[str, Any]:
        return {
            "name": name,
            "match": match,
            "target": "hook",
            "cooldown": "0s",
            "max_per_window": None,
            "steps": [{"action": "http.call", "method": "POST", "path": f"/{name}"}],
        }

    playbooks = [
        poke("unanchored", ['alertname="DiskAlmostFull"', 'mountpoint=~"/v"']),
        poke("not-root", ['alertname="DiskAlmostFull"', 'mountpoint!="/"', 'mountpoint=~"/v.*"']),
        poke("root", ['alertname="DiskAlmostFull"', 'mountpoint!~"/.+"']),
    ]
    with serving() as hook:
        sections = {"targets": http_targets(hook, "hook"), "playbooks": playbooks}
        with app(**sections) as running:
            running.post(fixture_payload("grouped.json"))  # mountpoints / and /var
            done = running.wait_for("recovery:succeeded", 2)
            ran = {e["fingerprint"]: e["playbook"] for e in done}
            assert ran == {"b740fb9ec0e19aca": "root", "1fb0eccaf080988f": "not-root"}
        assert sorted(hook.paths) == ["/not-root", "/root"]


# -- service:registered and health:* ----------------------------------------------------------

# An alert of each category (classified by the built-in patterns) and the event it records.
KINDS = [
    ("HighMemoryUsage", "High memory usage on web", "memory", "health:high_memory"),
    ("HostCpuHigh", "CPU busy on web", "cpu", "health:high_cpu"),
    ("DiskAlmostFull", "Disk almost full: / on web", "disk", "health:high_disk"),
    ("ServiceLatencyHigh", "p99 latency above 5s on web", "latency", "health:slow_response"),
    ("ServiceErrorRateHigh", "error rate above 5% on web", "api", "health:high_errors"),
]


def test_every_target_is_registered_once_at_start_up(app: Callable[..., Any]) -> None:
    with serving() as hook:
        with app(targets=http_targets(hook, "web", "api")) as running:
            registered = running.wait_for("service:registered", 2)
        assert sorted(e["target"] for e in registered) == ["api", "web"]
        assert {e["message"] for e in registered} == {
            "target web registered",
            "target api registered",
        }
        # The same store, started again: nothing new to register.
        with app(targets=http_targets(hook, "web", "api", "db")) as again:
            registered = again.wait_for("service:registered", 3)
        assert [e["target"] for e in registered] == ["db", "api", "web"]


@pytest.mark.parametrize(("alertname", "summary", "category", "kind"), KINDS)
def test_an_alert_of_each_category_records_its_health_event(
    app: Callable[..., Any], alertname: str, summary: str, category: str, kind: str
) -> None:
    with app() as running:
        running.post(firing(alertname, "0123456789abcdef", summary))
        [event] = running.wait_for(kind, 1)
        # Only the event of its own category.
        others = [k for _, _, _, k in KINDS if k != kind]
        assert all(running.events(other) == [] for other in others)
    assert (event["category"], event["alertname"], event["message"]) == (
        category,
        alertname,
        alertname,
    )
    assert event["fingerprint"] == "0123456789abcdef" and event["status"] == "firing"
