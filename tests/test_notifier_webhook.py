"""The webhook notifier against a real stdlib HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2
import pytest

from remediator.config.model import WebhookConfig
from remediator.errors import ConfigError
from remediator.notifiers.base import Delivery, Notification
from remediator.notifiers.webhook import (
    WebhookNotifier,
    encode_body,
    retry_after,
    verify_signature,
)
from tests.realservices import free_port

SECRET = "whsec-0123456789abcdef"
SECRET_ENV = "REMEDIATOR_TEST_WEBHOOK_SECRET"
URL_TOKEN = "t0ken-in-the-url"


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
        # path -> (status, extra headers); anything else answers 204
        self.replies: dict[str, tuple[int, dict[str, str]]] = {}
        self.release = threading.Event()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and went away is expected here

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class Handler(BaseHTTPRequestHandler):
    server: Server

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?")[0]
        self.server.seen.append(Seen(self.command, path, dict(self.headers), body))
        if path == "/slow":
            self.server.release.wait(5)
        status, headers = self.server.replies.get(path, (204, {}))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _handle

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


def note(destination: str = "signed", **overrides: Any) -> Notification:
    values: dict[str, Any] = {
        "id": 42,
        "channel": "webhook",
        "destination": destination,
        "incident": "abc123:1",
        "phase": "recovered",
        "title": "HighMemory on web-1 — recovered",
        "fields": {"target": "web-1", "alert": "HighMemory", "outcome": "succeeded"},
        "severity": "critical",
        "links": {"runbook": "https://runbooks.example.test/high-memory"},
        "detail": "restarted <web-1>",
        "data": {"labels": {"b": "2", "a": "1"}, "value": 93.5, "ok": True},
    }
    values.update(overrides)
    return Notification(**values)


def configs(server: Server) -> list[WebhookConfig]:
    return [
        WebhookConfig(name="signed", url=server.url(f"/hook/{URL_TOKEN}"), secret_env=SECRET_ENV),
        WebhookConfig(name="plain", url=server.url("/plain")),
        WebhookConfig(name="e500", url=server.url("/e500")),
        WebhookConfig(name="e429", url=server.url("/e429")),
        WebhookConfig(name="e503", url=server.url("/e503")),
        WebhookConfig(name="e404", url=server.url("/e404")),
        WebhookConfig(name="moved", url=server.url("/moved")),
        WebhookConfig(name="slow", url=server.url("/slow")),
    ]


def send(server: Server, n: Notification, *, client: httpx2.AsyncClient | None = None) -> Delivery:
    async def main() -> Delivery:
        notifier = WebhookNotifier(configs(server), client=client, env={SECRET_ENV: SECRET})
        try:
            return await notifier.send(n)
        finally:
            await notifier.aclose()

    return asyncio.run(main())


def test_body_headers_and_signature(server: Server) -> None:
    before = int(time.time())
    n = note()
    delivery = send(server, n)
    assert delivery == Delivery(True, "webhook signed: HTTP 204")
    [seen] = server.seen
    assert seen.method == "POST" and seen.path == f"/hook/{URL_TOKEN}"
    headers = {k.lower(): v for k, v in seen.headers.items()}
    assert headers["content-type"] == "application/json"
    assert headers["x-remediator-event-id"] == "42"
    timestamp = headers["x-remediator-timestamp"]
    assert before <= int(timestamp) <= int(time.time())
    # The body is deterministic JSON: sorted keys, compact separators, UTF-8.
    assert seen.body == encode_body(n)
    assert seen.body.startswith(b'{"data":{"labels":{"a":"1","b":"2"},"ok":true,"value":93.5},')
    assert json.loads(seen.body) == {
        "id": 42,
        "incident": "abc123:1",
        "phase": "recovered",
        "title": "HighMemory on web-1 — recovered",
        "severity": "critical",
        "fields": {"target": "web-1", "alert": "HighMemory", "outcome": "succeeded"},
        "links": {"runbook": "https://runbooks.example.test/high-memory"},
        "detail": "restarted <web-1>",
        "data": {"labels": {"b": "2", "a": "1"}, "value": 93.5, "ok": True},
    }
    signature = headers["x-remediator-signature"]
    assert signature.startswith("sha256=") and len(signature) == len("sha256=") + 64
    assert verify_signature(SECRET, timestamp, seen.body, signature)
    assert verify_signature(SECRET.encode(), timestamp, seen.body, signature, max_age=300)
    assert not verify_signature("wrong-secret", timestamp, seen.body, signature)
    assert not verify_signature(SECRET, timestamp, seen.body + b" ", signature)
    assert not verify_signature(SECRET, str(int(timestamp) + 1), seen.body, signature)
    assert not verify_signature(SECRET, timestamp, seen.body, signature.removeprefix("sha256="))
    stale = int(timestamp) + 3600
    assert not verify_signature(SECRET, timestamp, seen.body, signature, max_age=300, now=stale)


def test_no_secret_no_signature(server: Server) -> None:
    assert send(server, note("plain")).ok
    [seen] = server.seen
    assert "x-remediator-signature" not in {k.lower() for k in seen.headers}


def test_server_error_is_retryable(server: Server) -> None:
    server.replies["/e500"] = (500, {})
    delivery = send(server, note("e500"))
    assert not delivery.ok and not delivery.permanent and delivery.retry_after is None
    assert "500" in delivery.detail


def test_429_with_retry_after(server: Server) -> None:
    server.replies["/e429"] = (429, {"Retry-After": "7"})
    delivery = send(server, note("e429"))
    assert not delivery.ok and not delivery.permanent
    assert delivery.retry_after == 7.0


def test_503_with_retry_after_date(server: Server) -> None:
    when = datetime.now(UTC) + timedelta(seconds=120)
    server.replies["/e503"] = (503, {"Retry-After": format_datetime(when, usegmt=True)})
    delivery = send(server, note("e503"))
    assert not delivery.ok and not delivery.permanent
    assert delivery.retry_after is not None and 100 <= delivery.retry_after <= 121


def test_429_without_retry_after_is_retryable(server: Server) -> None:
    server.replies["/e429"] = (429, {})
    delivery = send(server, note("e429"))
    assert not delivery.ok and not delivery.permanent and delivery.retry_after is None


def test_not_found_is_permanent(server: Server) -> None:
    server.replies["/e404"] = (404, {})
    delivery = send(server, note("e404"))
    assert not delivery.ok and delivery.permanent
    assert "404" in delivery.detail


def test_redirect_is_not_followed(server: Server) -> None:
    server.replies["/moved"] = (302, {"Location": server.url("/plain")})
    delivery = send(server, note("moved"))
    assert not delivery.ok and delivery.permanent
    assert [s.path for s in server.seen] == ["/moved"]


def test_unknown_webhook_is_permanent(server: Server) -> None:
    delivery = send(server, note("nope"))
    assert not delivery.ok and delivery.permanent
    assert "nope" in delivery.detail
    assert server.seen == []


def test_connection_refused_is_retryable_and_hides_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/hook/{URL_TOKEN}"

    async def main() -> Delivery:
        notifier = WebhookNotifier([WebhookConfig(name="gone", url=url)], env={})
        try:
            return await notifier.send(note("gone"))
        finally:
            await notifier.aclose()

    delivery = asyncio.run(main())
    assert not delivery.ok and not delivery.permanent
    assert URL_TOKEN not in delivery.detail and "gone" in delivery.detail


def test_timeout_is_retryable(server: Server) -> None:
    async def main() -> tuple[Delivery, bool]:
        async with httpx2.AsyncClient(timeout=0.3, trust_env=False) as client:
            notifier = WebhookNotifier(configs(server), client=client, env={SECRET_ENV: SECRET})
            delivery = await notifier.send(note("slow"))
            await notifier.aclose()  # a client it was given is not its to close
            return delivery, client.is_closed

    delivery, closed = asyncio.run(main())
    assert not delivery.ok and not delivery.permanent
    assert "timed out" in delivery.detail
    assert not closed


def test_missing_secret_is_a_config_error(server: Server) -> None:
    with pytest.raises(ConfigError, match=SECRET_ENV):
        WebhookNotifier(configs(server), env={})


def test_retry_after_parsing() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after("30") == 30.0
    assert retry_after(" 1.5 ") == 1.5
    assert retry_after("-4") == 0.0
    assert retry_after("soon") is None
    assert retry_after(None) is None
    assert retry_after("Thu, 01 Jan 2026 00:01:00 GMT", now=now) == 60.0
    assert retry_after("99999999") == 24 * 3600.0
