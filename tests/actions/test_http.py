"""HTTP actions and health check against a real stdlib HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from remediator.actions.base import Action, ActionContext, ActionResult
from remediator.actions.http import (
    ACTIONS,
    HttpCall,
    HttpCallAction,
    HttpFailover,
    HttpFailoverAction,
)
from remediator.checks.http import CHECKS, HttpGetCheck
from remediator.clients import Clients
from remediator.config import steps
from remediator.config.targets import HttpTarget, RedisTarget, Target
from tests.realservices import free_port

SECRET = "Bearer s3cret-token"


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[Seen] = []
        self.release = threading.Event()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and went away is expected here

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: Server

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append(Seen(self.command, self.path, dict(self.headers), body))
        path = self.path.split("?")[0]
        status = 200
        if path.startswith("/status/"):
            status = int(path.removeprefix("/status/"))
        elif path == "/redirect":
            status = 302
        elif path == "/slow":
            self.server.release.wait(5)
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "http://other.invalid/elsewhere")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield srv
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def run_action(action: Action, target: Target, step: Any, *, dry_run: bool = False) -> ActionResult:
    async def main() -> ActionResult:
        clients = Clients()
        try:
            ctx = ActionContext(target=target, step=step, clients=clients, dry_run=dry_run)
            return await action.run(ctx)
        finally:
            await clients.aclose()

    return asyncio.run(main())


def check(target: HttpTarget, timeout: float = 5) -> Any:
    async def main() -> Any:
        clients = Clients()
        try:
            return await HttpGetCheck().check(target, clients, timeout=timeout)
        finally:
            await clients.aclose()

    return asyncio.run(main())


def web(base_url: str, **kwargs: Any) -> HttpTarget:
    return HttpTarget(type="http", name="web", base_url=base_url, **kwargs)


def call(path: str, **kwargs: Any) -> HttpCall:
    return HttpCall(action="http.call", path=path, **kwargs)


FAILOVER = HttpFailover(action="http.failover")


def test_exports() -> None:
    # every http.* step of the registry, and nothing else, comes from this module
    assert sorted(a.name for a in ACTIONS) == [
        n for n in steps.action_names() if n.startswith("http.")
    ]
    assert all(a.target_types == frozenset({"http"}) for a in ACTIONS)
    assert [c.target_type for c in CHECKS] == ["http"]


def test_call_sends_method_path_headers_and_body(server: Server) -> None:
    target = web(server.url + "/api/", headers={"Authorization": SECRET, "X-Env": "target"})
    step = call(
        "/admin/reload?scope=all",
        method="PUT",
        headers={"X-Env": "step", "X-Op": "reload"},
        body={"force": True, "n": 3},
    )
    result = run_action(HttpCallAction(), target, step)
    assert result.ok, result.detail
    assert result.detail == "PUT /admin/reload on web -> 200"
    assert result.data == {"status": 200}
    [seen] = server.seen
    assert (seen.method, seen.path) == ("PUT", "/api/admin/reload?scope=all")
    assert seen.headers["Authorization"] == SECRET
    assert seen.headers["X-Env"] == "step"  # the step's header wins
    assert seen.headers["X-Op"] == "reload"
    assert seen.headers["Content-Type"] == "application/json"
    assert json.loads(seen.body) == {"force": True, "n": 3}


def test_call_without_body_sends_none(server: Server) -> None:
    result = run_action(HttpCallAction(), web(server.url), call("/purge", method="DELETE"))
    assert result.ok, result.detail
    [seen] = server.seen
    assert (seen.method, seen.path, seen.body) == ("DELETE", "/purge", b"")


def test_unexpected_status_is_not_ok_and_hides_headers(server: Server) -> None:
    target = web(server.url, headers={"Authorization": SECRET})
    result = run_action(HttpCallAction(), target, call("/status/503", headers={"X-Key": "k3y"}))
    assert not result.ok
    assert "503" in result.detail
    assert "s3cret" not in result.detail and "k3y" not in result.detail
    ok = run_action(HttpCallAction(), target, call("/status/503", expected_status=[503]))
    assert ok.ok


def test_redirects_are_not_followed(server: Server) -> None:
    result = run_action(HttpCallAction(), web(server.url), call("/redirect", method="GET"))
    assert not result.ok and "302" in result.detail
    assert len(server.seen) == 1


def test_call_is_bounded_by_the_step_timeout(server: Server) -> None:
    result = run_action(HttpCallAction(), web(server.url), call("/slow", timeout=0.3))
    assert not result.ok and "timed out" in result.detail
    assert result.duration < 2


def test_dry_run_sends_nothing(server: Server) -> None:
    result = run_action(HttpCallAction(), web(server.url), call("/admin/reload"), dry_run=True)
    assert result.ok and result.detail == "dry-run: would POST /admin/reload on web"
    target = web(server.url, backup_url=server.url)
    result = run_action(HttpFailoverAction(), target, FAILOVER, dry_run=True)
    assert result.ok and result.detail.startswith("dry-run: would switch web")
    assert server.seen == []


def test_down_server_fails_fast() -> None:
    down = f"http://user:s3cret-pw@127.0.0.1:{free_port()}"
    result = run_action(HttpCallAction(), web(down), call("/x"))
    assert not result.ok and result.detail.startswith("http.call on web failed:")
    assert "s3cret" not in result.detail
    assert result.duration < 3


def test_failover_to_a_healthy_backup(server: Server) -> None:
    backup = server.url + "/backup"
    target = web(
        f"http://127.0.0.1:{free_port()}",
        backup_url=backup,
        health_path="/healthz",
        headers={"Authorization": SECRET},
    )
    result = run_action(HttpFailoverAction(), target, FAILOVER)
    assert result.ok, result.detail
    assert result.data == {"active_url": backup}
    [seen] = server.seen
    assert (seen.method, seen.path) == ("GET", "/backup/healthz")
    assert seen.headers["Authorization"] == SECRET
    assert "s3cret" not in result.detail


def test_failover_refused_when_backup_is_down_unhealthy_or_missing(server: Server) -> None:
    down = web(server.url, backup_url=f"http://127.0.0.1:{free_port()}")
    result = run_action(HttpFailoverAction(), down, FAILOVER)
    assert not result.ok and result.data == {}
    assert result.duration < 3

    unhealthy = web(server.url, backup_url=server.url, health_path="/status/500")
    result = run_action(HttpFailoverAction(), unhealthy, FAILOVER)
    assert not result.ok and "500" in result.detail and result.data == {"status": 500}

    result = run_action(HttpFailoverAction(), web(server.url), FAILOVER)
    assert not result.ok and "no backup_url" in result.detail


def test_wrong_target_type() -> None:
    target = RedisTarget(type="redis", name="cache", url="redis://127.0.0.1:1/0")
    for action in ACTIONS:
        result = run_action(action, target, FAILOVER)
        assert (result.ok, result.detail) == (False, "wrong target type")


def test_health_check(server: Server) -> None:
    up = check(web(server.url, health_path="/healthz"))
    assert up.healthy and up.detail == "GET /healthz -> 200"
    wrong_status = check(web(server.url, health_path="/status/500"))
    assert not wrong_status.healthy and "500" in wrong_status.detail
    expected = check(web(server.url, health_path="/status/204", expected_status=[204]))
    assert expected.healthy
    slow = check(web(server.url, health_path="/slow"), timeout=0.3)
    assert not slow.healthy and "timed out" in slow.detail
    down = check(web(f"http://127.0.0.1:{free_port()}"))
    assert not down.healthy and down.duration < 3


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer s3cret\r\nX: y"},
        {"Bad Name s3cret": "v"},
        {"X-K": "caf\u00e9 s3cret"},
    ],
)
def test_invalid_header_errors_hide_the_header(server: Server, headers: dict[str, str]) -> None:
    result = run_action(HttpCallAction(), web(server.url, headers=headers), call("/x"))
    assert not result.ok and "s3cret" not in result.detail
    health = check(web(server.url, headers=headers))
    assert not health.healthy and "s3cret" not in health.detail
