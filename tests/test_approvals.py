"""Approvals (issue #15): a playbook with ``approval:`` waits for a listed approver — by API,
by Slack's signed buttons — with a time limit; guards are checked again at decision time."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from starlette.testclient import TestClient

from remediator.clock import FakeClock, iso
from remediator.config import model as config_mod
from remediator.config.auth import Authenticator, Principal
from remediator.http.app import create_app
from remediator.http.ratelimit import RateLimiter
from remediator.plugins import Plugins
from remediator.runtime import Runtime
from remediator.store import EventQuery
from tests.engine_harness import Recorder, fake_registry, restart_playbook
from tests.waiting import wait_for

P = "/api/v1/recovery"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # the Slack app's signing secret (test value)
SLACK_USER = "U0ALICE01"
ROLES = {"am": "alertmanager", "viewer": "viewer", "alice": "approver", "bob": "approver",
         "root": "admin"}  # fmt: skip


class App:
    def __init__(self, client: TestClient, rt: Runtime, tokens: dict[str, str], rec: Recorder):
        self.client, self.rt, self.tokens, self.recorder = client, rt, tokens, rec

    @property
    def clock(self) -> FakeClock:
        assert isinstance(self.rt.clock, FakeClock)
        return self.rt.clock

    def run(self, fn: Any, *args: Any) -> Any:
        assert self.client.portal is not None
        return self.client.portal.call(fn, *args)

    def call(self, method: str, path: str, who: str = "root", **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return self.client.request(method, P + path, headers=headers, **kw)

    def fire(self, fingerprint: str = "f1", status: str = "firing") -> None:
        alert = {
            "status": status,
            "labels": {"alertname": "ContainerMemoryHigh", "severity": "warning",
                       "container": "web"},
            "annotations": {"summary": "memory high"},
            "startsAt": iso(1_800_000_000.0),
            "endsAt": iso(1_800_000_100.0) if status == "resolved" else "0001-01-01T00:00:00Z",
            "fingerprint": fingerprint,
        }  # fmt: skip
        payload = {"version": "4", "status": status, "receiver": "r", "groupKey": "g",
                   "alerts": [alert]}  # fmt: skip
        assert self.call("POST", "/alerts", "am", json=payload).status_code == 200
        self.processed()

    def processed(self) -> None:
        """Wait until every stored alert is done (the app's own worker may claim some)."""

        def done() -> bool:
            while self.run(self.rt.worker.run_once):
                pass
            rows = self.run(self.rt.store.raw, "SELECT count(*) FROM inbox WHERE state <> 'done'")
            return bool(rows[0][0] == 0)

        wait_for(done, timeout=10, what="every stored alert to be processed", every=0.02)

    def events(self, type_: str) -> list[Any]:
        return list(self.run(self.rt.store.events, EventQuery(type=type_, limit=1000)))

    def open_id(self) -> int:
        found = self.call("GET", "/approvals?state=open", "viewer").json()["approvals"]
        assert len(found) == 1, found
        return int(found[0]["id"])

    def slack(self, body: bytes, *, ts: int | None = None, secret: str = SECRET) -> Any:
        stamp = str(int(self.clock.now()) if ts is None else ts)
        base = f"v0:{stamp}:".encode() + body
        sig = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
        headers = {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": sig,
                   "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip
        return self.client.post(P + "/slack/interactions", content=body, headers=headers)


def click(approval_id: int, action: str = "approve", user: str = SLACK_USER) -> bytes:
    """A Block Kit button click, form-encoded as Slack sends it."""
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": "alice"},
        "actions": [{"action_id": action, "block_id": "approval", "value": str(approval_id),
                     "type": "button", "action_ts": str(time.time())}],
    }  # fmt: skip
    return urlencode({"payload": json.dumps(payload)}).encode()


def approval(**extra: Any) -> dict[str, Any]:
    return {"approvers": ["alice"], "slack_users": [SLACK_USER], "ttl": "10m", **extra}


@contextlib.contextmanager
def started(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    url: str | None = None,
    tokens: dict[str, str] | None = None,
    sections: Any = None,  # more configuration sections (a dict)
    **spec: Any,
) -> Iterator[App]:
    tokens = tokens or {name: secrets.token_urlsafe(24) for name in ROLES}
    auth = Authenticator([(Principal(n, ROLES[n]), t) for n, t in tokens.items()])  # type: ignore[arg-type]
    monkeypatch.setenv("TEST_SLACK_SIGNING_SECRET", SECRET)
    cfg = config_mod.parse(
        {
            "store": {"url": url or f"sqlite:///{tmp_path}/r.db"},
            "health": {"enabled": False},
            "targets": [{"name": "web", "type": "docker_container", "container": "web"}],
            "playbooks": [restart_playbook(approval=approval(**spec))],
            "approvals": {"slack_signing_secret_env": "TEST_SLACK_SIGNING_SECRET"},
            **(sections or {}),
        },
        env={},
    )
    recorder = Recorder()
    holder: list[Runtime] = []
    clock = FakeClock()
    app = create_app(cfg, authenticator=auth, clock=clock, plugins=Plugins(),
                     actions=fake_registry(recorder), on_runtime=holder.append)  # fmt: skip
    with TestClient(app, raise_server_exceptions=False) as client:
        holder[0].limiter = RateLimiter(rate=1000, burst=1000)
        yield App(client, holder[0], tokens, recorder)


def test_a_playbook_with_approval_waits_and_runs_once_an_approver_approves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with started(tmp_path, monkeypatch) as app:
        app.fire()
        assert app.recorder.count() == 0  # nothing ran: it waits
        [requested] = app.events("recovery:approval_requested")
        assert requested.target == "web" and requested.playbook == "restart"
        rid = app.open_id()
        app.clock.advance(42)
        answer = app.call("POST", f"/approvals/{rid}/approve", "alice", json={"reason": "ok"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["approval"]["state"] == "approved"
        app.run(app.rt.engine.approvals.drain)
        assert app.recorder.calls == [("docker.restart", "web", False)]
        [approved] = app.events("recovery:approved")
        assert approved.actor == "alice" and approved.details["channel"] == "api"
        assert approved.details["waited"] == pytest.approx(42)
        assert len(app.events("recovery:succeeded")) == 1
        # decided once: a second decision is a 409 and runs nothing more
        again = app.call("POST", f"/approvals/{rid}/deny", "bob")
        assert again.status_code in (403, 409)
        again = app.call("POST", f"/approvals/{rid}/deny", "root")
        assert again.status_code == 409
        assert app.recorder.count() == 1
        metrics = app.client.get("/metrics").text
        assert 'remediator_approvals_total{outcome="approved",playbook="restart"} 1.0' in metrics
        assert "remediator_approval_wait_seconds_count 1.0" in metrics


def test_a_denial_runs_nothing_and_an_unlisted_token_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with started(tmp_path, monkeypatch) as app:
        app.fire()
        rid = app.open_id()
        assert app.call("POST", f"/approvals/{rid}/approve", "viewer").status_code == 403
        assert app.call("POST", f"/approvals/{rid}/approve", "bob").status_code == 403  # unlisted
        assert app.call("POST", "/approvals/999/approve", "alice").status_code == 404
        answer = app.call("POST", f"/approvals/{rid}/deny", "alice", json={"reason": "no"})
        assert answer.json()["approval"]["state"] == "denied"
        assert app.recorder.count() == 0
        [denied] = app.events("recovery:denied")
        assert denied.actor == "alice" and denied.details["reason"] == "no"
        remediation = app.run(app.rt.store.remediations)[0]
        assert (remediation.state, remediation.reason) == ("blocked", "approval_denied")


@pytest.mark.parametrize("on_expiry", ["deny", "escalate"])
def test_an_undecided_approval_expires_after_its_ttl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_expiry: str
) -> None:
    with started(tmp_path, monkeypatch, on_expiry=on_expiry) as app:
        app.fire()
        rid = app.open_id()
        app.clock.advance(599)
        assert app.run(app.rt.engine.approvals.sweep) == 0  # not yet
        app.clock.advance(2)
        assert app.run(app.rt.engine.approvals.sweep) == 1
        [expired] = app.events("recovery:approval_expired")
        assert expired.details["reason"] == on_expiry and expired.details["waited"] >= 600
        escalated = [e for e in app.events("recovery:escalated") if e.outcome == "approval_expired"]
        assert len(escalated) == (1 if on_expiry == "escalate" else 0)
        assert app.call("POST", f"/approvals/{rid}/approve", "alice").status_code == 409
        assert app.recorder.count() == 0


def test_a_resolved_alert_cancels_its_open_approval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with started(tmp_path, monkeypatch) as app:
        app.fire()
        rid = app.open_id()
        app.fire(status="resolved")
        assert app.run(app.rt.engine.approvals.sweep) == 0  # already cancelled by the worker
        assert len(app.events("recovery:approval_cancelled")) == 1
        assert app.call("POST", f"/approvals/{rid}/approve", "alice").status_code == 409
        assert app.recorder.count() == 0


def test_an_approval_after_the_kill_switch_is_skipped_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with started(tmp_path, monkeypatch) as app:
        app.fire()
        rid = app.open_id()
        assert app.call("POST", "/pause", "root", json={"reason": "freeze"}).status_code == 200
        answer = app.call("POST", f"/approvals/{rid}/approve", "alice")
        assert answer.json()["approval"]["state"] == "skipped"
        app.run(app.rt.engine.approvals.drain)
        assert app.recorder.count() == 0
        assert "paused" in [e.outcome for e in app.events("recovery:skipped")]


def test_slack_clicks_are_verified_before_anything_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with started(tmp_path, monkeypatch) as app:
        app.fire()
        rid = app.open_id()
        now = int(app.clock.now())
        body = click(rid)
        # unsigned, mis-signed, stale: 401, nothing decided
        unsigned = app.client.post(P + "/slack/interactions", content=body)
        assert unsigned.status_code == 401
        assert app.slack(body, secret="not-the-secret-at-all-0000").status_code == 401
        assert app.slack(body, ts=now - 301).status_code == 401
        # a listed approver's token does not make a Slack user: an unlisted user is refused
        assert app.slack(click(rid, user="U0MALLORY")).status_code == 403
        assert app.open_id() == rid and app.recorder.count() == 0
        good = app.slack(body)
        assert good.status_code == 200, good.text
        assert f"approved by <@{SLACK_USER}>" in good.json()["text"]
        app.run(app.rt.engine.approvals.drain)
        assert app.recorder.count() == 1
        [approved] = app.events("recovery:approved")
        assert approved.actor == f"slack:{SLACK_USER}" and approved.details["channel"] == "slack"
        # the same signed request again: a replay, 401
        assert app.slack(body).status_code == 401
        assert app.recorder.count() == 1


def test_a_slack_deny_by_a_listed_user_denies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with started(tmp_path, monkeypatch) as app:
        app.fire()
        rid = app.open_id()
        answer = app.slack(click(rid, "deny"))
        assert answer.status_code == 200 and "denied" in answer.json()["text"]
        assert app.recorder.count() == 0
        assert len(app.events("recovery:denied")) == 1


def test_two_replicas_taking_two_approvals_at_once_run_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_database: str
) -> None:
    tokens = {name: secrets.token_urlsafe(24) for name in ROLES}
    spec = {"approvers": ["alice", "bob"]}
    with (
        started(tmp_path, monkeypatch, url=pg_database, tokens=tokens, **spec) as one,
        started(tmp_path, monkeypatch, url=pg_database, tokens=tokens, **spec) as two,
    ):
        one.fire()
        rid = two.open_id()
        with ThreadPoolExecutor(2) as pool:  # both race on the one open approval
            a = pool.submit(one.call, "POST", f"/approvals/{rid}/approve", "alice")
            b = pool.submit(two.call, "POST", f"/approvals/{rid}/approve", "bob")
            codes = sorted([a.result().status_code, b.result().status_code])
        assert codes == [200, 409]
        one.run(one.rt.engine.approvals.drain)
        two.run(two.rt.engine.approvals.drain)
        assert one.recorder.count() + two.recorder.count() == 1
        assert len(one.events("recovery:approved")) == 1
        assert len(one.events("recovery:succeeded")) == 1
