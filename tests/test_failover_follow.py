"""An HTTP failover is followed: after ``http.failover`` the health check, later steps and the
API use the backup, a restart (a new runtime on the same store) keeps it, and ``http.failback``
returns to the primary. Two real HTTP servers on 127.0.0.1; the engine and the API in-process."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from remediator.clock import iso
from remediator.config import model as config_mod
from remediator.config.auth import Authenticator
from remediator.store import EventQuery
from tests.inprocess import InProcess, start

API = "/api/v1/recovery"


class Server(ThreadingHTTPServer):
    """Answers GET /health with 200 while ``healthy``, else 503; anything else with 200."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, healthy: bool) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.healthy = healthy
        self.seen: list[tuple[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: Server

    def _handle(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.command, self.path))
        status = 503 if self.path == "/health" and not self.server.healthy else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serving(healthy: bool) -> Iterator[Server]:
    srv = Server(healthy)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


@pytest.fixture
def servers() -> Iterator[tuple[Server, Server]]:
    with serving(healthy=False) as primary, serving(healthy=True) as backup:
        yield primary, backup


class Remediator(InProcess):
    def endpoint(self) -> dict[str, Any]:
        answer = self.call("GET", f"{API}/targets/api", "viewer")
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()["endpoint"]
        return found

    def trigger(self, action: str, **params: Any) -> dict[str, Any]:
        body = {"target": "api", "action": action, "params": params, "force": True, "reason": "t"}
        answer = self.call("POST", f"{API}/trigger", json=body)
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result


@pytest.fixture
def restart(
    tmp_path: Path,
    servers: tuple[Server, Server],
    authenticator: Authenticator,
    headers: Callable[[str], dict[str, str]],
) -> Iterator[Callable[[], Remediator]]:
    primary, backup = servers
    cfg = config_mod.parse(
        {
            "store": {"url": f"sqlite:///{tmp_path}/remediator.db"},
            "health": {"enabled": False},
            "targets": [
                {"name": "api", "type": "http", "base_url": primary.url,
                 "backup_url": backup.url, "health_path": "/health"},
                {"name": "web", "type": "docker_container"},
            ],
            "playbooks": [
                {"name": "fail-over-api", "match": ['alertname="ApiDown"'], "target": "api",
                 "steps": [{"action": "http.failover"},
                           {"action": "http.call", "path": "/admin/reload"},
                           {"action": "verify.health", "within": "10s", "interval": "1s"}],
                 "cooldown": "0s", "retry": {"max_attempts": 1}},
            ],
        },
        env={},
    )  # fmt: skip
    with contextlib.ExitStack() as stack:

        def make() -> Remediator:
            stack.close()  # a restart: the previous runtime stops first
            return start(stack, cfg, authenticator=authenticator, headers=headers, kind=Remediator)

        yield make


ALERT = {
    "version": "4",
    "groupKey": "g",
    "status": "firing",
    "receiver": "remediator",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "ApiDown"},
            "startsAt": iso(1_800_000_000.0),
            "fingerprint": "f-api",
        }
    ],
}


def test_after_a_failover_checks_steps_and_the_api_use_the_backup_even_after_a_restart(
    servers: tuple[Server, Server], restart: Callable[[], Remediator]
) -> None:
    primary, backup = servers
    first = restart()
    assert first.call("POST", f"{API}/alerts", "alertmanager", json=ALERT).status_code == 200
    deadline = time.monotonic() + 20
    while not first.run(first.rt.store.events, EventQuery(type="recovery:succeeded")):
        assert time.monotonic() < deadline, "the failover playbook did not succeed"
        time.sleep(0.05)
    # The failover checked the backup; the next step and the verification used it.
    assert backup.seen == [("GET", "/health"), ("POST", "/admin/reload"), ("GET", "/health")]
    assert primary.seen == []
    assert first.endpoint() == {
        "primary_url": primary.url, "backup_url": backup.url, "active_url": backup.url,
        "on_backup": True,
    }  # fmt: skip
    detail = first.call("GET", f"{API}/targets/api", "viewer").json()
    assert detail["health"]["status"] == "up"  # the backup's health, the primary is down
    assert detail["breaker"]["state"] == "closed"
    assert detail["quarantine"] == {"quarantined": False, "quarantined_at": None, "reason": None}

    # A restart: a new runtime on the same store keeps following the backup.
    backup.seen.clear()
    second = restart()
    assert second.endpoint()["active_url"] == backup.url
    target = second.rt.config.target("api")
    assert second.run(second.rt.monitor.check_now, target).healthy
    assert second.trigger("http.call", path="/admin/flush")["ok"] is True
    assert backup.seen == [("GET", "/health"), ("POST", "/admin/flush")]
    assert primary.seen == []

    # Failing back needs a healthy primary; then everything uses the primary again.
    refused = second.trigger("http.failback")
    assert refused["ok"] is False and "not failing back" in refused["steps"][0]["message"]
    assert second.endpoint()["active_url"] == backup.url
    primary.healthy = True
    assert second.trigger("http.failback")["ok"] is True
    assert second.endpoint() == {
        "primary_url": primary.url, "backup_url": backup.url, "active_url": primary.url,
        "on_backup": False,
    }  # fmt: skip
    assert second.trigger("http.call", path="/admin/flush")["ok"] is True
    assert primary.seen == [("GET", "/health"), ("GET", "/health"), ("POST", "/admin/flush")]
    assert second.run(second.rt.monitor.check_now, target).healthy
    assert primary.seen[-1] == ("GET", "/health")


def test_an_unknown_target_is_404_and_other_types_have_no_endpoint(
    restart: Callable[[], Remediator],
) -> None:
    remediator = restart()
    assert remediator.endpoint()["active_url"] == remediator.rt.config.target("api").base_url  # type: ignore[union-attr]
    missing = remediator.call("GET", f"{API}/targets/nope", "viewer")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "SERVICE_NOT_FOUND"
    web = remediator.call("GET", f"{API}/targets/web").json()  # admin may read too
    assert web["type"] == "docker_container" and web["endpoint"] is None
    assert web["health"] == {"status": "unknown", "detail": ""}
