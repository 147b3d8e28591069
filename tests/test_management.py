"""The management API: breakers, manual runs, dry runs, configuration, patterns, pause, limits."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import yaml
from starlette.testclient import TestClient

from remediator import reload
from remediator.audit.events import Event
from remediator.clock import FakeClock, iso
from remediator.config import model as config_mod
from remediator.config.auth import Authenticator
from remediator.config.model import CircuitBreakerConfig
from remediator.engine.guards import CircuitBreakers
from remediator.http.app import create_app
from remediator.http.endpoints import OPERATIONS
from remediator.http.ratelimit import RateLimiter
from remediator.plugins import Plugins
from remediator.runtime import Runtime
from remediator.store import EventQuery
from remediator.store.records import Remediation
from tests.engine_harness import Recorder, fake_registry
from tests.serving import Served

API = "/api/v1/recovery"
WEB = {"name": "web", "type": "docker_container"}
CACHE = {"name": "cache", "type": "redis", "url": "redis://:s3cretRedisPw@127.0.0.1:6399/0"}
DB = {"name": "db", "type": "postgres", "dsn": "postgresql://app:hunter2Secret@127.0.0.1:5499/app"}
RESTART = {
    "name": "restart-web",
    "match": ['alertname="ContainerMemoryHigh"'],
    "target": "{{ labels.container }}",
    "steps": [{"action": "docker.restart"}],
    "cooldown": "5m",
    "retry": {"max_attempts": 1},
}
FLUSH = {
    "name": "flush-cache",
    "match": ['alertname="CacheFull"'],
    "target": "cache",
    "steps": [{"action": "redis.flushdb"}],
    "cooldown": "0s",
    "retry": {"max_attempts": 1},
}


def payload(
    fingerprint: str, alertname: str = "ContainerMemoryHigh", **labels: str
) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": "g",
        "status": "firing",
        "receiver": "remediator",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": alertname, **labels},
                "annotations": {"summary": "memory high"},
                "startsAt": iso(1_800_000_000.0),
                "fingerprint": fingerprint,
            }
        ],
    }


class Mgmt:
    """An in-process app with fake actions, a fake clock and generous rate limits."""

    def __init__(self, client: TestClient, rt: Runtime, recorder: Recorder, clock: FakeClock,
                 headers: Callable[[str], dict[str, str]], close: Callable[[], None]) -> None:  # fmt: skip
        self.client, self.rt, self.recorder, self.clock = client, rt, recorder, clock
        self.headers = headers
        self.close = close

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        portal = self.client.portal
        assert portal is not None
        return portal.call(lambda: fn(*args, **kwargs))

    def request(self, method: str, path: str, role: str | None = "admin", **kw: Any) -> Any:
        headers = self.headers(role) if role else {}
        return self.client.request(method, API + path, headers=headers, **kw)

    def alert(self, body: dict[str, Any]) -> None:
        answer = self.request("POST", "/alerts", "alertmanager", json=body)
        assert answer.status_code == 200, answer.text
        deadline = time.monotonic() + 10
        while self.call(self.rt.store.pending_count) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.call(self.rt.store.pending_count) == 0
        self.call(self.rt.bus.drain)

    def events(self, type_: str | None = None, **query: Any) -> list[Event]:
        found = self.call(self.rt.store.events, EventQuery(type=type_, limit=1000, **query))
        return list(reversed(found))

    def remediations(self) -> list[Remediation]:
        rows: list[Remediation] = self.call(self.rt.store.remediations)
        return rows

    def open_breaker(self, target: str) -> None:
        settings = CircuitBreakerConfig()
        for _ in range(settings.failure_threshold):
            self.call(
                CircuitBreakers(self.rt.store).report, target, settings, ok=False, now=self.clock.now(),
                events=lambda t: [],
            )  # fmt: skip


MakeMgmt = Callable[..., Mgmt]


@pytest.fixture
def make_mgmt(
    tmp_path: Path, authenticator: Authenticator, headers: Callable[[str], dict[str, str]]
) -> Iterator[MakeMgmt]:
    with contextlib.ExitStack() as stack:

        def make(**sections: Any) -> Mgmt:
            data: dict[str, Any] = {
                "store": {"url": f"sqlite:///{tmp_path}/remediator.db"},
                "health": {"enabled": False},
                "targets": [WEB, CACHE, DB],
                "playbooks": [RESTART],
            }
            data.update(sections)
            cfg = config_mod.parse(data, env={})
            recorder, clock, holder = Recorder(), FakeClock(), list[Runtime]()
            app = create_app(
                cfg, authenticator=authenticator, clock=clock, actions=fake_registry(recorder),
                plugins=Plugins(), on_runtime=holder.append,
            )  # fmt: skip
            own = stack.enter_context(contextlib.ExitStack())
            client = own.enter_context(TestClient(app, raise_server_exceptions=False))
            rt = holder[0]
            rt.limiter = RateLimiter(rate=1000, burst=1000)
            return Mgmt(client, rt, recorder, clock, headers, own.close)

        yield make


@pytest.fixture
def mgmt(make_mgmt: MakeMgmt) -> Mgmt:
    return make_mgmt()


def error_code(answer: Any) -> str:
    code: str = answer.json()["error"]["code"]
    return code


# -- circuit breakers --------------------------------------------------------------------------


def test_breakers_are_listed_and_reset_by_an_admin(mgmt: Mgmt) -> None:
    listed = mgmt.request("GET", "/circuit-breakers", "viewer").json()
    assert [b["target"] for b in listed["breakers"]] == ["web", "cache", "db"]
    assert all(b["state"] == "closed" and b["opened_at"] is None for b in listed["breakers"])
    mgmt.open_breaker("web")
    web = mgmt.request("GET", "/circuit-breakers", "viewer").json()["breakers"][0]
    assert web["state"] == "open" and web["failures"] == 5
    assert web["opened_at"] == iso(mgmt.clock.now())
    assert web["next_half_open"] == iso(mgmt.clock.now() + 60)

    unknown = mgmt.request("POST", "/circuit-breakers/nope/reset")
    assert unknown.status_code == 404 and error_code(unknown) == "SERVICE_NOT_FOUND"
    reset = mgmt.request("POST", "/circuit-breakers/web/reset")
    assert reset.status_code == 200
    assert reset.json()["breaker"]["state"] == "closed"
    assert reset.json()["previous_state"] == "open" and reset.json()["changed"] is True
    [closed] = mgmt.events("circuit:closed")
    assert closed.actor == "admin" and closed.target == "web"
    # Resetting a closed breaker is recorded too.
    assert mgmt.request("POST", "/circuit-breakers/web/reset").json()["changed"] is False
    assert len(mgmt.events("circuit:closed")) == 2


# -- manual runs -------------------------------------------------------------------------------


def test_trigger_on_an_open_breaker_is_refused(mgmt: Mgmt) -> None:
    mgmt.open_breaker("web")
    answer = mgmt.request("POST", "/trigger", json={"target": "web", "playbook": "restart-web"})
    assert answer.status_code == 409 and error_code(answer) == "CIRCUIT_OPEN"
    assert mgmt.recorder.calls == []
    [skipped] = mgmt.events("recovery:skipped")
    assert skipped.outcome == "circuit_open" and skipped.actor == "admin"


def test_cooldown_refuses_and_force_needs_a_reason_and_is_audited(mgmt: Mgmt) -> None:
    run = {"target": "web", "playbook": "restart-web"}
    first = mgmt.request("POST", "/trigger", json=run)
    assert first.status_code == 200, first.text
    assert first.json()["state"] == "succeeded" and first.json()["ok"] is True
    assert first.json()["steps"][0]["action"] == "docker.restart"
    assert mgmt.recorder.calls == [("docker.restart", "web", False)]

    again = mgmt.request("POST", "/trigger", json=run)
    assert again.status_code == 409 and error_code(again) == "COOLDOWN"
    no_reason = mgmt.request("POST", "/trigger", json={**run, "force": True, "reason": "  "})
    assert no_reason.status_code == 422 and error_code(no_reason) == "VALIDATION_FAILED"
    assert mgmt.recorder.count() == 1

    forced = mgmt.request("POST", "/trigger", json={**run, "force": True, "reason": "INC-42"})
    assert forced.status_code == 200, forced.text
    assert forced.json()["forced"] is True and forced.json()["bypassed"] == ["cooldown"]
    assert mgmt.recorder.count() == 2
    triggered = mgmt.events("recovery:triggered")
    assert [e.actor for e in triggered] == ["admin", "admin"]
    assert triggered[-1].details["force"] is True and triggered[-1].details["reason"] == "INC-42"
    assert "INC-42" in triggered[-1].message
    # Every event of the forced run carries the caller and can be found by its fingerprint.
    fingerprint = forced.json()["fingerprint"]
    found = mgmt.request("GET", "/events", "viewer", params={"fingerprint": fingerprint})
    types = {e["type"] for e in found.json()["events"]}
    assert types == {"recovery:triggered", "recovery:action", "recovery:succeeded"}
    assert {e["actor"] for e in found.json()["events"]} == {"admin"}
    assert [r.state for r in mgmt.remediations()] == ["succeeded", "succeeded"]


def test_trigger_one_action_with_parameters(mgmt: Mgmt) -> None:
    ok = mgmt.request(
        "POST", "/trigger", json={"target": "cache", "action": "redis.flushdb", "params": {"db": 2}}
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["playbook"] == "manual:redis.flushdb"
    assert mgmt.recorder.calls == [("redis.flushdb", "cache", False)]
    dry = mgmt.request(
        "POST", "/trigger", json={"target": "web", "action": "docker.restart", "dry_run": True}
    )
    assert dry.json()["state"] == "dry_run" and mgmt.recorder.calls[-1][2] is True
    closing = mgmt.events(fingerprint=dry.json()["fingerprint"])[-1]
    assert closing.type == "recovery:dry_run" and closing.actor == "admin"

    def refused(body: dict[str, Any]) -> tuple[int, str]:
        answer = mgmt.request("POST", "/trigger", json=body)
        return answer.status_code, error_code(answer)

    assert refused({"target": "nope", "action": "docker.restart"}) == (404, "SERVICE_NOT_FOUND")
    assert refused({"target": "web", "playbook": "nope"}) == (404, "PLAYBOOK_NOT_FOUND")
    assert refused({"target": "web"}) == (422, "VALIDATION_FAILED")
    assert refused({"target": "web", "playbook": "restart-web", "action": "docker.restart"}) == (
        422,
        "VALIDATION_FAILED",
    )
    assert refused({"target": "db", "action": "docker.restart"}) == (422, "VALIDATION_FAILED")
    bad = mgmt.request(
        "POST",
        "/trigger",
        json={"target": "cache", "action": "redis.flushdb", "params": {"db": 99}},
    )
    assert bad.status_code == 422 and bad.json()["error"]["details"] == [
        "params.db: Input should be less than or equal to 15"
    ]
    assert refused({"target": "web", "action": "docker.restart", "force": "yes"})[0] == 422
    malformed = mgmt.request("POST", "/trigger", content=b"{not json")
    assert malformed.status_code == 400 and error_code(malformed) == "MALFORMED_JSON"


# -- dry runs ----------------------------------------------------------------------------------


def test_dry_run_traces_decisions_and_touches_nothing(mgmt: Mgmt) -> None:
    before = mgmt.events()
    mgmt.open_breaker("web")
    traced = mgmt.request(
        "POST", "/test", json=payload("f1", container="web") | {"alerts": [
            payload("f1", container="web")["alerts"][0],
            payload("f2", container="ghost")["alerts"][0],
        ]},
    )  # fmt: skip
    assert traced.status_code == 200, traced.text
    body = traced.json()
    assert body["mode"] == "alerts"
    web, ghost = body["traces"]
    assert web["playbook"] == "restart-web" and web["target"] == "web" and web["runs"] is True
    assert web["guards"] == {
        "allowed": False,
        "reason": "circuit_open",
        "detail": "circuit breaker open",
    }
    assert web["breaker"]["state"] == "open" and web["would_run"] is False
    assert ghost["runs"] is False and ghost["reason"] == "target_not_registered"
    assert ghost["guards"] is None and ghost["would_run"] is False

    target = mgmt.request("POST", "/test", json={"target": "cache", "action": "redis.flushdb"})
    assert target.status_code == 200, target.text
    [trace] = target.json()["traces"]
    assert trace["would_run"] is True and trace["steps"] == [{"action": "redis.flushdb"}]
    assert (
        mgmt.request("POST", "/test", json={"target": "x", "action": "redis.flushdb"}).status_code
        == 404
    )
    assert mgmt.request("POST", "/test", json={"alerts": "no"}).status_code == 422

    assert mgmt.events() == before
    assert mgmt.remediations() == [] and mgmt.recorder.calls == []
    assert mgmt.call(mgmt.rt.store.pending_count) == 0


# -- configuration -----------------------------------------------------------------------------


def test_configuration_is_read_with_secrets_redacted(make_mgmt: MakeMgmt) -> None:
    mgmt = make_mgmt(
        targets=[WEB, CACHE, DB, {"name": "api", "type": "http", "base_url": "http://127.0.0.1:1",
                                  "headers": {"Authorization": "Bearer sekritHeaderToken"}}],
        notifications={"slack": {"webhook_url": "https://hooks.example/services/T0/B0/sekritHook"}},
        auth={"tokens": [{"name": "ops", "role": "admin", "token_env": "OPS_TOKEN"}]},
    )  # fmt: skip
    answer = mgmt.request("GET", "/configuration")
    assert answer.status_code == 200
    text = answer.text
    for secret in ("s3cretRedisPw", "hunter2Secret", "sekritHeaderToken", "sekritHook"):
        assert secret not in text
    config = answer.json()["configuration"]
    assert answer.json()["version"] == 1
    targets = {t["name"]: t for t in config["targets"]}
    assert targets["db"]["dsn"] == "postgresql://***@127.0.0.1:5499/app"
    assert targets["cache"]["url"] == "redis://***@127.0.0.1:6399/0"
    assert targets["api"]["headers"] == {"Authorization": "***"}
    assert config["auth"]["tokens"][0]["token_env"] == "OPS_TOKEN"
    assert config["notifications"]["slack"]["webhook_url"] == "https://hooks.example/***"
    assert mgmt.request("GET", "/configuration", "viewer").status_code == 403


def test_put_configuration_changes_the_next_alert_without_a_restart(mgmt: Mgmt) -> None:
    mgmt.alert(payload("c1", alertname="CacheFull"))
    assert mgmt.recorder.calls == []  # no playbook for it yet

    document = mgmt.request("GET", "/configuration").json()["configuration"]
    document["playbooks"].append(FLUSH)
    answer = mgmt.request("PUT", "/configuration", json=document)
    assert answer.status_code == 200, answer.text
    applied = answer.json()
    assert applied["version"] == 2 and applied["previous_version"] == 1 and applied["changed"]
    assert applied["diff"]["sections"] == ["playbooks"]
    assert applied["diff"]["playbooks"]["added"] == ["flush-cache"]
    # The redacted secrets were put back: the running configuration still has the real ones.
    db = mgmt.rt.config.target("db")
    assert db is not None and "hunter2Secret" in getattr(db, "dsn", "")

    mgmt.alert(payload("c2", alertname="CacheFull"))
    assert mgmt.recorder.calls == [("redis.flushdb", "cache", False)]
    [changed] = mgmt.events("config:changed")
    assert changed.actor == "admin" and changed.config_version == 2
    assert changed.details["diff"]["playbooks"]["added"] == ["flush-cache"]
    later = [e for e in mgmt.events() if e.fingerprint == "c2" and e.type != "alert:received"]
    assert later and {e.config_version for e in later} == {2}
    assert mgmt.call(mgmt.rt.store.flag, reload.VERSION_FLAG) == "2"

    # The same document again changes nothing.
    same = mgmt.request(
        "PUT", "/configuration", json=mgmt.request("GET", "/configuration").json()["configuration"]
    )
    assert same.json()["changed"] is False and same.json()["version"] == 2


def test_a_bad_put_changes_nothing(mgmt: Mgmt) -> None:
    document = mgmt.request("GET", "/configuration").json()["configuration"]
    broken = {**document, "playbooks": [{**FLUSH, "steps": [{"action": "redis.flushdbb"}]}]}
    answer = mgmt.request("PUT", "/configuration", json=broken)
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "VALIDATION_FAILED"
    assert error["details"] == ["playbooks[0].steps[0].action: unknown action 'redis.flushdbb'"]
    for bad, line in [
        ({**document, "store": {"url": "sqlite:///elsewhere.db"}}, "store: cannot be changed"),
        ({**document, "circuit_breaker": {"failure_threshold": "5"}}, "circuit_breaker.failure_threshold"),
        ({**document, "playbooks": [{**FLUSH, "target": "nowhere"}]}, "playbooks[0].target"),
        ({**document, "surprise": 1}, "surprise"),
        ({**document, "targets": [{"name": "x", "type": "http", "base_url": "http://h/${HOME}"}]},
         "targets[0].base_url: environment variable HOME cannot be used through the API"),
        ([], "<root>"),
    ]:  # fmt: skip
        refused = mgmt.request("PUT", "/configuration", json=bad)
        assert refused.status_code == 422, refused.text
        assert any(d.startswith(line) for d in refused.json()["error"]["details"]), refused.text
    assert mgmt.request("PUT", "/configuration", content=b"{").status_code == 400

    assert mgmt.request("GET", "/configuration").json()["version"] == 1
    assert mgmt.events("config:changed") == []
    mgmt.alert(payload("c1", alertname="CacheFull"))
    assert mgmt.recorder.calls == []


def test_the_version_survives_a_restart(make_mgmt: MakeMgmt) -> None:
    first = make_mgmt()
    document = first.request("GET", "/configuration").json()["configuration"]
    document["playbooks"].append(FLUSH)
    assert first.request("PUT", "/configuration", json=document).json()["version"] == 2
    first.close()

    # The file still holds version 1's content: that is a change, so version 3.
    again = make_mgmt()
    assert again.request("GET", "/configuration").json()["version"] == 3
    [*_, startup] = again.events("config:changed")
    assert startup.actor == "startup" and startup.config_version == 3
    assert startup.details["diff"]["playbooks"]["removed"] == ["flush-cache"]
    again.close()

    # Unchanged since: the same version.
    assert make_mgmt().request("GET", "/configuration").json()["version"] == 3


def test_sighup_reloads_the_file(make_mgmt: MakeMgmt, tmp_path: Path) -> None:
    mgmt = make_mgmt()
    path = tmp_path / "remediator.yml"
    data = {
        "store": {"url": mgmt.rt.config.store.url},
        "health": {"enabled": False},
        "targets": [WEB, CACHE, DB],
        "playbooks": [RESTART, FLUSH],
    }
    path.write_text(yaml.safe_dump(data))
    applied = mgmt.call(reload.reload_file, mgmt.rt, path)
    assert applied is not None and applied.version == 2
    assert mgmt.events("config:changed")[0].actor == "sighup"
    path.write_text("playbooks: [")
    assert mgmt.call(reload.reload_file, mgmt.rt, path) is None
    assert mgmt.rt.config_version == 2 and len(mgmt.rt.config.playbooks) == 2


def test_sighup_reloads_a_served_process(tmp_path: Path, tokens: dict[str, str]) -> None:
    served = Served(tmp_path, {"health": {"enabled": False}}, tokens)
    served.start()
    try:
        admin = {"Authorization": f"Bearer {tokens['admin']}"}

        def ids() -> set[str]:
            answer = httpx.get(f"{served.url}{API}/patterns", headers=admin, timeout=5)
            return {p["id"] for p in answer.json()["patterns"]}

        assert "disk_io" not in ids()
        data = yaml.safe_load(served.config_path.read_text())
        data["patterns"] = [{"id": "disk_io", "pattern": "iowait", "category": "disk"}]
        served.config_path.write_text(yaml.safe_dump(data))
        assert served.proc is not None
        served.proc.send_signal(1)  # SIGHUP
        deadline = time.monotonic() + 10
        while "disk_io" not in ids() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "disk_io" in ids()
        assert served.proc.poll() is None
    finally:
        assert served.terminate() == 0


# -- patterns ----------------------------------------------------------------------------------


def test_patterns_are_listed_added_and_deleted(mgmt: Mgmt) -> None:
    listed = mgmt.request("GET", "/patterns").json()
    assert listed["builtin_patterns"] is True
    assert all(p["builtin"] for p in listed["patterns"])
    assert "oom" in {p["id"] for p in listed["patterns"]}

    new = {"id": "cache_full", "pattern": "CacheFull|evicting", "category": "memory"}
    added = mgmt.request("POST", "/patterns", json=new)
    assert added.status_code == 201, added.text
    assert added.json()["version"] == 2 and added.json()["pattern"]["builtin"] is False
    patterns = mgmt.request("GET", "/patterns").json()["patterns"]
    assert patterns[0]["id"] == "cache_full" and patterns[0]["builtin"] is False

    duplicate = mgmt.request("POST", "/patterns", json=new)
    assert duplicate.status_code == 409 and error_code(duplicate) == "PATTERN_EXISTS"
    builtin = mgmt.request("POST", "/patterns", json={**new, "id": "oom"})
    assert builtin.status_code == 409 and error_code(builtin) == "PATTERN_EXISTS"
    regex = mgmt.request("POST", "/patterns", json={**new, "id": "bad", "pattern": "(unclosed"})
    assert regex.status_code == 422
    assert regex.json()["error"]["details"][0].startswith("pattern: invalid regex")
    schema = mgmt.request("POST", "/patterns", json={**new, "id": "bad", "category": "weather"})
    assert schema.status_code == 422 and error_code(schema) == "VALIDATION_FAILED"

    assert mgmt.request("DELETE", "/patterns/oom").json()["error"]["code"] == "PATTERN_BUILTIN"
    assert mgmt.request("DELETE", "/patterns/nope").status_code == 404
    deleted = mgmt.request("DELETE", "/patterns/cache_full")
    assert deleted.status_code == 200 and deleted.json() == {"version": 3, "deleted": "cache_full"}
    assert mgmt.request("DELETE", "/patterns/cache_full").status_code == 404
    assert mgmt.request("POST", "/patterns", json=new).status_code == 201
    by_query = mgmt.request("DELETE", "/patterns", params={"id": "cache_full"})
    assert by_query.status_code == 200 and by_query.json()["version"] == 5

    changes = mgmt.events("config:changed")
    assert [e.config_version for e in changes] == [2, 3, 4, 5]
    assert {e.actor for e in changes} == {"admin"}
    assert changes[0].details["diff"]["patterns"]["added"] == ["cache_full"]


def test_a_pattern_a_playbook_needs_cannot_be_deleted(make_mgmt: MakeMgmt) -> None:
    mgmt = make_mgmt(
        patterns=[{"id": "cache_full", "pattern": "CacheFull", "category": "memory"}],
        playbooks=[{**FLUSH, "pattern": "cache_full"}],
    )
    answer = mgmt.request("DELETE", "/patterns/cache_full")
    assert answer.status_code == 422
    assert "unknown pattern or category 'cache_full'" in answer.json()["error"]["details"][0]
    assert mgmt.rt.config_version == 1


# -- the kill switch ---------------------------------------------------------------------------


def test_pause_stops_the_next_action_and_resume_allows_it(mgmt: Mgmt) -> None:
    paused = mgmt.request("POST", "/pause", json={"reason": "maintenance"})
    assert paused.status_code == 200 and paused.json() == {"paused": True, "changed": True}
    assert "remediator_paused 1.0" in mgmt.client.get("/metrics").text
    [event] = mgmt.events("recovery:paused")
    assert event.actor == "admin" and "maintenance" in event.message
    mgmt.alert(payload("p1", container="web"))
    assert mgmt.recorder.calls == []
    assert [e.outcome for e in mgmt.events("recovery:skipped")] == ["paused"]
    refused = mgmt.request("POST", "/trigger", json={"target": "web", "playbook": "restart-web"})
    assert refused.status_code == 409 and error_code(refused) == "PAUSED"

    resumed = mgmt.request("POST", "/resume")  # no body at all
    assert resumed.json() == {"paused": False, "changed": True}
    assert "remediator_paused 0.0" in mgmt.client.get("/metrics").text
    assert mgmt.events("recovery:resumed")[0].actor == "admin"
    mgmt.alert(payload("p2", container="web"))
    assert mgmt.recorder.calls == [("docker.restart", "web", False)]
    assert mgmt.request("POST", "/pause", json={"reason": 5}).status_code == 422


# -- rate limits -------------------------------------------------------------------------------


def test_management_is_rate_limited_per_token_and_intake_never(mgmt: Mgmt) -> None:
    now = [0.0]
    mgmt.rt.limiter = RateLimiter(rate=1, burst=3, clock=lambda: now[0])
    statuses = [mgmt.request("GET", "/circuit-breakers", "viewer").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    limited = mgmt.request("GET", "/events", "viewer")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert error_code(limited) == "RATE_LIMITED"
    admin = [mgmt.request("GET", "/patterns", "admin").status_code for _ in range(4)]
    assert admin == [200, 200, 200, 429]  # a bucket per token
    for i in range(10):  # the same tokens, over their limits: the intake is never limited
        body = payload(f"burst-{i}", alertname="Unrelated")
        role = ("alertmanager", "admin")[i % 2]
        assert mgmt.request("POST", "/alerts", role, json=body).status_code == 200
    assert mgmt.request("POST", "/pause", "admin").status_code == 429
    assert mgmt.events("recovery:paused") == []
    assert mgmt.request("GET", "/health", "viewer").status_code == 200  # public: not limited
    now[0] += 1.0
    assert mgmt.request("GET", "/circuit-breakers", "viewer").status_code == 200
    assert mgmt.request("GET", "/circuit-breakers", "viewer").status_code == 429


# -- statistics and health ---------------------------------------------------------------------


def test_statistics_have_the_documented_shape(mgmt: Mgmt) -> None:
    mgmt.request("POST", "/trigger", json={"target": "web", "playbook": "restart-web"})
    answer = mgmt.request("GET", "/statistics", "viewer", params={"window": "1h"})
    assert answer.status_code == 200, answer.text
    stats = answer.json()
    assert stats["window_seconds"] == 3600
    assert {"mean", "p50", "p90", "count", "by_playbook", "by_category"} <= stats["mttr"].keys()
    assert {"overall", "by_playbook", "by_action"} <= stats["success_rate"].keys()
    assert stats["success_rate"]["by_playbook"] == {"restart-web": 1.0}
    assert stats["actions_by_type"] == {"docker.restart": 1}
    assert set(stats["availability"]) == {"web", "cache", "db"}
    assert {"breaker_trips", "escalations"} <= stats.keys()
    for window in ("soon", "0s", "400d"):
        bad = mgmt.request("GET", "/statistics", "viewer", params={"window": window})
        assert bad.status_code == 422, window


def test_health_details_need_a_read_token(mgmt: Mgmt) -> None:
    minimal = {"status": "healthy", "components": {"store": "up", "worker": "up"}}
    assert mgmt.request("GET", "/health", None).json() == minimal
    assert mgmt.request("GET", "/health", "alertmanager").json() == minimal
    detail = mgmt.request("GET", "/health", "viewer").json()["detail"]
    assert detail["store"]["status"] == "up" and detail["store"]["backend"] == "sqlite"
    assert detail["workers"] == {"alive": True, "inbox_pending": 0}
    assert detail["docker"] == [{"host": "default", "status": "unknown", "targets": [
        {"target": "web", "type": "docker_container", "status": "unknown", "detail": ""}]}]  # fmt: skip
    assert [t["target"] for t in detail["redis"]] == ["cache"]
    assert [t["target"] for t in detail["postgres"]] == ["db"]
    assert detail["breakers"] == {"closed": 3, "half_open": 0, "open": 0}
    assert detail["config_version"] == 1 and detail["paused"] is False
    assert "s3cretRedisPw" not in str(detail)


def test_every_endpoint_is_documented() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text(encoding="utf-8")
    for op in OPERATIONS:
        assert f"{op.method} {op.path}" in text, f"{op.method} {op.path} is not in docs/api.md"
    served = TestClient(create_app(config_mod.parse({}, env={}), authenticator=Authenticator([])))
    document = served.get(f"{API}/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert {"bearerAuth", "basicAuth"} <= document["components"]["securitySchemes"].keys()
    for path, methods in document["paths"].items():
        for method, entry in methods.items():
            if entry["security"] and {} not in entry["security"]:  # not public, not optional
                assert {"401", "403"} <= entry["responses"].keys(), (method, path)
