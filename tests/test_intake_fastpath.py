"""The webhook's pure-ASGI fast path (remediator/http/intake.py) against its Starlette route.

Every status the webhook answers, its body and headers, and the metrics it leaves, through three
transports: the app under Starlette's TestClient, the same app with the fast path bypassed (the
Starlette route, which the route table keeps), and a real uvicorn server on a loopback port.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from remediator.config import model as config_mod
from remediator.config.auth import Authenticator
from remediator.errors import StoreUnavailable
from remediator.http import intake
from remediator.http.app import create_app
from remediator.runtime import Runtime
from tests.conftest import ALERTS, fixture_payload
from tests.serving import Served as ServedProcess
from tests.serving import free_port

LIMIT = 64 * 1024  # the body cap of these apps (server.max_body_bytes)
TRANSPORTS = ("fast", "route", "uvicorn")
CHALLENGE = 'Bearer realm="remediator"'


# Starlette's TestClient speaks httpx; the uvicorn tests use the project's httpx2.
Client = TestClient | httpx2.Client
Answer = httpx2.Response


class Webhook:
    """One app behind one transport, its runtime, and how often the fast path answered."""

    def __init__(
        self,
        transport: str,
        client: Client,
        runtime: Runtime,
        tokens: dict[str, str],
        fast_calls: list[int],
    ) -> None:
        self.transport = transport
        self.client = client
        self.runtime = runtime
        self.tokens = tokens
        self.fast_calls = fast_calls

    def post(self, body: Any = None, *, role: str | None = "alertmanager", **kw: Any) -> Answer:
        headers = dict(kw.pop("headers", {}))
        if role is not None:
            headers["Authorization"] = f"Bearer {self.tokens[role]}"
        if body is not None:
            kw["json"] = body
        return self.client.post(ALERTS, headers=headers, **kw)

    def metrics(self) -> str:
        return self.client.get("/metrics").content.decode()


@contextmanager
def _uvicorn(app: Starlette) -> Iterator[str]:
    """``app`` served by uvicorn in a thread of this process (stopped by its own flag)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on"
        )
    )
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


def _starlette_only(app: Starlette) -> Callable[[Scope, Receive, Send], Any]:
    """``app`` without its fast path: every request through Starlette's own ``__call__``."""

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        await Starlette.__call__(app, scope, receive, send)

    return asgi


@pytest.fixture(params=TRANSPORTS)
def webhook(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    authenticator: Authenticator,
    tokens: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Webhook]:
    fast_calls: list[int] = []
    real = intake.webhook

    async def counted(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
        fast_calls.append(1)
        await real(rt, scope, receive, send)

    monkeypatch.setattr(intake, "webhook", counted)
    config = config_mod.parse(
        {
            "store": {"url": f"sqlite:///{tmp_path}/remediator.db"},
            "server": {"max_body_bytes": LIMIT},
        },
        env={},
    )
    holder: list[Runtime] = []
    app = create_app(config, authenticator=authenticator, on_runtime=holder.append)
    if request.param == "uvicorn":
        with _uvicorn(app) as url, httpx2.Client(base_url=url, timeout=30) as client:
            yield Webhook(request.param, client, holder[0], tokens, fast_calls)
    else:
        asgi = app if request.param == "fast" else _starlette_only(app)
        with TestClient(asgi, raise_server_exceptions=False) as test_client:
            yield Webhook(request.param, test_client, holder[0], tokens, fast_calls)


def _error(answer: Answer, status: int, code: str) -> str:
    """The error's message, after checking the status and the JSON error shape."""
    assert answer.status_code == status, answer.content
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["content-length"] == str(len(answer.content))
    body = answer.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    message: str = body["error"]["message"]
    return message


def test_the_fast_path_answers_posts_and_starlette_the_rest(webhook: Webhook) -> None:
    webhook.post(fixture_payload("firing_single.json"))
    webhook.client.get(ALERTS)
    webhook.client.get("/api/v1/recovery/health")
    # Under TestClient and uvicorn alike (the runtime is in ``scope["state"]`` for both).
    assert len(webhook.fast_calls) == (0 if webhook.transport == "route" else 1)


def test_200_answers_counts_and_then_duplicates(webhook: Webhook) -> None:
    payload = fixture_payload("grouped.json")
    n = len(payload["alerts"])
    first = webhook.post(payload)
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/json"
    assert first.headers["content-length"] == str(len(first.content))
    assert (
        first.content
        == json.dumps(
            {"received": n, "new": n, "duplicates": 0, "truncated": payload["truncatedAlerts"]},
            separators=(",", ":"),
        ).encode()
    )
    again = webhook.post(payload, role="admin")
    assert again.json() == {
        "received": n,
        "new": 0,
        "duplicates": n,
        "truncated": payload["truncatedAlerts"],
    }


def test_400_for_a_body_that_is_not_json(webhook: Webhook) -> None:
    answer = webhook.post(content=b'{"version": "4", ')
    assert "not valid JSON" in _error(answer, 400, "MALFORMED_JSON")


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-token-wrong-token", "Basic !!notbase64", "Token x"]
)
def test_401_with_the_bearer_challenge(webhook: Webhook, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    answer = webhook.post(fixture_payload("firing_single.json"), role=None, headers=headers)
    _error(answer, 401, "UNAUTHORIZED")
    assert answer.headers["www-authenticate"] == CHALLENGE


def test_403_for_a_viewer(webhook: Webhook) -> None:
    answer = webhook.post(fixture_payload("firing_single.json"), role="viewer")
    assert _error(answer, 403, "FORBIDDEN") == "role 'viewer' may not do this"
    assert "www-authenticate" not in answer.headers


def test_405_for_another_method_on_the_path_is_starlettes(webhook: Webhook) -> None:
    answer = webhook.client.get(
        ALERTS, headers={"Authorization": f"Bearer {webhook.tokens['admin']}"}
    )
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"
    assert webhook.client.put(ALERTS).status_code == 405


def test_413_by_content_length_before_reading(webhook: Webhook) -> None:
    answer = webhook.post(content=b" " * (LIMIT + 1))
    assert _error(answer, 413, "PAYLOAD_TOO_LARGE") == f"body exceeds {LIMIT} bytes"


def test_413_while_streaming_a_body_without_content_length(webhook: Webhook) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(LIMIT // 4096 + 8):
            yield b" " * 4096

    answer = webhook.post(content=chunks())
    assert "content-length" not in answer.request.headers
    _error(answer, 413, "PAYLOAD_TOO_LARGE")
    # The connection (or the next one) still serves.
    assert webhook.post(fixture_payload("firing_single.json")).status_code == 200


def test_unread_bodies_still_get_their_answer(webhook: Webhook) -> None:
    """Refused before its body is read (no token), a large body still gets its 401."""
    answer = webhook.post(content=b"x" * (LIMIT - 1), role=None)
    _error(answer, 401, "UNAUTHORIZED")
    assert webhook.post(fixture_payload("firing_single.json")).status_code == 200


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda p: p.pop("alerts"), "alerts"),
        (lambda p: p["alerts"][0].pop("fingerprint"), "alerts[0].fingerprint"),
        (lambda p: p["alerts"][0].update(status="burning"), "alerts[0].status"),
    ],
)
def test_422_names_the_field(
    webhook: Webhook, mutate: Callable[[dict[str, Any]], Any], field: str
) -> None:
    payload = fixture_payload("grouped.json")
    mutate(payload)
    assert field in _error(webhook.post(payload), 422, "VALIDATION_FAILED")
    assert _error(webhook.post(content=b"[1]"), 422, "VALIDATION_FAILED") == (
        "the body must be a JSON object"
    )


def test_503_while_draining(webhook: Webhook) -> None:
    webhook.runtime.draining = True
    try:
        answer = webhook.post(fixture_payload("firing_single.json"))
    finally:
        webhook.runtime.draining = False
    assert "shutting down" in _error(answer, 503, "SERVICE_UNAVAILABLE")


def test_503_when_the_store_cannot_commit(
    webhook: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("the store could not commit; retry")

    monkeypatch.setattr(webhook.runtime.store, "ingest", refuse)
    answer = webhook.post(fixture_payload("firing_single.json"))
    _error(answer, 503, "STORE_UNAVAILABLE")
    assert "remediator_store_write_failures_total 1.0" in webhook.metrics()


def test_500_for_an_unexpected_failure_is_logged(
    webhook: Webhook, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(webhook.runtime.store, "ingest", explode)
    with caplog.at_level(logging.ERROR, logger="remediator.intake"):
        answer = webhook.post(fixture_payload("firing_single.json"))
    assert _error(answer, 500, "INTERNAL") == "internal error; see the server log"
    assert "boom" not in answer.content.decode()
    failed = [r for r in caplog.records if r.getMessage() == "intake failed"]
    assert failed and failed[0].exc_info is not None


def _sample(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert found, name
    return float(found.group(1))


def test_metrics_after_a_few_requests(webhook: Webhook) -> None:
    payload = fixture_payload("mixed_firing_resolved.json")
    webhook.post(payload)
    webhook.post(payload)
    webhook.post(payload, role=None)
    webhook.post(content=b"{")
    webhook.post(content=b" " * (LIMIT + 1))
    text = webhook.metrics()
    assert _sample(text, 'remediator_alerts_received_total{status="firing"}') == 4
    assert _sample(text, 'remediator_alerts_received_total{status="resolved"}') == 2
    assert _sample(text, "remediator_alerts_duplicate_total") == 3
    # Three new alerts went into the inbox (the gauge went up by 3) and the worker takes each
    # out (down by one each): once it has processed them the gauge is back at 0, well before
    # the worker's lease renewal (every lease / 3 = 20s) would set it from the store.
    deadline = time.monotonic() + 5
    while _sample(text, "remediator_inbox_pending") != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
        text = webhook.metrics()
    assert _sample(text, "remediator_inbox_pending") == 0
    for code, count in (("200", 2), ("400", 1), ("401", 1), ("413", 1), ("503", 0)):
        assert _sample(text, f'remediator_webhook_requests_total{{code="{code}"}}') == count
    assert _sample(text, "remediator_webhook_request_duration_seconds_count") == 5
    assert _sample(text, "remediator_store_write_failures_total") == 0


def test_the_fast_path_and_the_route_answer_byte_for_byte_alike(
    tmp_path: Path, authenticator: Authenticator, tokens: dict[str, str]
) -> None:
    """The same requests, through both: same status, headers and body."""
    am = {"Authorization": f"Bearer {tokens['alertmanager']}"}
    payload = fixture_payload("grouped.json")
    bad = fixture_payload("grouped.json")
    bad["alerts"][1]["startsAt"] = "yesterday"
    requests: list[dict[str, Any]] = [
        {"json": payload, "headers": am},
        {"json": payload, "headers": am},
        {"json": bad, "headers": am},
        {"content": b"{", "headers": am},
        {"content": b" " * (LIMIT + 1), "headers": am},
        {"json": payload},
        {"json": payload, "headers": {"Authorization": f"Bearer {tokens['viewer']}"}},
    ]
    answers: list[list[tuple[int, list[tuple[str, str]], bytes]]] = []
    for name in ("fast", "route"):
        config = config_mod.parse(
            {
                "store": {"url": f"sqlite:///{tmp_path}/{name}.db"},
                "server": {"max_body_bytes": LIMIT},
            },
            env={},
        )
        app = create_app(config, authenticator=authenticator)
        asgi = app if name == "fast" else _starlette_only(app)
        with TestClient(asgi) as client:
            answers.append(
                [
                    (a.status_code, a.headers.multi_items(), a.content)
                    for a in (client.post(ALERTS, **kw) for kw in requests)
                ]
            )
    fast, route = answers
    assert [a[0] for a in fast] == [200, 200, 422, 400, 413, 401, 403]
    assert fast == route


def test_remediator_serve_answers_the_webhook_on_the_fast_path(
    tmp_path: Path, tokens: dict[str, str]
) -> None:
    """The real ``remediator serve`` process: each status, and the metrics it leaves."""
    server = ServedProcess(tmp_path, {}, tokens)
    server.start()
    try:
        limit = config_mod.parse({}, env={}).server.max_body_bytes
        with httpx2.Client(base_url=server.url, timeout=30) as client:

            def post(role: str | None, **kw: Any) -> Answer:
                headers = server.headers(role) if role else {}
                return client.post(ALERTS, headers=headers, **kw)

            def chunks() -> Iterator[bytes]:
                for _ in range(limit // 65536 + 2):
                    yield b" " * 65536

            payload = fixture_payload("grouped.json")
            n = len(payload["alerts"])
            assert post("alertmanager", json=payload).json() == {
                "received": n,
                "new": n,
                "duplicates": 0,
                "truncated": payload["truncatedAlerts"],
            }
            assert post("admin", json=payload).json()["duplicates"] == n
            _error(post("alertmanager", content=b"{"), 400, "MALFORMED_JSON")
            unauthorized = post(None, json=payload)
            _error(unauthorized, 401, "UNAUTHORIZED")
            assert unauthorized.headers["www-authenticate"] == CHALLENGE
            _error(post("viewer", json=payload), 403, "FORBIDDEN")
            assert client.get(ALERTS, headers=server.headers("admin")).status_code == 405
            _error(post("alertmanager", content=b" " * (limit + 1)), 413, "PAYLOAD_TOO_LARGE")
            streamed = post("alertmanager", content=chunks())
            assert "content-length" not in streamed.request.headers
            _error(streamed, 413, "PAYLOAD_TOO_LARGE")
            _error(post("alertmanager", json={"version": "4"}), 422, "VALIDATION_FAILED")
            text = client.get("/metrics").text
        for code, count in (
            ("200", 2),
            ("400", 1),
            ("401", 1),
            ("403", 1),
            ("413", 2),
            ("422", 1),
        ):
            assert _sample(text, f'remediator_webhook_requests_total{{code="{code}"}}') == count
        assert _sample(text, "remediator_webhook_request_duration_seconds_count") == 8
        assert _sample(text, 'remediator_alerts_received_total{status="firing"}') == 2 * n
        assert _sample(text, "remediator_alerts_duplicate_total") == n
        assert server.terminate() == 0
    finally:
        server.stop()
